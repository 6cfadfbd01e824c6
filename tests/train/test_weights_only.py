"""A malicious torch pickle (a ``__reduce__`` payload) is refused unread, wherever one can come in:
a checkpoint's optimizer / scheduler / scaler / RNG state, or a ``pytorch_model.bin`` in the
pretrained folder. The payload would create a marker file; each test first shows that it really
does (``weights_only=False``), then that our loaders refuse it and the marker never appears.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from textclf.errors import CheckpointError, ModelLoadError
from textclf.train import checkpoints, pretrained
from textclf.train.data import LabelMap

SRC = Path(__file__).resolve().parents[2] / "src"


class Payload:
    """Unpickling this runs ``exec`` of code that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (builtins.exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def save_payload(path: Path, marker: Path) -> Path:
    torch.save({"state": {}, "param_groups": [], "x": Payload(marker)}, path)
    return path


def test_the_payload_is_real(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    torch.load(save_payload(tmp_path / "evil.pt", marker), weights_only=False)
    assert marker.read_text() == "ran"


def _checkpoint(directory: Path) -> Path:
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    state = checkpoints.TrainerState(global_step=3, identity={"run": 1})
    return checkpoints.save(directory, model, optimizer, scheduler, scaler, state, keep=2)


@pytest.mark.parametrize("name", ["optimizer.pt", "scheduler.pt", "scaler.pt", "rng.pt"])
def test_a_checkpoint_with_a_pickle_payload_is_refused(name: str, tmp_path: Path) -> None:
    """Whoever can write the checkpoint folder can also fix its checksums: they are no defence."""
    checkpoint, marker = _checkpoint(tmp_path / "ckpt"), tmp_path / "marker"
    save_payload(checkpoint / name, marker)
    sums = json.loads((checkpoint / checkpoints.CHECKSUMS_FILE).read_text())
    data = (checkpoint / name).read_bytes()
    sums[name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (checkpoint / checkpoints.CHECKSUMS_FILE).write_text(json.dumps(sums))
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    with pytest.raises(CheckpointError, match=rf"refusing checkpoint file .*{name}: it holds objects other than") as e:
        checkpoints.restore(checkpoint, model, optimizer, scheduler, scaler, {"run": 1})
    assert "exec" in str(e.value) and "\n" not in str(e.value) and "weights_only=False" not in str(e.value)
    assert not marker.exists()


def test_a_pytorch_model_bin_with_a_pickle_payload_is_refused(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    folder, marker = tmp_path / "model", tmp_path / "marker"
    shutil.copytree(tiny_encoder_dir, folder)
    (folder / "model.safetensors").unlink()
    save_payload(folder / "pytorch_model.bin", marker)
    source = pretrained.ModelSource(str(folder), True, "channel 'pretrained'")
    with pytest.raises(ModelLoadError, match=r"refusing the weights in .*: its torch pickle \(pytorch_model\.bin\)"):
        pretrained.load(source, LabelMap(("a", "b")), 16)
    assert not marker.exists()


def _calls(name: str) -> list[tuple[Path, ast.Call]]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == name:
                found.append((path, node))
    return found


def _keyword(call: ast.Call, name: str) -> Any:
    return next((ast.literal_eval(k.value) for k in call.keywords if k.arg == name), None)


def test_every_torch_load_in_src_is_weights_only() -> None:
    loads = [
        (p, c) for p, c in _calls("load") if isinstance(c.func, ast.Attribute) and ast.unparse(c.func) == "torch.load"
    ]
    assert loads, "no torch.load found: the scan is broken"
    assert [f"{p.name}:{c.lineno}" for p, c in loads if _keyword(c, "weights_only") is not True] == []


def test_nothing_in_src_turns_weights_only_off() -> None:
    """transformers' ``from_pretrained`` reads a pytorch_model.bin with weights_only=True unless told
    otherwise; nothing may tell it otherwise."""
    offenders = [
        f"{path.relative_to(SRC)}:{node.lineno}"
        for path in sorted(SRC.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.keyword) and node.arg == "weights_only" and not _true(node.value)
    ]
    assert offenders == []


def _true(value: ast.expr) -> bool:
    return isinstance(value, ast.Constant) and value.value is True


def test_export_refuses_a_pytorch_model_bin_with_a_pickle_payload(tmp_path: Path) -> None:
    """``textclf export`` of a fine-tuned folder whose weights are a pickle payload: a clear
    ModelLoadError (exit 2, a user error), not a raw UnpicklingError, and the payload never runs."""
    from support.tiny_model import make_tiny_model
    from textclf.export.hf_model import load_classifier

    folder, marker = make_tiny_model(tmp_path / "classifier"), tmp_path / "marker"
    (folder / "model.safetensors").unlink()
    save_payload(folder / "pytorch_model.bin", marker)
    with pytest.raises(ModelLoadError, match=r"refusing .*classifier: its PyTorch weights file holds objects other"):
        load_classifier(folder)
    assert not marker.exists()
