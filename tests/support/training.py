"""Helpers of the ``train`` tests: a learnable synthetic data set, an /opt/ml tree, and a runner.

The data set is "keywords -> labels": every text is filler words plus one or two keywords of its
class, so a tiny BERT trained from scratch learns it in a few hundred steps, and held-out accuracy
far above chance shows that training really happened.
"""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.serving import free_port

KEYWORDS = {
    "sports": ["goal", "match", "team", "coach"],
    "tech": ["laptop", "software", "chip", "code"],
    "food": ["pasta", "bread", "soup", "cheese"],
}
FILLER = "the a this that was is very really quite and but of to in on it with for as we they".split()
ALL_WORDS = FILLER + [w for words in KEYWORDS.values() for w in words] + ["unknown", "words", "here"]

# Small and fast: tests share two cores with other suites.
FAST_HYPERPARAMETERS = {
    "learning_rate": "0.003",
    "batch_size": "16",
    "eval_batch_size": "64",
    "max_seq_length": "32",
    "warmup_ratio": "0.1",
    "num_threads": "1",
    "log_every_steps": "10",
}


def keyword_rows(count: int, seed: int, labels: Sequence[str] = tuple(KEYWORDS)) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        label = labels[i % len(labels)]
        words = rng.choices(FILLER, k=rng.randint(4, 10))
        for keyword in rng.sample(KEYWORDS[label], k=rng.randint(1, 2)):
            words.insert(rng.randint(0, len(words)), keyword)
        rows.append({"text": " ".join(words), "label": label})
    rng.shuffle(rows)
    return rows


def write_csv(path: Path, rows: Sequence[dict], delimiter: str = ",") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, rows: Sequence[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@dataclass
class SageMakerTree:
    """An /opt/ml tree in a temporary directory (SM_ROOT points at it)."""

    root: Path

    def channel(self, name: str) -> Path:
        path = self.root / "input" / "data" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def hyperparameters(self, values: dict[str, str]) -> None:
        (self.root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(values))

    def resource_config(self, current_host: str, hosts: Sequence[str], interface: str | None = None) -> None:
        config = {"current_host": current_host, "hosts": list(hosts)}
        if interface:
            config["network_interface_name"] = interface
        (self.root / "input" / "config" / "resourceconfig.json").write_text(json.dumps(config))

    @property
    def failure(self) -> Path:
        return self.root / "output" / "failure"

    @property
    def output_data(self) -> Path:
        return self.root / "output" / "data"

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ, SM_ROOT=str(self.root), PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
        env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", **extra)
        return env

    def train_command(self) -> list[str]:
        return [sys.executable, "-m", "textclf.cli", "train"]

    def run(self, timeout: float = 300, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.train_command(), env=self.env(**extra_env), capture_output=True, text=True, timeout=timeout
        )

    def start(self, **extra_env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.train_command(),
            env=self.env(**extra_env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )


def new_tree(root: Path) -> SageMakerTree:
    (root / "input" / "config").mkdir(parents=True, exist_ok=True)
    (root / "input" / "data").mkdir(parents=True, exist_ok=True)
    return SageMakerTree(root)


# -- runs that are interrupted, resumed or spread over several "hosts" ------------------------------

RESUME_STEPS_PER_EPOCH = 63  # ceil(1000 / 16)
RESUME_HYPERPARAMETERS = {
    **FAST_HYPERPARAMETERS,
    "epochs": "2",
    "batch_size": "16",
    "checkpoint_every_steps": "5",
    "keep_checkpoints": "2",
    "log_every_steps": "5",
}


def resume_tree(root: Path, encoder_dir: Path) -> SageMakerTree:
    """A tree for interrupted runs: 2 epochs of 63 steps, a checkpoint every 5 (the first mid-epoch)."""
    tree = new_tree(root)
    write_csv(tree.channel("train") / "train.csv", keyword_rows(1000, seed=1))
    write_csv(tree.channel("validation") / "validation.csv", keyword_rows(60, seed=2))
    pretrained = tree.channel("pretrained")
    for f in encoder_dir.iterdir():
        (pretrained / f.name).write_bytes(f.read_bytes())
    tree.hyperparameters(RESUME_HYPERPARAMETERS)
    return tree


def copy_tree(src: SageMakerTree, root: Path) -> SageMakerTree:
    """A second /opt/ml tree with the same inputs (config and channels), none of the outputs."""
    import shutil

    shutil.copytree(src.root / "input", root / "input")
    return SageMakerTree(root)


def start_logged(sm: SageMakerTree, log: Path, **extra_env: str) -> subprocess.Popen[bytes]:
    """``train`` in the background, its stdout and stderr going to ``log`` (nothing to drain)."""
    with log.open("wb") as fh:
        return subprocess.Popen(sm.train_command(), env=sm.env(**extra_env), stdout=fh, stderr=subprocess.STDOUT)


def run_hosts(
    trees: dict[str, SageMakerTree], log_dir: Path, timeout: float = 300, **extra_env: str
) -> tuple[dict[str, int], dict[str, str]]:
    """Play several hosts on this machine: one ``train`` per tree (named by its host), meeting on
    loopback (``lo`` stands for the interface SageMaker names); returns exit codes and logs by host."""
    hosts = list(trees)
    env = {"TEXTCLF_MASTER_ADDR": "127.0.0.1", "TEXTCLF_MASTER_PORT": str(free_port()), **extra_env}
    procs: dict[str, subprocess.Popen] = {}
    try:
        for host, tree in trees.items():
            tree.resource_config(host, hosts, interface="lo")
            procs[host] = start_logged(tree, log_dir / f"{host}.log", **env)
        codes = {host: proc.wait(timeout=timeout) for host, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    return codes, {host: (log_dir / f"{host}.log").read_text() for host in hosts}


def wait_until(condition: Callable[[], Any], proc: subprocess.Popen, what: str, timeout: float = 240) -> Any:
    """Poll ``condition`` until it returns something truthy; fail if ``proc`` exits first (or a hang guard)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc.poll() is not None:
            raise AssertionError(f"train exited ({proc.returncode}) before {what}")
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"no {what} within {timeout} s")


def complete_checkpoints(directory: Path) -> list[Path]:
    """``step-N`` checkpoint directories of the one run in ``directory`` (its ``run-*`` folder), oldest
    first (the temporary ``.tmp-*`` ones are not listed)."""
    found = [p for p in directory.glob("run-*/step-*") if p.is_dir()]
    assert len({p.parent for p in found}) <= 1, f"checkpoints of several runs in {directory}"
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def run_folder(directory: Path) -> Path:
    """The one run's checkpoint folder in ``directory``."""
    (folder,) = directory.glob("run-*")
    return folder


def checkpoint_state(checkpoint: Path) -> dict[str, Any]:
    return json.loads((checkpoint / "trainer_state.json").read_text())


def report(sm: SageMakerTree) -> dict[str, Any]:
    return json.loads((sm.output_data / "metrics.json").read_text())
