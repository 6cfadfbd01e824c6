"""Interrupted training resumes where it stopped: SIGKILL after a checkpoint, SIGTERM (a spot
interruption or StopTrainingJob), each followed by a rerun on the same /opt/ml tree.

Every run trains the tiny BERT for 2 epochs of 63 optimizer steps with a checkpoint every 5 steps,
so the first checkpoint lies mid-epoch and the resumed run has an epoch boundary still to cross.
An uninterrupted run on the same inputs is the reference: the resumed run must end on the same
step count and, since data order and RNG state are restored, with the same final metrics.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from support.training import (
    RESUME_STEPS_PER_EPOCH,
    SageMakerTree,
    checkpoint_state,
    complete_checkpoints,
    copy_tree,
    report,
    resume_tree,
    start_logged,
    wait_until,
)
from textclf import errors

STEPS_PER_EPOCH = RESUME_STEPS_PER_EPOCH
TOTAL_STEPS = 2 * STEPS_PER_EPOCH


@pytest.fixture(scope="module")
def base_tree(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path) -> SageMakerTree:
    return resume_tree(tmp_path_factory.mktemp("resume") / "inputs", tiny_encoder_dir)


@pytest.fixture(scope="module")
def reference(base_tree: SageMakerTree, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The report of an uninterrupted run on the same inputs."""
    sm = copy_tree(base_tree, tmp_path_factory.mktemp("reference") / "opt_ml")
    result = sm.run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "resumed from step" not in result.stdout
    done = report(sm)
    assert done["training"]["resumed_from_step"] is None
    assert done["training"]["total_steps"] == done["training"]["steps_run"] == TOTAL_STEPS
    return done


def assert_resumed_like_reference(sm: SageMakerTree, stdout: str, from_state: dict, reference: dict) -> None:
    step = from_state["global_step"]
    assert f"resumed from step {step} (epoch {from_state['epoch']}, step {from_state['step_in_epoch']} of it)" in stdout
    assert f"training finished (done) at step {TOTAL_STEPS}/{TOTAL_STEPS}" in stdout
    done = report(sm)
    training = done["training"]
    assert training["resumed_from_step"] == step > 0
    assert training["steps_run"] == TOTAL_STEPS - step
    assert training["total_steps"] == reference["training"]["total_steps"] == TOTAL_STEPS
    assert training["epochs_completed"] == reference["training"]["epochs_completed"] == 2
    # Evaluations before the interruption come from the checkpoint, later ones from this run: together
    # the same steps, and (same batches, same RNG) the same numbers as the uninterrupted run.
    assert [h["step"] for h in done["history"]] == [h["step"] for h in reference["history"]]
    for mine, theirs in zip(done["history"], reference["history"], strict=True):
        assert mine["validation"]["loss"] == pytest.approx(theirs["validation"]["loss"], rel=1e-4, abs=1e-6)
    assert done["final"]["validation"]["accuracy"] == pytest.approx(reference["final"]["validation"]["accuracy"])
    assert (sm.model_dir / "manifest.json").is_file()
    assert not sm.failure.exists()
    assert not [p.name for p in sm.checkpoints.rglob(".tmp-*")]


def test_sigkill_after_a_checkpoint_then_rerun_resumes_mid_epoch(
    base_tree: SageMakerTree, reference: dict, tmp_path: Path
) -> None:
    sm = copy_tree(base_tree, tmp_path / "opt_ml")
    proc = start_logged(sm, tmp_path / "killed.log")
    wait_until(lambda: complete_checkpoints(sm.checkpoints), proc, "a checkpoint")
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL

    # Killed without warning: no model, no report, no failure file; the newest complete checkpoint stays.
    assert not sm.model_dir.exists() or not any(sm.model_dir.iterdir())
    assert not (sm.output_data / "metrics.json").exists()
    latest = complete_checkpoints(sm.checkpoints)[-1]
    state = checkpoint_state(latest)
    assert 0 < state["global_step"] < STEPS_PER_EPOCH, f"killed too late to test a mid-epoch resume: {state}"
    assert state["epoch"] == 0 and state["step_in_epoch"] == state["global_step"]

    result = sm.run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert_resumed_like_reference(sm, result.stdout, state, reference)


def test_sigterm_saves_a_checkpoint_exits_143_and_the_rerun_resumes(
    base_tree: SageMakerTree, reference: dict, tmp_path: Path
) -> None:
    sm = copy_tree(base_tree, tmp_path / "opt_ml")
    log = tmp_path / "stopped.log"
    proc = start_logged(sm, log)
    wait_until(lambda: complete_checkpoints(sm.checkpoints), proc, "a checkpoint")  # training is under way
    proc.send_signal(signal.SIGTERM)
    # SageMaker sends SIGKILL 120 s after SIGTERM: the job must be gone well before.
    assert proc.wait(timeout=110) == errors.EXIT_STOPPED == 143, log.read_text()

    output = log.read_text()
    assert "signal SIGTERM received: checkpointing at the next step boundary" in output
    reason = sm.failure.read_text().splitlines()[0]
    match = re.match(rf"stopped by SIGTERM at step (\d+)/{TOTAL_STEPS}; a checkpoint was saved in (\S+)", reason)
    assert match, reason
    step = int(match.group(1))
    assert Path(match.group(2)).parent == sm.checkpoints  # this run's own folder in the checkpoint directory
    # The checkpoint of the very step it stopped at, complete, whether or not a periodic one was due.
    latest = complete_checkpoints(sm.checkpoints)[-1]
    assert latest.name == f"step-{step:08d}"
    state = checkpoint_state(latest)
    assert state["global_step"] == step and 0 < step < TOTAL_STEPS
    assert not sm.model_dir.exists() or not any(sm.model_dir.iterdir())

    sm.failure.unlink()  # SageMaker starts a restarted job with a fresh output directory
    result = sm.run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert_resumed_like_reference(sm, result.stdout, state, reference)


def test_sigterm_before_training_stops_at_once_with_143(base_tree: SageMakerTree, tmp_path: Path) -> None:
    sm = copy_tree(base_tree, tmp_path / "opt_ml")
    log = tmp_path / "early.log"
    proc = start_logged(sm, log)
    wait_until(lambda: "data: validation from" in log.read_text(), proc, "the data summary")  # before torch loads
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=110) == errors.EXIT_STOPPED, log.read_text()
    reason = sm.failure.read_text().splitlines()[0]
    # Usually before training (nothing to save); on a fast machine the loop may have begun and saved a step.
    if reason.startswith("stopped by SIGTERM before training started"):
        assert not complete_checkpoints(sm.checkpoints)
    else:
        assert re.match(r"stopped by SIGTERM at step \d+/", reason), reason
    assert not sm.model_dir.exists() or not any(sm.model_dir.iterdir())
