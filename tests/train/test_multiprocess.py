"""Several training processes per host (one per GPU; here gloo on the CPU): the same run, resumable.

Data order is global (a function of seed and epoch), each rank taking its slice of every global
batch, and the tiny BERT here has no dropout: so 2 processes of batch 16, 4 processes (2 hosts x 2)
of batch 8 and 1 process of batch 32 step on the same examples and must reach the same validation
losses, within float tolerance. A single-host job needs no resolvable host name; a SIGTERM stops
every rank at one step boundary after rank 0's checkpoint, exits 143, and the rerun resumes on each
rank's own RNG state.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest
import torch

from support.tiny_model import make_tiny_model
from support.training import (
    ALL_WORDS,
    FAST_HYPERPARAMETERS,
    SageMakerTree,
    checkpoint_state,
    complete_checkpoints,
    copy_tree,
    keyword_rows,
    new_tree,
    report,
    run_hosts,
    start_logged,
    wait_until,
    write_csv,
)
from textclf import errors

pytestmark = pytest.mark.slow
HYPERPARAMETERS = {**FAST_HYPERPARAMETERS, "epochs": "4", "checkpoint_every_steps": "8", "log_every_steps": "8"}
TOTAL_STEPS = 4 * 480 // 32  # 480 rows, global batch 32


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> SageMakerTree:
    encoder = make_tiny_model(tmp_path_factory.mktemp("encoder"), labels=None, words=ALL_WORDS, dropout=0.0)
    tree = new_tree(tmp_path_factory.mktemp("multiprocess") / "inputs")
    write_csv(tree.channel("train") / "train.csv", keyword_rows(480, seed=1))
    write_csv(tree.channel("validation") / "validation.csv", keyword_rows(60, seed=2))
    for f in encoder.iterdir():
        (tree.channel("pretrained") / f.name).write_bytes(f.read_bytes())
    return tree


def _run(base: SageMakerTree, root: Path, batch_size: int, **env: str) -> tuple[SageMakerTree, str]:
    sm = copy_tree(base, root)
    sm.hyperparameters({**HYPERPARAMETERS, "batch_size": str(batch_size)})
    result = sm.run(timeout=600, **env)
    assert result.returncode == 0, result.stdout + result.stderr
    return sm, result.stdout


def assert_same_run(done: dict, reference: dict, rel: float = 1e-3) -> None:
    assert [h["step"] for h in done["history"]] == [h["step"] for h in reference["history"]]
    for mine, theirs in zip(done["history"], reference["history"], strict=True):
        assert mine["validation"]["loss"] == pytest.approx(theirs["validation"]["loss"], rel=rel), done["history"]
    assert done["final"]["validation"]["accuracy"] == pytest.approx(reference["final"]["validation"]["accuracy"])


@pytest.fixture(scope="module")
def one_process(base: SageMakerTree, tmp_path_factory: pytest.TempPathFactory) -> dict:
    sm, _ = _run(base, tmp_path_factory.mktemp("one") / "opt_ml", batch_size=32)
    done = report(sm)
    assert done["training"]["world_size"] == 1 and done["training"]["total_steps"] == TOTAL_STEPS
    assert done["final"]["validation"]["accuracy"] >= 0.6  # it learned: chance is 1/3
    return done


@pytest.fixture(scope="module")
def two_processes(base: SageMakerTree, tmp_path_factory: pytest.TempPathFactory) -> tuple[SageMakerTree, str]:
    # No TEXTCLF_MASTER_ADDR: one host's processes meet on loopback, 'algo-1' need not resolve.
    return _run(base, tmp_path_factory.mktemp("two") / "opt_ml", batch_size=16, TEXTCLF_PROCS_PER_HOST="2")


def test_two_processes_on_one_host_train_the_same_model_as_one(two_processes, one_process: dict) -> None:
    sm, output = two_processes
    assert "1 process(es) on each of 1 host(s)" not in output
    assert "device: cpu; torch " in output and "; 2 process(es) on each of 1 host(s)" in output
    for rank in (0, 1):
        assert f"rank {rank}/2 on host algo-1: device cpu" in output
        assert (
            f"rank {rank}/2: training on 240 of 480 examples per epoch; 15 steps per epoch, 60 steps in all" in output
        )
    done = report(sm)
    assert done["training"]["world_size"] == 2
    assert_same_run(done, one_process)
    assert (sm.model_dir / "manifest.json").is_file() and not sm.failure.exists()
    assert output.count("outputs written to") == 1  # rank 0 alone writes the model and the report


def test_two_hosts_of_two_processes_train_the_same_model_as_one(
    base: SageMakerTree, one_process: dict, tmp_path: Path
) -> None:
    hosts = ["algo-1", "algo-2"]
    trees = {host: copy_tree(base, tmp_path / host / "opt_ml") for host in hosts}
    for tree in trees.values():
        tree.hyperparameters({**HYPERPARAMETERS, "batch_size": "8"})
    codes, logs = run_hosts(trees, tmp_path, timeout=600, TEXTCLF_PROCS_PER_HOST="2")
    assert codes == {"algo-1": 0, "algo-2": 0}, logs
    for rank in range(4):
        assert f"rank {rank}/4 on host {hosts[rank // 2]}: device cpu" in logs[hosts[rank // 2]]
    done = report(trees["algo-1"])
    assert done["training"]["world_size"] == 4
    assert_same_run(done, one_process)
    follower = trees["algo-2"]
    assert not follower.model_dir.exists() or not any(follower.model_dir.iterdir())
    assert not follower.checkpoints.exists() or not any(follower.checkpoints.iterdir())


def test_sigterm_stops_every_rank_after_rank_0s_checkpoint_and_the_rerun_resumes(
    base: SageMakerTree, two_processes, tmp_path: Path
) -> None:
    reference = report(two_processes[0])
    sm = copy_tree(base, tmp_path / "opt_ml")
    sm.hyperparameters({**HYPERPARAMETERS, "batch_size": "16"})
    log = tmp_path / "stopped.log"
    proc = start_logged(sm, log, TEXTCLF_PROCS_PER_HOST="2")
    wait_until(lambda: complete_checkpoints(sm.checkpoints), proc, "a checkpoint", timeout=300)
    proc.send_signal(signal.SIGTERM)  # to the launcher, as SageMaker signals PID 1; it forwards to the ranks
    assert proc.wait(timeout=110) == errors.EXIT_STOPPED, log.read_text()

    output = log.read_text()
    stops = re.findall(r"stopped by SIGTERM at step (\d+)/", output)
    assert len(stops) == 2 and len(set(stops)) == 1, output  # both ranks, at the same step boundary
    step = int(stops[0])
    latest = complete_checkpoints(sm.checkpoints)[-1]
    assert latest.name == f"step-{step:08d}" and checkpoint_state(latest)["global_step"] == step < TOTAL_STEPS
    rng = torch.load(latest / "rng.pt", weights_only=True)
    assert isinstance(rng, list) and len(rng) == 2  # each rank's own RNG state, in rank order
    assert all(isinstance(state["torch"], torch.Tensor) and "numpy" in state for state in rng)
    assert not sm.model_dir.exists() or not any(sm.model_dir.iterdir())

    sm.failure.unlink()
    result = sm.run(timeout=600, TEXTCLF_PROCS_PER_HOST="2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"resumed from step {step}" in result.stdout
    done = report(sm)
    assert done["training"]["resumed_from_step"] == step
    assert_same_run(done, reference, rel=1e-4)


def test_a_validation_set_smaller_than_the_world_is_evaluated(base: SageMakerTree, tmp_path: Path) -> None:
    sm = copy_tree(base, tmp_path / "opt_ml")
    for f in sm.channel("validation").iterdir():
        f.unlink()
    write_csv(sm.channel("validation") / "one.csv", keyword_rows(1, seed=5))
    sm.hyperparameters({**HYPERPARAMETERS, "batch_size": "16", "max_steps": "2"})
    result = sm.run(timeout=600, TEXTCLF_PROCS_PER_HOST="2")
    assert result.returncode == 0, result.stdout + result.stderr
    done = report(sm)
    assert done["training"]["validation_examples"] == 1
    assert done["final"]["validation"]["accuracy"] in (0.0, 1.0)
    assert [h["step"] for h in done["history"]] == [2]
