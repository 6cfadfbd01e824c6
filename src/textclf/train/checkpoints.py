"""Resumable checkpoints: written atomically, pruned, and only resumed on the same run.

Each run writes into a folder of its own in the checkpoint directory, ``run-<hash of its identity>``
(``run_folder``), where a checkpoint is a directory ``step-00000123`` holding::

    model.safetensors    the weights (safetensors, never a pickle)
    optimizer.pt         optimizer state    } torch.save of tensors and plain numbers only,
    scheduler.pt         LR scheduler state } read back with torch.load(weights_only=True)
    scaler.pt            GradScaler state   }
    rng.pt               every rank's python / numpy / torch (and CUDA) RNG states, in rank order
    trainer_state.json   data position (epoch, step in epoch), history, best so far, the label map,
                         and the run identity it may be resumed under
    checksums.json       sha256 and size of every file above, written last

It is written into a hidden temporary directory, fsynced and renamed into place, so a crash or a
full disk mid-write leaves the previous checkpoint whole (a write error names the free space left).
Resuming verifies the checksums first: a damaged newest checkpoint (a copy cut short, a bad sync
from S3) is reported and the previous one is used; when none verifies, the job fails and says so.

The best weights so far live beside the checkpoints as ``best-step-N.safetensors`` named by the
pointer file ``best.json`` (replaced atomically), so a resumed run still exports the best model it saw.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from textclf.contract.model_dir import atomic_write_text, sha256_file
from textclf.errors import CheckpointError

CHECKPOINT_PATTERN = re.compile(r"^step-(\d+)$")
TMP_PREFIX = ".tmp-"
BEST_POINTER = "best.json"
STATE_FILE = "trainer_state.json"
CHECKSUMS_FILE = "checksums.json"
CHECKPOINT_FILES = ("model.safetensors", "optimizer.pt", "scheduler.pt", "scaler.pt", "rng.pt", STATE_FILE)
# What a failed write raises: OSError from Python, SafetensorError from safetensors' Rust writer,
# RuntimeError from torch.save's zip writer (which says "unexpected pos", not "disk full").
WRITE_ERRORS = (OSError, RuntimeError, SafetensorError)


@dataclass
class TrainerState:
    """Where training stands: everything besides tensors that a resumed run needs."""

    global_step: int = 0
    epoch: int = 0  # epochs completed
    step_in_epoch: int = 0  # optimizer steps done in the current epoch (the data position)
    best_metric: float | None = None
    best_step: int = 0
    evals_without_improvement: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    identity: dict[str, Any] = field(default_factory=dict)


def run_folder(identity: dict[str, Any]) -> str:
    """This run's own folder in the checkpoint directory, named by a hash of its identity.

    SageMaker copies a job's whole checkpoint prefix into /opt/ml/checkpoints and mirrors deletions
    back; tuning trials (and reruns with other hyperparameters) may share that prefix. Each run
    lists, resumes and prunes only its own folder, so none resumes or deletes another's checkpoints.
    """
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()
    return f"run-{digest[:16]}"


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def list_checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary directories are never listed)."""
    if not directory.is_dir():
        return []
    found = [
        (int(m.group(1)), p) for p in directory.iterdir() if p.is_dir() and (m := CHECKPOINT_PATTERN.match(p.name))
    ]
    return [p for _, p in sorted(found)]


def latest(directory: Path) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1] if found else None


def remove_partial(directory: Path) -> None:
    """Delete temporary directories left by a run killed while writing a checkpoint."""
    if directory.is_dir():
        for p in directory.iterdir():
            if p.name.startswith(TMP_PREFIX) and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            elif p.name.startswith(TMP_PREFIX):
                p.unlink(missing_ok=True)


# -- RNG states as weights_only-loadable objects ---------------------------------------------------


def rng_state() -> dict[str, Any]:
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": random.getstate(),  # (version, tuple of ints, None): plain containers
        "numpy": [np_name, torch.from_numpy(np.asarray(np_keys, dtype=np.int64)), np_pos, np_has_gauss, np_gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- writing ---------------------------------------------------------------------------------------


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _free_space(directory: Path) -> str:
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        return "free space unknown"
    size = f"{free / 2**20:.1f} MiB" if free >= 2**20 else f"{free / 1024:.0f} KiB"
    return f"the file system is full ({size} free)" if free < 2**20 else f"{size} free there"


def write_error(what: str, directory: Path, exc: BaseException) -> str:
    """One line for a failed write: what, where, the error, and the free space (the usual cause)."""
    return f"cannot write {what} to {directory}: {_first_error(exc)}; {_free_space(directory)}"


def _first_error(exc: BaseException) -> str:
    """The gist of a write error: the OS's words where there are some, else the first line, kept short."""
    if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list) and exc.args[0]:
        first = exc.args[0][0]  # copytree collects (src, dst, why) for every file it could not copy
        detail = str(first[2]) if isinstance(first, tuple) and len(first) == 3 else str(first)
    elif isinstance(exc, OSError) and exc.strerror:
        detail = exc.strerror
    else:
        detail = (str(exc).splitlines() or [type(exc).__name__])[0]
    return detail if len(detail) <= 300 else detail[:300] + "..."


def _fsync_files(directory: Path) -> None:
    for p in directory.iterdir():
        with p.open("rb") as fh:
            os.fsync(fh.fileno())
    _fsync_dir(directory)


def save(
    directory: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    state: TrainerState,
    keep: int,
    rng_states: list[dict[str, Any]] | None = None,
) -> Path:
    """Write a checkpoint for ``state.global_step`` atomically, then keep only the newest ``keep``.

    ``rng_states``: every rank's RNG state, in rank order (default: this process's only).
    """
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / checkpoint_name(state.global_step)
    tmp = directory / f"{TMP_PREFIX}{final.name}-{os.getpid()}"
    previous = latest(directory)
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        save_model(model, str(tmp / "model.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save(scaler.state_dict(), tmp / "scaler.pt")
        torch.save(rng_states or [rng_state()], tmp / "rng.pt")
        (tmp / STATE_FILE).write_text(json.dumps(asdict(state), indent=1) + "\n", encoding="utf-8")
        sums = {
            name: {"sha256": sha256_file(tmp / name), "bytes": (tmp / name).stat().st_size} for name in CHECKPOINT_FILES
        }
        (tmp / CHECKSUMS_FILE).write_text(json.dumps(sums, indent=1) + "\n", encoding="utf-8")
        _fsync_files(tmp)
        if final.exists():  # the same step saved twice (epoch end after a periodic save)
            shutil.rmtree(final)
        tmp.rename(final)
        _fsync_dir(directory)
    except WRITE_ERRORS as exc:
        reason = write_error(f"checkpoint {final.name}", directory, exc)  # before the partial files go
        shutil.rmtree(tmp, ignore_errors=True)
        kept = f"the previous checkpoint {previous.name} is intact" if previous else "no earlier checkpoint exists"
        raise CheckpointError(f"{reason}; {kept}") from exc
    for old in list_checkpoints(directory)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def save_best(directory: Path, model: torch.nn.Module, record: dict[str, Any]) -> Path:
    """Keep ``model`` as the best so far: weights file first, then the pointer, then drop the old file."""
    directory.mkdir(parents=True, exist_ok=True)
    name = f"best-{checkpoint_name(record['step'])}.safetensors"
    tmp = directory / f"{TMP_PREFIX}{name}"
    try:
        save_model(model, str(tmp))
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        tmp.replace(directory / name)
        atomic_write_text(directory / BEST_POINTER, json.dumps({"file": name, **record}, indent=1) + "\n")
    except WRITE_ERRORS as exc:
        reason = write_error("the best weights", directory, exc)
        tmp.unlink(missing_ok=True)
        previous = latest(directory)
        kept = f"the checkpoint {previous.name} is intact" if previous else "no checkpoint was written yet"
        raise CheckpointError(f"{reason}; {kept}") from exc
    for old in directory.glob("best-step-*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)
    return directory / name


def best_record(directory: Path) -> dict[str, Any] | None:
    pointer = directory / BEST_POINTER
    if not pointer.is_file():
        return None
    return json.loads(pointer.read_text(encoding="utf-8"))


def load_best(directory: Path, model: torch.nn.Module) -> dict[str, Any] | None:
    """Load the best weights into ``model``; returns their record, or None when none were saved."""
    record = best_record(directory)
    if record is None:
        return None
    load_model(model, str(directory / record["file"]))
    return record


# -- reading ---------------------------------------------------------------------------------------


def unpickling_refusal(exc: pickle.UnpicklingError) -> str:
    """The gist of ``torch.load(weights_only=True)``'s refusal, on one line and without its advice to
    load the file with ``weights_only=False`` (which would run whatever the pickle holds)."""
    found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\. |\.?\n|$)", str(exc))
    return found.group(1).strip() if found else "not a tensors-only torch pickle"


def _load_pt(path: Path) -> Any:
    """A tensors-only torch pickle: anything else (a ``__reduce__`` payload) is refused unread."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"refusing checkpoint file {path}: it holds objects other than tensors and plain data "
            f"({unpickling_refusal(exc)}). Remove {path.parent} to start over"
        ) from None


def verify(checkpoint: Path) -> None:
    """Raise ``CheckpointError`` unless every file of ``checkpoint`` is there with its recorded sha256."""
    sums_file = checkpoint / CHECKSUMS_FILE
    if not sums_file.is_file():
        raise CheckpointError(f"checkpoint {checkpoint} has no {CHECKSUMS_FILE}")
    try:
        sums = json.loads(sums_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint {checkpoint}: unreadable {CHECKSUMS_FILE}: {exc}") from None
    for name in CHECKPOINT_FILES:
        path, expected = checkpoint / name, sums.get(name, {})
        if not path.is_file():
            raise CheckpointError(f"checkpoint {checkpoint} lacks {name}")
        if path.stat().st_size != expected.get("bytes") or sha256_file(path) != expected.get("sha256"):
            raise CheckpointError(f"checkpoint {checkpoint}: {name} does not match its recorded sha256")


def latest_verified(directory: Path, say: Any = print) -> Path | None:
    """The newest checkpoint whose files verify; damaged newer ones are named and skipped.

    None when there is no checkpoint at all; ``CheckpointError`` when there are some but none verifies.
    """
    found = list_checkpoints(directory)
    problems = []
    for checkpoint in reversed(found):
        try:
            verify(checkpoint)
        except CheckpointError as exc:
            problems.append(str(exc))
            say(f"checkpoint {checkpoint.name} is damaged ({exc}); trying the previous one")
            continue
        return checkpoint
    if found:
        raise CheckpointError(
            f"no usable checkpoint in {directory}: {'; '.join(problems)}. Remove {directory} to start over"
        )
    return None


def read_state(checkpoint: Path) -> TrainerState:
    data = json.loads((checkpoint / STATE_FILE).read_text(encoding="utf-8"))
    known = TrainerState.__dataclass_fields__
    return TrainerState(**{k: v for k, v in data.items() if k in known})


def check_identity(checkpoint: Path, state: TrainerState, identity: dict[str, Any]) -> None:
    """Refuse a checkpoint written by a different run (other data, labels, batch layout...)."""
    differing = [k for k in sorted(set(identity) | set(state.identity)) if identity.get(k) != state.identity.get(k)]
    if differing:
        details = "; ".join(
            f"{k}: checkpoint {_short(state.identity.get(k))}, this run {_short(identity.get(k))}" for k in differing
        )
        raise CheckpointError(
            f"checkpoint {checkpoint} belongs to a different training run ({details}); refusing to resume. "
            f"Remove {checkpoint.parent} (or point CheckpointConfig elsewhere) to start over"
        )


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:16] + "..." + text[-8:]


def restore(
    checkpoint: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    identity: dict[str, Any],
    rank: int = 0,
) -> TrainerState:
    """Load a checkpoint into the live objects after verifying it and checking it belongs to this run;
    ``rank`` takes its own RNG state (the world size is part of the run's identity)."""
    verify(checkpoint)
    state = read_state(checkpoint)
    check_identity(checkpoint, state, identity)
    load_model(model, str(checkpoint / "model.safetensors"))
    optimizer.load_state_dict(_load_pt(checkpoint / "optimizer.pt"))
    scheduler.load_state_dict(_load_pt(checkpoint / "scheduler.pt"))
    scaler.load_state_dict(_load_pt(checkpoint / "scaler.pt"))
    states = _load_pt(checkpoint / "rng.pt")
    set_rng_state(states[rank] if isinstance(states, list) else states)  # a dict: one process, older format
    return state
