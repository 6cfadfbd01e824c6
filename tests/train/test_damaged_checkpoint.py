"""A damaged checkpoint (a copy cut short, a bad sync from S3) is found by its sha256, named, and
skipped for the one before it; when none verifies, the job fails with exit 2 and says so."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest

from support.training import (
    SageMakerTree,
    checkpoint_state,
    complete_checkpoints,
    copy_tree,
    report,
    resume_tree,
    run_folder,
    start_logged,
    wait_until,
)
from textclf import errors


@pytest.fixture
def base_tree(tmp_path: Path, tiny_encoder_dir: Path) -> SageMakerTree:
    return resume_tree(tmp_path / "inputs", tiny_encoder_dir)


def corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_damaged_checkpoint_is_named_and_skipped_and_none_usable_fails(
    base_tree: SageMakerTree, tmp_path: Path
) -> None:
    sm = copy_tree(base_tree, tmp_path / "opt_ml")
    proc = start_logged(sm, tmp_path / "killed.log")
    wait_until(lambda: len(complete_checkpoints(sm.checkpoints)) >= 2, proc, "two checkpoints")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    older, newest = complete_checkpoints(sm.checkpoints)[-2:]
    state = checkpoint_state(older)  # the rerun prunes it once it has saved newer ones

    # A second tree with the same checkpoints, every one of them damaged: nothing to resume from.
    broken = copy_tree(base_tree, tmp_path / "broken" / "opt_ml")
    shutil.copytree(sm.checkpoints, broken.checkpoints)
    for checkpoint in complete_checkpoints(broken.checkpoints):
        corrupt(checkpoint / "optimizer.pt")
    result = broken.run()
    assert result.returncode == errors.EXIT_USER_ERROR, result.stdout + result.stderr
    reason = broken.failure.read_text().splitlines()[0]
    assert reason.startswith(f"no usable checkpoint in {run_folder(broken.checkpoints)}: "), reason
    assert "optimizer.pt does not match its recorded sha256" in reason

    # Only the newest damaged: said so, and the one before it is resumed.
    corrupt(newest / "model.safetensors")
    result = sm.run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"checkpoint {newest.name} is damaged (" in result.stdout
    assert "model.safetensors does not match its recorded sha256" in result.stdout
    assert f"resumed from step {state['global_step']} " in result.stdout
    assert report(sm)["training"]["resumed_from_step"] == state["global_step"]
