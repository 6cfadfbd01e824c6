"""Runs that share a checkpoint directory (tuning trials on one S3 prefix, reruns with other
hyperparameters) each keep, resume and prune only their own checkpoints."""

from __future__ import annotations

import json

from support.training import FAST_HYPERPARAMETERS, SageMakerTree, complete_checkpoints, run_folder


def test_runs_with_other_hyperparameters_never_touch_each_others_checkpoints(sm: SageMakerTree) -> None:
    a = {**FAST_HYPERPARAMETERS, "max_steps": "6", "checkpoint_every_steps": "2", "keep_checkpoints": "1"}
    sm.hyperparameters(a)
    first = sm.run()
    assert first.returncode == 0, first.stdout + first.stderr
    folder_a = run_folder(sm.checkpoints)
    saved_a = sorted(p.name for p in folder_a.iterdir())

    # A tuning trial with another learning rate, on the same prefix: a fresh run in a folder of its own.
    sm.hyperparameters({**a, "learning_rate": "0.001"})
    second = sm.run()
    assert second.returncode == 0, second.stdout + second.stderr
    assert "resumed from step" not in second.stdout
    folders = sorted(p for p in sm.checkpoints.iterdir() if p.is_dir())
    assert len(folders) == 2 and folder_a in folders
    assert sorted(p.name for p in folder_a.iterdir()) == saved_a  # not pruned by the other run
    (folder_b,) = (f for f in folders if f != folder_a)
    state = json.loads((sorted(folder_b.glob("step-*"))[-1] / "trainer_state.json").read_text())
    assert state["identity"]["hyperparameters"]["learning_rate"] == 0.001

    # The first run's rerun (a spot restart) finds its own checkpoints again.
    sm.hyperparameters({**a, "log_every_steps": "1"})  # logging does not change the run
    third = sm.run()
    assert third.returncode == 0, third.stdout + third.stderr
    assert "resumed from step 6" in third.stdout
    assert f"checkpoints: {folder_a} " in third.stdout


def test_one_runs_checkpoints_are_listed_alone(sm: SageMakerTree) -> None:
    sm.hyperparameters({**FAST_HYPERPARAMETERS, "max_steps": "4", "checkpoint_every_steps": "2"})
    assert sm.run().returncode == 0
    assert [p.name for p in complete_checkpoints(sm.checkpoints)] == ["step-00000002", "step-00000004"]
