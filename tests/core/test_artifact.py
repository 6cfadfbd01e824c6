"""The model-directory contract: sealed with hashes, refused when altered or when something serve
would load is not listed (``code/`` included); ``seal`` and ``textclf seal`` are in test_seal.py."""

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


def test_manifest_is_readable_by_everyone(model_dir: Path) -> None:
    """model.tar.gz keeps file modes: a 0600 manifest would lock out a serve running as another user."""
    assert (model_dir / artifact.MANIFEST_FILE).stat().st_mode & 0o777 == 0o644


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
    with pytest.raises(ArtifactError, match="unknown model format_version 99; this textclf reads formats 1 and 2"):
        artifact.read_manifest(model_dir)


def test_not_a_model_directory_says_what_it_found(tmp_path: Path) -> None:
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(ArtifactError, match=r"not a textclf model directory \(found: pytorch_model\.bin\)"):
        artifact.read_manifest(tmp_path)


def test_unlisted_user_code_is_refused_naming_the_file_and_the_fix(model_dir: Path) -> None:
    """A hook planted after sealing (a tampered model.tar.gz) must not pass verification."""
    (model_dir / artifact.CODE_DIR).mkdir()
    (model_dir / artifact.CODE_DIR / "rules.py").write_text("def before(texts, ctx): return texts\n")
    with pytest.raises(ArtifactError) as info:
        artifact.read_manifest(model_dir)
    message = str(info.value)
    assert f"{model_dir / 'code' / 'rules.py'}" in message
    assert "serve would load but manifest.json does not list" in message
    assert f"`textclf seal {model_dir}`" in message
    assert artifact.read_manifest(model_dir, verify=False).labels == ["neg", "pos"]  # verify=False: format only


def test_code_is_sealed_by_write_manifest(model_dir: Path) -> None:
    code = model_dir / artifact.CODE_DIR
    (code / "lib").mkdir(parents=True)
    (code / "rules.py").write_text("from .lib import x\n")
    (code / "lib" / "x.py").write_text("X = 1\n")
    (code / "data.txt").write_text("a lookup table the hook reads\n")
    manifest = artifact.write_manifest(model_dir, artifact.read_manifest(model_dir, verify=False))
    assert {"code/rules.py", "code/lib/x.py", "code/data.txt"} <= set(manifest.files)
    artifact.read_manifest(model_dir)
    (code / "data.txt").write_text("edited\n")  # any file under code/, not only Python
    with pytest.raises(ArtifactError, match=r"code/data\.txt does not match its sha256 .*textclf seal"):
        artifact.read_manifest(model_dir)


@pytest.mark.parametrize(
    "planted",
    [
        "code/helper.py",
        "code/notes.txt",
        "code/sub/deep.py",
        "code/.hidden.py",
        "tokenizer_config.json",  # the predictor reads it when present
        "sitecustomize.py",  # importable files, anywhere
        "hf/modeling_evil.py",
        "hf/evil.pth",
        "code/__init__.cpython-311-x86_64-linux-gnu.so",
    ],
)
def test_any_unlisted_file_serve_could_load_is_refused(model_dir: Path, planted: str) -> None:
    path = model_dir / planted
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{}")
    with pytest.raises(ArtifactError, match="does not list") as info:
        artifact.read_manifest(model_dir)
    assert str(path) in str(info.value)


def test_harmless_extra_files_are_ignored(model_dir: Path) -> None:
    """SageMaker (local mode) leaves model.tar.gz beside the extracted model; serve never opens it, nor a
    dot file, nor bytecode (hooks are compiled from source), so none of them needs a seal."""
    (model_dir / "model.tar.gz").write_bytes(b"\x1f\x8b archive")
    (model_dir / ".gitkeep").write_text("")
    (model_dir / "README.txt").write_text("notes")
    (model_dir / artifact.CODE_DIR / "__pycache__").mkdir(parents=True)
    (model_dir / artifact.CODE_DIR / "__pycache__" / "rules.cpython-311.pyc").write_bytes(b"\x00")
    (model_dir / "__pycache__").mkdir()
    (model_dir / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\x00")
    assert artifact.read_manifest(model_dir).labels == ["neg", "pos"]


def test_a_link_to_a_directory_in_code_is_refused(model_dir: Path, tmp_path: Path) -> None:
    """Imports would follow the link but the walk that seals does not: it can never be sealed."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "evil.py").write_text("X = 1\n")
    (model_dir / artifact.CODE_DIR).mkdir()
    (model_dir / artifact.CODE_DIR / "lib").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ArtifactError, match=r"code/lib"):
        artifact.read_manifest(model_dir)
    with pytest.raises(ArtifactError, match=r"code/lib is a link to a directory"):
        artifact.seal(model_dir)


def test_a_format_1_manifest_is_read_and_refused_only_with_code(model_dir: Path) -> None:
    """Format 1 listed every file but code/: such a directory without code/ is served as it is."""
    path = model_dir / artifact.MANIFEST_FILE
    path.write_text(json.dumps({**json.loads(path.read_text()), "format_version": 1}))
    assert artifact.read_manifest(model_dir).format_version == 1
    (model_dir / artifact.CODE_DIR).mkdir()
    (model_dir / artifact.CODE_DIR / "rules.py").write_text("def before(t, c): return t\n")
    with pytest.raises(ArtifactError, match=r"\(format 1 did not list code/\).*code/rules\.py.*textclf seal"):
        artifact.read_manifest(model_dir)


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
