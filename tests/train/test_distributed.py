"""Two "hosts" on one machine: two ``train`` processes, each with its own /opt/ml tree whose
``resourceconfig.json`` names it ``algo-1`` or ``algo-2``, meet over gloo and train one model.

``algo-1`` does not resolve here, so ``TEXTCLF_MASTER_ADDR=127.0.0.1`` (documented in
``textclf.train.distributed``) stands in for the DNS lookup of ``hosts[0]``; the interface SageMaker would
name (``eth0``) is ``lo``. Only rank 0 (``algo-1``) may write the model, the outputs and checkpoints.
"""

from __future__ import annotations

from pathlib import Path

from support.training import (
    FAST_HYPERPARAMETERS,
    SageMakerTree,
    complete_checkpoints,
    copy_tree,
    report,
    run_hosts,
)


def test_two_hosts_train_together_and_only_rank_0_writes(sm: SageMakerTree, tmp_path: Path) -> None:
    hosts = ["algo-1", "algo-2"]
    sm.hyperparameters({**FAST_HYPERPARAMETERS, "epochs": "6"})
    trees = {"algo-1": sm, "algo-2": copy_tree(sm, tmp_path / "algo-2" / "opt_ml")}
    codes, logs = run_hosts(trees, tmp_path)
    assert codes == {"algo-1": 0, "algo-2": 0}, logs

    # Both took part, as ranks 0 and 1 of 2, each training on its half of every epoch.
    assert "rank 0/2 on host algo-1: device cpu" in logs["algo-1"]
    assert "rank 1/2 on host algo-2: device cpu" in logs["algo-2"]
    for rank, host in enumerate(hosts):
        expected = f"rank {rank}/2: training on 120 of 240 examples per epoch; 8 steps per epoch, 48 steps in all"
        assert expected in logs[host]

    # Rank 0 wrote everything, with world size 2 in its report; rank 1 wrote nothing.
    leader, follower = trees["algo-1"], trees["algo-2"]
    done = report(leader)
    assert done["training"]["world_size"] == 2
    assert done["training"]["total_steps"] == 48 == done["history"][-1]["step"]
    assert done["final"]["validation"]["accuracy"] >= 0.6  # three classes: chance is 1/3
    assert (leader.model_dir / "manifest.json").is_file()
    assert complete_checkpoints(leader.checkpoints)
    assert not follower.model_dir.exists() or not any(follower.model_dir.iterdir())
    assert not follower.output_data.exists() or not any(follower.output_data.iterdir())
    assert not follower.checkpoints.exists() or not any(follower.checkpoints.iterdir())
    assert not leader.failure.exists() and not follower.failure.exists()
    # Progress and metric lines come from rank 0 only, so a tuning job reads one value per metric.
    assert "validation_accuracy=" in logs["algo-1"] and "validation_accuracy=" not in logs["algo-2"]
