"""The model directory: the contract between ``train``/``export`` (writers) and ``serve`` (reader).

A model directory is self-describing: ``manifest.json`` says what the model predicts and how its
inputs are built, so ``serve`` needs no hyperparameter. It is also *sealed*: the manifest lists
every file with its sha256, ``code/`` included, and ``read_manifest(verify=True)`` refuses a listed
file that is missing or changed *and* an unlisted file that ``serve`` would load (anything under
``code/``, the files the predictor reads, any importable Python file). ``code/`` is executed inside
the endpoint, so a file planted there by a tampered ``model.tar.gz`` must never run unnoticed. A
truncated upload, a tampered file or a planted hook is refused before ``/ping`` ever says healthy.

Layout::

    manifest.json        this contract (format_version, task, files and their sha256, metrics...)
    model.onnx           the classifier (INT8 dynamic-quantized unless the manifest says fp32)
    tokenizer.json       the fast tokenizer (read with ``tokenizers`` only)
    tokenizer_config.json
    hf/                  optional: fine-tuned Hugging Face weights (safetensors) for re-training
    code/rules.py        optional, added by the user: business-rule hooks and their helpers (hashed:
                         after an edit, ``seal`` (``textclf seal MODEL_DIR``) re-hashes ``code/``)

Unlisted files that ``serve`` never opens are ignored, because SageMaker leaves some beside the
model (local mode keeps ``model.tar.gz`` in ``/opt/ml/model``), and so are ``__pycache__`` folders:
hooks are compiled from their ``.py`` source every time (``textclf.serve.rules``), never from
bytecode, and no bytecode is written into the model directory.

Format versions: 1 listed every file except ``code/``; 2 lists ``code/`` too. Both are read and
verified the same way, so a format-1 directory without ``code/`` is served as it is, and one with
``code/`` is refused (its hooks are unlisted) with the advice to run ``textclf seal``, which
rewrites the manifest as format 2.

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

FORMAT_VERSION = 2  # 2: code/ is listed and sealed (1 left it out)
READABLE_FORMATS = (1, 2)  # 1 is read as 2 (see the module docstring)
MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
FULL_PRECISION_DIR = "hf"
CODE_DIR = "code"  # the user's business-rule hooks: executed by serve, so sealed like the model
BYTECODE_DIR = "__pycache__"  # never read nor written by serve (hooks compile from source): ignored
# The files the predictor opens; each present one must be listed (tokenizer_config.json is optional).
LOADED_FILES = (MODEL_FILE, TOKENIZER_FILE, TOKENIZER_CONFIG_FILE)
# What Python could import or execute: refused anywhere in the directory unless listed.
IMPORTABLE_SUFFIXES = (".py", ".pyc", ".pyo", ".pyw", ".pth", ".so", ".pyd")
SEAL_COMMAND = "textclf seal"
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
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256, code/ included

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


def _walk(model_dir: Path) -> tuple[list[str], list[str]]:
    """Every file of ``model_dir`` (relative POSIX paths, sorted) but ``manifest.json`` and what is in
    ``__pycache__``; and the links to directories, which are not followed (so never listed)."""
    files: list[str] = []
    linked_dirs: list[str] = []
    for folder, dirs, names in os.walk(model_dir, followlinks=False):
        here = Path(folder)
        for name in list(dirs):
            if name == BYTECODE_DIR:
                dirs.remove(name)
            elif (here / name).is_symlink():
                linked_dirs.append((here / name).relative_to(model_dir).as_posix())
        for name in names:
            rel = (here / name).relative_to(model_dir).as_posix()
            if rel != MANIFEST_FILE and (here / name).is_file():  # is_file: a dangling link is no file
                files.append(rel)
    return sorted(files), sorted(linked_dirs)


def _hashed_files(model_dir: Path) -> list[Path]:
    return [model_dir / rel for rel in _walk(model_dir)[0]]


def is_code(rel: str) -> bool:
    """Whether a relative path is under ``code/`` (executed by ``serve``)."""
    return rel == CODE_DIR or rel.startswith(CODE_DIR + "/")


def _loadable(rel: str) -> bool:
    """Whether ``serve`` would load (read or import) this file: then it must be listed."""
    return is_code(rel) or rel in LOADED_FILES or rel.endswith(IMPORTABLE_SUFFIXES)


def _seal_advice(model_dir: Path) -> str:
    return (
        f"if you added or edited them yourself, review them and run `{SEAL_COMMAND} {model_dir}`; "
        "otherwise the model directory was tampered with: deploy a trusted copy"
    )


def unlisted_files(model_dir: str | Path, manifest: Manifest) -> list[str]:
    """The files ``serve`` would load that ``manifest`` does not list (relative paths): every file under
    ``code/``, each of ``LOADED_FILES`` and any importable Python file. A link to a directory under
    ``code/`` counts too: imports would follow it, a seal cannot."""
    model_dir = Path(model_dir)
    files, linked_dirs = _walk(model_dir)
    unlisted = [rel for rel in files if rel not in manifest.files and _loadable(rel)]
    return sorted(unlisted + [rel for rel in linked_dirs if is_code(rel)])


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
    """Write then rename, so a reader never sees half a file. Mode 0644 like the model's other files:
    mkstemp's 0600 would travel in model.tar.gz and lock out a serve that runs as another user."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_manifest(model_dir: str | Path, manifest: Manifest) -> Manifest:
    """Hash every file of ``model_dir`` (``code/`` included) into ``manifest`` and write ``manifest.json``
    (last). This blesses whatever is there: it is for writers that built the directory themselves."""
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
    """Read ``manifest.json``; with ``verify``, refuse unknown formats, missing or altered files and
    unlisted files that ``serve`` would load (see ``verify_files``)."""
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
    if version not in READABLE_FORMATS or isinstance(version, bool):
        readable = " and ".join(str(v) for v in READABLE_FORMATS)
        raise ArtifactError(f"{path}: unknown model format_version {version!r}; this textclf reads formats {readable}")
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
    """Check that every file the manifest lists exists with the recorded sha256, and that nothing
    ``serve`` would load is unlisted (a planted ``code/rules.py`` would otherwise run unchecked)."""
    for required in (MODEL_FILE, TOKENIZER_FILE):
        if required not in manifest.files:
            raise ArtifactError(f"{model_dir / MANIFEST_FILE} does not list {required}")
    _check_listed(model_dir, manifest.files)
    if unlisted := unlisted_files(model_dir, manifest):
        shown = ", ".join(str(model_dir / rel) for rel in unlisted[:5]) + (", ..." if len(unlisted) > 5 else "")
        older = f" (format {manifest.format_version} did not list {CODE_DIR}/)" if manifest.format_version < 2 else ""
        raise ArtifactError(
            f"{model_dir} holds files that serve would load but {MANIFEST_FILE} does not list{older}: {shown}; "
            f"{_seal_advice(model_dir)}"
        )


def _check_listed(model_dir: Path, files: dict[str, str]) -> None:
    for rel, expected in files.items():
        file = model_dir / rel
        if not file.is_file():
            raise ArtifactError(f"model file {file} is missing (listed in {MANIFEST_FILE})")
        actual = sha256_file(file)
        if actual != expected:
            advice = f"; {_seal_advice(model_dir)}" if is_code(rel) else ""
            raise ArtifactError(
                f"model file {file} does not match its sha256 in {MANIFEST_FILE} "
                f"(expected {expected[:12]}..., got {actual[:12]}...): it was altered or truncated{advice}"
            )


# -- sealing after an edit of code/ ----------------------------------------------------------------------
@dataclass(frozen=True)
class SealReport:
    """What ``seal`` changed in the manifest (relative paths)."""

    added: list[str]
    changed: list[str]
    removed: list[str]
    format_from: int  # the manifest's format version before

    @property
    def unchanged(self) -> bool:
        return not (self.added or self.changed or self.removed) and self.format_from == FORMAT_VERSION

    def lines(self) -> list[str]:
        """One line per change, for ``textclf seal`` to print."""
        out = [f"added    {rel}" for rel in self.added]
        out += [f"changed  {rel}" for rel in self.changed]
        out += [f"removed  {rel}" for rel in self.removed]
        if self.format_from != FORMAT_VERSION:
            out.append(f"format   {self.format_from} -> {FORMAT_VERSION}")
        return out


def seal(model_dir: str | Path, *, all_files: bool = False) -> SealReport:
    """Re-hash ``code/`` (with ``all_files``, every file) into ``manifest.json`` after an edit of the rules.

    Without ``all_files`` every other file must still match the manifest (and nothing unlisted that
    serve would load may sit outside ``code/``): an edit of the rules must never quietly bless a
    changed model. ``all_files`` is the deliberate way to accept changed model files too.
    """
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir, verify=False)
    files, linked_dirs = _walk(model_dir)
    if linked := [rel for rel in linked_dirs if is_code(rel)]:
        raise ArtifactError(
            f"cannot seal {model_dir}: {', '.join(linked)} is a link to a directory, which serve would import "
            "from but a seal cannot cover; replace it with a copy of the files"
        )
    old = dict(manifest.files)
    if all_files:
        new = {rel: sha256_file(model_dir / rel) for rel in files}
    else:
        kept = {rel: digest for rel, digest in old.items() if not is_code(rel)}
        try:
            _check_listed(model_dir, kept)
            unlisted = unlisted_files(model_dir, Manifest(manifest.labels, files=kept))
            if outside := [rel for rel in unlisted if not is_code(rel)]:
                raise ArtifactError(f"{', '.join(outside)} would be loaded by serve but is not listed")
        except ArtifactError as exc:
            raise ArtifactError(
                f"cannot seal {model_dir}: {exc}. `{SEAL_COMMAND}` re-hashes {CODE_DIR}/ only, so that an edit "
                f"of the rules never blesses a changed model: export the model again, or run "
                f"`{SEAL_COMMAND} --all {model_dir}` if you changed it on purpose"
            ) from None
        new = kept | {rel: sha256_file(model_dir / rel) for rel in files if is_code(rel)}
    report = SealReport(
        added=sorted(set(new) - set(old)),
        changed=sorted(rel for rel in set(new) & set(old) if new[rel] != old[rel]),
        removed=sorted(set(old) - set(new)),
        format_from=manifest.format_version,
    )
    manifest.files = new
    manifest.format_version = FORMAT_VERSION
    for required in (MODEL_FILE, TOKENIZER_FILE):
        if required not in manifest.files:
            raise ArtifactError(f"cannot seal model directory {model_dir}: {required} is missing")
    if not report.unchanged:
        atomic_write_text(model_dir / MANIFEST_FILE, manifest.to_json())
    verify_files(model_dir, manifest)  # what serve will check, now
    return report


# -- writing a model directory in place ------------------------------------------------------------
# A model directory is built in a staging directory and moved into place at the end, so a failed
# export never leaves half a model behind. The destination may already exist (``/opt/ml/model`` does,
# and may be a mount point that cannot be renamed): then its entries are replaced one by one,
# ``manifest.json`` removed first and written last, so that no reader trusts a half-replaced directory.
# Dot files (``.gitkeep``) and the user's ``code/`` are left alone; the files of ``code/`` that the
# previous manifest sealed, unchanged since, stay sealed in the new one. Nothing new is blessed: an
# unsealed or edited hook stays unlisted, and ``serve`` refuses it until ``textclf seal``.


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
    sealed_code = _sealed_code(out_dir)
    (out_dir / MANIFEST_FILE).unlink(missing_ok=True)
    for entry in out_dir.iterdir():
        if entry == staging or entry.name == CODE_DIR or entry.name.startswith("."):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    _carry_sealed_code(staging / MANIFEST_FILE, out_dir, sealed_code)
    for entry in sorted(staging.iterdir(), key=lambda p: p.name == MANIFEST_FILE):  # manifest last
        shutil.move(str(entry), str(out_dir / entry.name))
    staging.rmdir()
    return out_dir


def _sealed_code(out_dir: Path) -> dict[str, str]:
    """The ``code/`` entries of the manifest in ``out_dir`` (none when it has none or cannot be read)."""
    try:
        listed = json.loads((out_dir / MANIFEST_FILE).read_text(encoding="utf-8")).get("files", {})
        return {str(rel): str(digest) for rel, digest in listed.items() if is_code(str(rel))}
    except (OSError, ValueError, AttributeError):
        return {}


def _carry_sealed_code(manifest_path: Path, out_dir: Path, sealed_code: dict[str, str]) -> None:
    """Add to the staged manifest the previously sealed ``code/`` files that are still unchanged."""
    carried = {
        rel: digest
        for rel, digest in sealed_code.items()
        if (out_dir / rel).is_file() and sha256_file(out_dir / rel) == digest
    }
    if carried:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
        data["files"] = dict(sorted((data.get("files", {}) | carried).items()))
        atomic_write_text(manifest_path, json.dumps(data, indent=2, sort_keys=True) + "\n")
