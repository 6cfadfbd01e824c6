"""Sealing after an edit of the rules: ``seal`` / ``textclf seal MODEL_DIR`` re-hashes ``code/`` only
(every file with ``--all``), prints what changed and never blesses a changed model file; a re-export
keeps what was sealed in ``code/`` sealed and blesses nothing new."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from textclf.contract import model_dir as artifact
from textclf.errors import EXIT_USER_ERROR, ArtifactError

RULES = "from . import helper\n\n\ndef before(texts, context):\n    return [t + helper.SUFFIX for t in texts]\n"


def _model(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / artifact.MODEL_FILE).write_bytes(b"\x08\x01onnx-bytes" * 100)
    (path / artifact.TOKENIZER_FILE).write_text('{"model": {}}')
    artifact.write_manifest(path, artifact.Manifest(labels=["neg", "pos"]))
    return path


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return _model(tmp_path / "model")


def _add_code(model_dir: Path) -> Path:
    code = model_dir / artifact.CODE_DIR
    code.mkdir(exist_ok=True)
    (code / "rules.py").write_text(RULES)
    (code / "helper.py").write_text("SUFFIX = '!'\n")
    return code


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "textclf.cli", "seal", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_seal_adds_changes_and_removes_code_entries(model_dir: Path) -> None:
    code = _add_code(model_dir)
    report = artifact.seal(model_dir)
    assert (report.added, report.changed, report.removed) == (["code/helper.py", "code/rules.py"], [], [])
    assert artifact.read_manifest(model_dir).files["code/rules.py"] == artifact.sha256_file(code / "rules.py")

    (code / "rules.py").write_text(RULES + "# tuned\n")
    (code / "helper.py").unlink()
    (code / "extra.py").write_text("X = 2\n")
    report = artifact.seal(model_dir)
    assert (report.added, report.changed, report.removed) == (["code/extra.py"], ["code/rules.py"], ["code/helper.py"])
    artifact.read_manifest(model_dir)

    again = artifact.seal(model_dir)
    assert again.unchanged and again.lines() == []


def test_seal_never_blesses_a_changed_model_file(model_dir: Path) -> None:
    _add_code(model_dir)
    before = (model_dir / artifact.MANIFEST_FILE).read_text()
    with (model_dir / artifact.MODEL_FILE).open("ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(ArtifactError) as info:
        artifact.seal(model_dir)
    message = str(info.value)
    assert "model.onnx does not match its sha256" in message
    assert "re-hashes code/ only" in message and f"textclf seal --all {model_dir}" in message
    assert (model_dir / artifact.MANIFEST_FILE).read_text() == before  # nothing was written

    report = artifact.seal(model_dir, all_files=True)  # the deliberate way
    assert report.changed == [artifact.MODEL_FILE]
    assert report.added == ["code/helper.py", "code/rules.py"]
    artifact.read_manifest(model_dir)


def test_seal_refuses_an_unlisted_loadable_file_outside_code(model_dir: Path) -> None:
    (model_dir / artifact.TOKENIZER_CONFIG_FILE).write_text("{}")  # would be read by the predictor
    with pytest.raises(ArtifactError, match=r"tokenizer_config\.json would be loaded by serve but is not listed"):
        artifact.seal(model_dir)


def test_seal_upgrades_a_format_1_manifest(model_dir: Path) -> None:
    path = model_dir / artifact.MANIFEST_FILE
    path.write_text(json.dumps({**json.loads(path.read_text()), "format_version": 1}))
    _add_code(model_dir)
    report = artifact.seal(model_dir)
    assert report.lines()[-1] == f"format   1 -> {artifact.FORMAT_VERSION}"
    assert artifact.read_manifest(model_dir).format_version == artifact.FORMAT_VERSION == 2


def test_textclf_seal_prints_what_changed(model_dir: Path) -> None:
    _add_code(model_dir)
    done = _cli(model_dir)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "added    code/helper.py",
        "added    code/rules.py",
        f"{model_dir}: sealed (code/)",
    ]
    assert _cli(model_dir).stdout.splitlines() == [f"{model_dir}: already sealed, nothing changed"]


def test_textclf_seal_refuses_a_changed_model_with_exit_2(model_dir: Path) -> None:
    (model_dir / artifact.TOKENIZER_FILE).write_text('{"model": {"changed": 1}}')
    done = _cli(model_dir)
    assert done.returncode == EXIT_USER_ERROR
    assert done.stderr.startswith(f"error: cannot seal {model_dir}: model file")
    assert "--all" in done.stderr
    done = _cli(model_dir, "--all")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["changed  tokenizer.json", f"{model_dir}: sealed (every file)"]


def test_textclf_seal_on_a_directory_without_manifest(tmp_path: Path) -> None:
    done = _cli(tmp_path)
    assert done.returncode == EXIT_USER_ERROR and "not a textclf model directory" in done.stderr


def test_reinstalling_keeps_sealed_code_sealed_and_blesses_nothing_new(model_dir: Path, tmp_path: Path) -> None:
    """An export into a directory holding the user's code/ keeps it (install_model_dir): the files the
    previous manifest sealed stay listed, an unsealed or edited one stays unlisted."""
    code = _add_code(model_dir)
    artifact.seal(model_dir)
    (code / "helper.py").write_text("SUFFIX = '?'\n")  # edited, not re-sealed
    (code / "new.py").write_text("X = 1\n")  # added, not sealed
    staging = _model(tmp_path / "staging")
    artifact.install_model_dir(staging, model_dir)
    manifest = artifact.read_manifest(model_dir, verify=False)
    assert "code/rules.py" in manifest.files
    assert artifact.unlisted_files(model_dir, manifest) == ["code/helper.py", "code/new.py"]
    with pytest.raises(ArtifactError, match=r"code/helper\.py"):
        artifact.read_manifest(model_dir)
