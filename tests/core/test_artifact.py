"""The model-directory contract: sealed with hashes, refused when altered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from textclf.contract import model_dir as artifact
from textclf.errors import ArtifactError


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    d = tmp_path / "model"
    d.mkdir()
    (d / artifact.MODEL_FILE).write_bytes(b"\x08\x01onnx-bytes" * 100)
    (d / artifact.TOKENIZER_FILE).write_text('{"model": {}}')
    (d / "hf").mkdir()
    (d / "hf" / "config.json").write_text("{}")
    artifact.write_manifest(d, artifact.Manifest(labels=["neg", "pos"], metrics={"validation_accuracy": 0.9}))
    return d


def test_roundtrip_lists_every_file_with_its_hash(model_dir: Path) -> None:
    manifest = artifact.read_manifest(model_dir)
    assert set(manifest.files) == {artifact.MODEL_FILE, artifact.TOKENIZER_FILE, "hf/config.json"}
    assert manifest.files[artifact.MODEL_FILE] == artifact.sha256_file(model_dir / artifact.MODEL_FILE)
    assert manifest.labels == ["neg", "pos"] and manifest.format_version == artifact.FORMAT_VERSION
    assert manifest.metrics == {"validation_accuracy": 0.9} and manifest.created_at


def test_tampered_file_is_refused(model_dir: Path) -> None:
    with (model_dir / artifact.MODEL_FILE).open("ab") as fh:
        fh.write(b"x")
    with pytest.raises(ArtifactError, match=r"model\.onnx does not match its sha256"):
        artifact.read_manifest(model_dir)


def test_missing_file_is_refused(model_dir: Path) -> None:
    (model_dir / "hf" / "config.json").unlink()
    with pytest.raises(ArtifactError, match=r"hf/config\.json is missing"):
        artifact.read_manifest(model_dir)


def test_unknown_format_version_is_refused(model_dir: Path) -> None:
    path = model_dir / artifact.MANIFEST_FILE
    data = json.loads(path.read_text())
    data["format_version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="unknown model format_version 99"):
        artifact.read_manifest(model_dir)


def test_not_a_model_directory_says_what_it_found(tmp_path: Path) -> None:
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(ArtifactError, match=r"not a textclf model directory \(found: pytorch_model\.bin\)"):
        artifact.read_manifest(tmp_path)


def test_user_code_is_not_hashed(model_dir: Path) -> None:
    (model_dir / artifact.CODE_DIR).mkdir()
    (model_dir / artifact.CODE_DIR / "rules.py").write_text("def before(texts, ctx): return texts\n")
    assert artifact.read_manifest(model_dir).labels == ["neg", "pos"]


def test_sealing_requires_model_and_tokenizer(tmp_path: Path) -> None:
    (tmp_path / artifact.TOKENIZER_FILE).write_text("{}")
    with pytest.raises(ArtifactError, match=r"model\.onnx is missing"):
        artifact.write_manifest(tmp_path, artifact.Manifest(labels=["a", "b"]))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"labels": []}, "non-empty"),
        ({"labels": ["a", "a"]}, "distinct"),
        ({"problem_type": "regression"}, "problem_type"),
    ],
)
def test_invalid_manifest_content_is_refused(model_dir: Path, change: dict, message: str) -> None:
    path = model_dir / artifact.MANIFEST_FILE
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    with pytest.raises(ArtifactError, match=message):
        artifact.read_manifest(model_dir)
