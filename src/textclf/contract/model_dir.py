"""The model directory: the contract between ``train``/``export`` (writers) and ``serve`` (reader).

A model directory is self-describing: ``manifest.json`` says what the model predicts and how its
inputs are built, so ``serve`` needs no hyperparameter. Every file's sha256 is recorded and checked
on load, so a truncated upload or a tampered file is refused before ``/ping`` ever says healthy.

Layout::

    manifest.json        this contract (format_version, task, files and their sha256, metrics...)
    model.onnx           the classifier (INT8 dynamic-quantized unless the manifest says fp32)
    tokenizer.json       the fast tokenizer (read with ``tokenizers`` only)
    tokenizer_config.json
    hf/                  optional: fine-tuned Hugging Face weights (safetensors) for re-training
    code/rules.py        optional, added by the user: business-rule hooks (not hashed)

Only the standard library is imported here: the slim serving image must be able to read it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

from textclf.errors import ArtifactError

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
FULL_PRECISION_DIR = "hf"
CODE_DIR = "code"  # user code (business rules) may be added after training: not part of the hashes
# Top-level names a model directory may hold; replacing a directory holding anything else is refused.
OWN_NAMES = frozenset({MANIFEST_FILE, MODEL_FILE, TOKENIZER_FILE, TOKENIZER_CONFIG_FILE, FULL_PRECISION_DIR, CODE_DIR})
# The choices a model directory records, shared by the hyperparameters, the export options and the
# command line, so that each is spelled once.
Precision = Literal["int8", "fp32"]  # of model.onnx
ProblemType = Literal["single_label", "multi_label"]
Truncation = Literal["head", "tail", "head+tail"]  # which tokens of a long text are kept
PRECISIONS: tuple[Precision, ...] = get_args(Precision)
PROBLEM_TYPES: tuple[ProblemType, ...] = get_args(ProblemType)
TRUNCATIONS: tuple[Truncation, ...] = get_args(Truncation)


@dataclass
class Manifest:
    """What ``serve`` needs to know about a model, and what a human wants to know about it."""

    labels: list[str]
    problem_type: ProblemType = "single_label"
    max_seq_length: int = 128
    truncation: Truncation = "head"
    text_pair: bool = False  # trained on text pairs
    multi_label_threshold: float = 0.5
    precision: Precision = "int8"
    quantization: dict[str, Any] = field(default_factory=dict)  # method, per_channel, ...
    source_model: str = ""
    model_inputs: list[str] = field(default_factory=lambda: ["input_ids", "attention_mask"])
    metrics: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    created_at: str = ""
    format_version: int = FORMAT_VERSION
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _hashed_files(model_dir: Path) -> list[Path]:
    return sorted(
        p
        for p in model_dir.rglob("*")
        if p.is_file()
        and p.name != MANIFEST_FILE
        and p.relative_to(model_dir).parts[0] != CODE_DIR
        and "__pycache__" not in p.parts
    )


def _check(manifest: Manifest) -> None:
    if not manifest.labels or len(set(manifest.labels)) != len(manifest.labels):
        raise ArtifactError("manifest labels must be a non-empty list of distinct names")
    if manifest.problem_type not in PROBLEM_TYPES:
        raise ArtifactError(f"manifest problem_type {manifest.problem_type!r} is not one of {PROBLEM_TYPES}")
    if manifest.truncation not in TRUNCATIONS:
        raise ArtifactError(f"manifest truncation {manifest.truncation!r} is not one of {TRUNCATIONS}")
    if manifest.precision not in PRECISIONS:
        raise ArtifactError(f"manifest precision {manifest.precision!r} is not one of {PRECISIONS}")


def atomic_write_text(path: Path, text: str) -> None:
    """Write then rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_manifest(model_dir: str | Path, manifest: Manifest) -> Manifest:
    """Hash every file of ``model_dir`` into ``manifest`` and write ``manifest.json`` (last)."""
    model_dir = Path(model_dir)
    _check(manifest)
    for required in (MODEL_FILE, TOKENIZER_FILE):
        if not (model_dir / required).is_file():
            raise ArtifactError(f"cannot seal model directory {model_dir}: {required} is missing")
    manifest.files = {p.relative_to(model_dir).as_posix(): sha256_file(p) for p in _hashed_files(model_dir)}
    manifest.created_at = manifest.created_at or datetime.now(UTC).isoformat(timespec="seconds")
    manifest.format_version = FORMAT_VERSION
    atomic_write_text(model_dir / MANIFEST_FILE, manifest.to_json())
    return manifest


def read_manifest(model_dir: str | Path, verify: bool = True) -> Manifest:
    """Read ``manifest.json``; with ``verify``, refuse unknown formats, missing or altered files."""
    model_dir = Path(model_dir)
    path = model_dir / MANIFEST_FILE
    if not path.is_file():
        found = sorted(p.name for p in model_dir.iterdir()) if model_dir.is_dir() else []
        raise ArtifactError(
            f"{path} not found: {model_dir} is not a textclf model directory "
            f"(found: {', '.join(found) or 'nothing'}); build one with `textclf train` or `textclf export`"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path} is not valid JSON: {exc}") from exc
    version = data.get("format_version") if isinstance(data, dict) else None
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: unknown model format_version {version!r}; this textclf reads format {FORMAT_VERSION}"
        )
    known = set(Manifest.__dataclass_fields__)
    try:
        manifest = Manifest(**{k: v for k, v in data.items() if k in known})
    except TypeError as exc:
        raise ArtifactError(f"{path} is incomplete: {exc}") from exc
    _check(manifest)
    if verify:
        verify_files(model_dir, manifest)
    return manifest


def verify_files(model_dir: Path, manifest: Manifest) -> None:
    """Check that every file the manifest lists exists with the recorded sha256."""
    for required in (MODEL_FILE, TOKENIZER_FILE):
        if required not in manifest.files:
            raise ArtifactError(f"{model_dir / MANIFEST_FILE} does not list {required}")
    for rel, expected in manifest.files.items():
        file = model_dir / rel
        if not file.is_file():
            raise ArtifactError(f"model file {file} is missing (listed in {MANIFEST_FILE})")
        actual = sha256_file(file)
        if actual != expected:
            raise ArtifactError(
                f"model file {file} does not match its sha256 in {MANIFEST_FILE} "
                f"(expected {expected[:12]}..., got {actual[:12]}...): it was altered or truncated"
            )


# -- writing a model directory in place ------------------------------------------------------------
# A model directory is built in a staging directory and moved into place at the end, so a failed
# export never leaves half a model behind. The destination may already exist (``/opt/ml/model`` does,
# and may be a mount point that cannot be renamed): then its entries are replaced one by one,
# ``manifest.json`` removed first and written last, so that no reader trusts a half-replaced directory.
# Dot files (``.gitkeep``) and the user's ``code/`` are left alone.


def _foreign_entries(out_dir: Path, ignore: Path | None = None) -> list[str]:
    own = set(OWN_NAMES)
    try:  # a previous manifest may list names a later format added
        listed = json.loads((out_dir / MANIFEST_FILE).read_text(encoding="utf-8")).get("files", {})
        own.update(Path(rel).parts[0] for rel in listed)
    except (OSError, ValueError, AttributeError):
        pass
    return sorted(p.name for p in out_dir.iterdir() if p.name not in own and not p.name.startswith(".") and p != ignore)


def check_replaceable(out_dir: str | Path, ignore: Path | None = None) -> None:
    """Refuse a destination that is a file, or a directory holding files that are not ours."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ArtifactError(f"cannot write a model directory to {out_dir}: it is a file")
    if out_dir.is_dir() and (foreign := _foreign_entries(out_dir, ignore)):
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise ArtifactError(
            f"refusing to replace {out_dir}: it holds files that are not part of a textclf model directory "
            f"({shown}); choose an empty or new directory"
        )


def new_staging_dir(out_dir: str | Path) -> Path:
    """A fresh directory on the destination's file system (next to it, else inside it)."""
    out_dir = Path(out_dir)
    check_replaceable(out_dir)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.staging-"))
    except OSError:
        if not out_dir.is_dir():  # nowhere else to go
            raise
        return Path(tempfile.mkdtemp(dir=out_dir, prefix=".staging-"))


def install_model_dir(staging: str | Path, out_dir: str | Path) -> Path:
    """Move a sealed staging directory into place as ``out_dir`` (see the note above)."""
    staging, out_dir = Path(staging), Path(out_dir)
    if not (staging / MANIFEST_FILE).is_file():
        raise ArtifactError(f"{staging} has no {MANIFEST_FILE}: seal it with write_manifest first")
    if not out_dir.exists():
        try:
            staging.rename(out_dir)
            return out_dir
        except OSError:  # another file system: replace entry by entry below
            out_dir.mkdir(parents=True)
    check_replaceable(out_dir, ignore=staging)
    (out_dir / MANIFEST_FILE).unlink(missing_ok=True)
    for entry in out_dir.iterdir():
        if entry == staging or entry.name == CODE_DIR or entry.name.startswith("."):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    for entry in sorted(staging.iterdir(), key=lambda p: p.name == MANIFEST_FILE):  # manifest last
        shutil.move(str(entry), str(out_dir / entry.name))
    staging.rmdir()
    return out_dir
