"""A full disk while writing a checkpoint or the model: a clear failure, and nothing good is lost.

The checkpoint directory (or the model directory) is a small tmpfs mounted for the test, so the
writes fail with a real ENOSPC from the kernel. After the failure the space is freed and the job
rerun on the same tree: it must resume from the last good checkpoint and finish.
Needs root and permission to mount (skipped with the reason otherwise).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.training import (
    SageMakerTree,
    checkpoint_state,
    complete_checkpoints,
    keyword_rows,
    report,
    start_logged,
    wait_until,
    write_csv,
)
from textclf import errors

TOTAL_STEPS = 2 * 38  # 2 epochs of ceil(600 / 16) steps


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Take every free byte of ``directory``'s file system with one file; returns it."""
    filler = directory / ".filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 4096, 1):  # big writes first, then whatever is left of the last page
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)
    return filler


@pytest.fixture
def long_sm(sm: SageMakerTree) -> SageMakerTree:
    write_csv(sm.channel("train") / "train.csv", keyword_rows(600, seed=1))
    hp = {"epochs": "2", "batch_size": "16", "checkpoint_every_steps": "4", "keep_checkpoints": "2"}
    sm.hyperparameters({**json.loads((sm.root / "input" / "config" / "hyperparameters.json").read_text()), **hp})
    return sm


def test_disk_full_while_checkpointing_fails_clearly_and_the_last_checkpoint_resumes(
    long_sm: SageMakerTree, tmp_path: Path
) -> None:
    sm = long_sm
    with tmpfs(sm.checkpoints, "8m"):
        proc = start_logged(sm, tmp_path / "full.log")
        wait_until(lambda: complete_checkpoints(sm.checkpoints), proc, "a checkpoint")
        filler = fill(sm.checkpoints)
        code = proc.wait(timeout=240)
        output = (tmp_path / "full.log").read_text()
        assert code == errors.EXIT_USER_ERROR, output

        reason = sm.failure.read_text().splitlines()[0]
        assert re.match(r"cannot write (checkpoint step-\d+|the best weights) to \S+: ", reason), reason
        assert "the file system is full" in reason, reason
        assert str(sm.checkpoints) in reason
        assert not reason.startswith(("Traceback", "RuntimeError", "SafetensorError"))
        assert not (sm.model_dir / "manifest.json").exists()
        # The half-written checkpoint is gone; the complete ones are intact.
        assert not [p.name for p in sm.checkpoints.rglob(".tmp-*")]
        kept = complete_checkpoints(sm.checkpoints)
        assert kept
        named = re.search(r"the (?:previous )?checkpoint (step-\d+) is intact", reason)
        assert named and named.group(1) == kept[-1].name, reason
        state = checkpoint_state(kept[-1])

        # Space again (an operator, or a restarted job on a fresh volume): the rerun resumes and finishes.
        filler.unlink()
        sm.failure.unlink()
        result = sm.run()
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"resumed from step {state['global_step']} " in result.stdout
        done = report(sm)
        assert done["training"]["resumed_from_step"] == state["global_step"] > 0
        assert done["training"]["total_steps"] == TOTAL_STEPS == done["history"][-1]["step"]
        assert (sm.model_dir / "manifest.json").is_file()


def test_disk_full_while_writing_the_model_fails_clearly_and_a_rerun_exports(
    long_sm: SageMakerTree, tmp_path: Path
) -> None:
    sm = long_sm
    with tmpfs(sm.model_dir, "64k"):  # the tiny model's ONNX file alone is larger
        result = sm.run()
        assert result.returncode == errors.EXIT_USER_ERROR, result.stdout + result.stderr
        reason = sm.failure.read_text().splitlines()[0]
        assert reason.startswith(f"cannot write the model to {sm.model_dir}: "), reason
        assert "the fine-tuned weights stay in" in reason, reason
        assert not (sm.model_dir / "manifest.json").exists()
        # Whatever part was copied before the disk filled, there is no manifest, so no server trusts it;
        # and no staging directory is left to take up space.
        assert not list(sm.root.glob(".model.staging-*")) and not list(sm.model_dir.glob(".staging-*"))
        # Training itself completed and its last checkpoint is whole.
        state = checkpoint_state(complete_checkpoints(sm.checkpoints)[-1])
        assert state["global_step"] == TOTAL_STEPS

    # The model directory on a disk with space: the rerun trains no more, it exports what it has.
    sm.failure.unlink()
    result = sm.run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"resumed from step {TOTAL_STEPS} " in result.stdout
    done = report(sm)
    assert done["training"]["steps_run"] == 0
    from textclf.contract.model_dir import read_manifest

    assert read_manifest(sm.model_dir, verify=True).labels == done["labels"]
