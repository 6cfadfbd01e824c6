"""A sealed model directory on the real start-up path (``textclf serve``: supervisor check, then nginx ->
gunicorn -> Flask): a hook that the manifest does not list, or lists with another sha256, stops
``serve`` with exit 2 and one line naming the file and ``textclf seal``; after ``textclf seal`` the same
hooks are served, and they import their sibling modules relatively."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import requests

from support.serving import ServeProcess, make_sm_root
from textclf.errors import EXIT_USER_ERROR

HELPER = "FORCED = 'neutral'\n"
RULES = """
from . import helper


def after(texts, predictions, context):
    context.response_attributes["rules"] = "sealed"
    return [[{"label": helper.FORCED, "score": 1.0}] for _ in texts]
"""
CA = "X-Amzn-SageMaker-Custom-Attributes"


def _serve(root: Path, logs: Path) -> ServeProcess:
    return ServeProcess(root, logs, {"TEXTCLF_INTRA_OP_THREADS": "1"}, workers=1)


def _refused(root: Path, logs: Path) -> str:
    """Start serve on ``root``; it must exit 2 before ever answering. Returns its stderr."""
    with _serve(root, logs) as serve:
        code = serve.wait_exit(60)
        assert code == EXIT_USER_ERROR, f"serve exited with {code}:\n{serve.stderr()[-3000:]}"
        return serve.stderr()


def _seal(model: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "textclf.cli", "seal", str(model)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done


def test_a_hook_planted_into_an_exported_model_stops_serve(model_dir: Path, tmp_path: Path) -> None:
    """What a tampered model.tar.gz would do: add code/rules.py after the export sealed the directory."""
    root = make_sm_root(model_dir, tmp_path / "opt-ml")
    code = root / "model" / "code"
    code.mkdir()
    (code / "rules.py").write_text(textwrap.dedent(RULES), encoding="utf-8")
    (code / "helper.py").write_text(HELPER, encoding="utf-8")
    stderr = _refused(root, tmp_path / "logs")
    line = next(ln for ln in stderr.splitlines() if ln.startswith("textclf serve: cannot start:"))
    assert "serve would load but manifest.json does not list" in line
    assert str(code / "rules.py") in line and str(code / "helper.py") in line
    assert f"`textclf seal {root / 'model'}`" in line


def test_an_edited_hook_is_refused_until_sealed_then_served(model_dir: Path, tmp_path: Path) -> None:
    root = make_sm_root(model_dir, tmp_path / "opt-ml", RULES)  # rules.py sealed, as `textclf seal` would
    model = root / "model"
    (model / "code" / "helper.py").write_text(HELPER, encoding="utf-8")
    _seal(model)
    with (model / "code" / "rules.py").open("a", encoding="utf-8") as fh:
        fh.write("\n# edited after sealing\n")
    stderr = _refused(root, tmp_path / "logs-edited")
    assert f"textclf serve: cannot start: model file {model / 'code' / 'rules.py'} does not match its sha256" in stderr
    assert "textclf seal" in stderr

    sealed = _seal(model)
    assert sealed.stdout.splitlines() == ["changed  code/rules.py", f"{model}: sealed (code/)"]
    with _serve(root, tmp_path / "logs-sealed") as serve:
        serve.wait_ready()
        response = requests.post(serve.url("/invocations"), json={"inputs": ["a", "b"]}, timeout=30)
        assert response.status_code == 200, response.text
        assert [r[0]["label"] for r in response.json()] == ["neutral", "neutral"]  # the hook and its helper ran
        assert response.headers[CA] == "rules=sealed"
    assert not (model / "code" / "__pycache__").exists()  # serve wrote no bytecode into the model directory
