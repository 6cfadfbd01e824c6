"""``python -m ops --local``: the ops flow a user rehearses offline, run as the user runs it (the CLI
in a subprocess) on our dockerd, with the SageMaker SDK's local mode underneath (ops/local.py).

One module-scoped training job feeds the rest: ``train`` (ModelTrainer in LOCAL_CONTAINER mode),
``deploy`` in the background until SIGTERM, ``invoke`` from another process (200 with the model's
labels; a 415 said as the container's message), ``batch`` (one output line per input line, in
order, equal to the predictor's answers) and a training job that fails in the container (the
error names the failure file's first line, as SageMaker's FailureReason does). Nothing is left
running or stopped on the daemon afterwards.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.docker_engine import REPO_ROOT, Docker
from support.local_mode import LocalMode
from support.serving import free_port
from support.tiny_model import make_tiny_model, words_of

pytestmark = pytest.mark.container

DEMO_DATA = REPO_ROOT / "local_test/test_dir/input/data"
DEMO_LABELS = {"billing", "delivery", "technical"}
ROWS = 120  # of the demo train and validation CSVs, from the top
WORKING_DIR_LABEL = "com.docker.compose.project.working_dir"


@dataclass
class Rehearsal:
    """What the tests share: the CLI's environment and config, the job's name and the channels."""

    env: dict[str, str]
    config: Path
    root: Path
    channels: Path
    job: str
    train_output: str

    def ops(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ops", "--config", str(self.config), "--local", *args],
            cwd=REPO_ROOT, env=self.env, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "ops", "--config", str(self.config), "--local", *args],
            cwd=REPO_ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip


def _write_channels(root: Path) -> None:
    texts: list[str] = []
    for channel in ("train", "validation"):
        with (DEMO_DATA / channel / f"{channel}.csv").open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = [row for _, row in zip(range(ROWS), reader, strict=False)]
            fields = list(reader.fieldnames or [])
        (root / channel).mkdir(parents=True)
        with (root / channel / f"{channel}.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        texts += [row["text"] for row in rows]
    make_tiny_model(root / "pretrained", labels=None, words=words_of(texts), hidden_size=64, num_layers=2, num_heads=2)
    (root / "bad").mkdir()
    (root / "bad" / "train.csv").write_text("text,category\nmy parcel is late,delivery\n", encoding="utf-8")


def _containers(docker: Docker, root: Path) -> list[str]:
    """Containers (any state) compose started from folders under ``root``."""
    proc = docker.run(
        "ps", "-a", "--filter", f"label={WORKING_DIR_LABEL}",
        "--format", f'{{{{.ID}}}} {{{{.Status}}}} {{{{.Label "{WORKING_DIR_LABEL}"}}}}', check=False, timeout=60,
    )  # fmt: skip
    return [line for line in proc.stdout.splitlines() if str(root) in line]


@pytest.fixture(scope="module")
def rehearsal(
    docker: Docker, full_image: str, serve_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Rehearsal]:
    work = tmp_path_factory.mktemp("ops-local")
    repository, _, tag = full_image.partition(":")
    assert serve_image == f"{repository}:{tag}-serve", "the serve image must carry the serve variant's tag"
    _write_channels(work / "channels")
    config = work / "ops.toml"
    config.write_text(
        f"""
[image]
repository = "{repository}"
tag = "{tag}"
[training]
instance_type = "ml.c5.xlarge"
[training.hyperparameters]
max_seq_length = 32
batch_size = 16
epochs = 1
learning_rate = 0.001
num_threads = 1
max_accuracy_drop = 100
seed = 42
[local]
root = "{work / "root"}"
serving_port = {free_port()}
""",
        encoding="utf-8",
    )
    env = LocalMode(docker, work, work).environment()
    state = Rehearsal(env, config, work / "root", work / "channels", "", "")
    channels = [f"--channel={name}={work / 'channels' / name}" for name in ("train", "validation", "pretrained")]
    trained = state.ops("train", *channels)
    assert trained.returncode == 0, trained.stdout[-6000:] + trained.stderr[-3000:]
    state.train_output = trained.stdout
    state.job = trained.stdout.split("local training job ", 1)[1].split(":", 1)[0]
    yield state
    for line in _containers(docker, state.root):
        docker.run("rm", "-f", line.split()[0], check=False, timeout=60)


def test_train_writes_a_verified_model(rehearsal: Rehearsal, tmp_path: Path) -> None:
    from textclf.contract.model_dir import read_manifest

    model_tar = rehearsal.root / "training" / rehearsal.job / "compressed_artifacts" / "model.tar.gz"
    assert f"Completed: {model_tar.as_uri()}" in rehearsal.train_output
    with tarfile.open(model_tar) as tar:
        tar.extractall(tmp_path, filter="data")
    manifest = read_manifest(tmp_path, verify=True)
    assert set(manifest.labels) == DEMO_LABELS
    assert manifest.max_seq_length == 32


def test_a_failed_training_job_says_the_failure_files_first_line(rehearsal: Rehearsal, docker: Docker) -> None:
    failed = rehearsal.ops(
        "train",
        f"--channel=train={rehearsal.channels / 'bad'}",
        f"--channel=pretrained={rehearsal.channels / 'pretrained'}",
    )
    assert failed.returncode == 1, failed.stdout[-4000:]
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("error: local training job ") and " Failed: " in last, failed.stderr[-3000:]
    job = last.removeprefix("error: local training job ").split(" ", 1)[0]
    failure = rehearsal.root / "training" / job / "artifacts" / "output" / "failure"
    first_line = failure.read_text(encoding="utf-8").splitlines()[0]
    assert last.endswith(f"Failed: {first_line}")
    assert "/opt/ml/input/data/train/train.csv" in first_line and "'label'" in first_line
    assert not [c for c in _containers(docker, rehearsal.root / "training" / job)], "the failed job's containers stay"


def test_deploy_invoke_and_sigterm(rehearsal: Rehearsal, docker: Docker) -> None:
    server = rehearsal.popen("deploy", "--training-job", rehearsal.job)
    lines: list[str] = []
    try:
        assert server.stdout is not None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = server.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "InService on port" in line:
                break
        assert any("InService on port" in line for line in lines), "".join(lines[-60:])

        answered = rehearsal.ops("invoke", "I was charged twice this month", "my parcel never arrived")
        assert answered.returncode == 0, answered.stderr
        predictions = json.loads(answered.stdout)
        assert len(predictions) == 2
        assert all(p[0]["label"] in DEMO_LABELS and 0 <= p[0]["score"] <= 1 for p in predictions), predictions
        assert "Content-Type: application/json" in answered.stderr

        refused = rehearsal.ops("invoke", "--content-type", "application/xml", "--body-file", str(rehearsal.config))
        assert refused.returncode == 1
        assert "ModelError (container status 415)" in refused.stderr
        assert "unsupported Content-Type 'application/xml'" in refused.stderr
    finally:
        server.send_signal(signal.SIGTERM)
        rest, _ = server.communicate(timeout=60)
    assert server.returncode == 0, "".join(lines[-40:]) + rest[-4000:]
    assert "deleted local endpoint" in rest
    assert not _containers(docker, rehearsal.root), "the endpoint's container is left behind"
    gone = rehearsal.ops("invoke", "hello")
    assert gone.returncode == 1 and "no local endpoint answers on port" in gone.stderr


def test_batch_answers_one_line_per_input_in_order(rehearsal: Rehearsal, tmp_path: Path) -> None:
    from textclf.model.predictor import Classifier

    texts = [
        f"order {i}: " + ("my parcel never arrived " if i % 2 else "I was charged twice ") * (1 + i % 5)
        for i in range(37)
    ]
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "requests.jsonl").write_text("".join(json.dumps({"inputs": t}) + "\n" for t in texts), encoding="utf-8")
    output = tmp_path / "out"
    done = rehearsal.ops("batch", "--input", str(inputs), "--training-job", rehearsal.job, "--output", output.as_uri())
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    lines = (output / "requests.jsonl.out").read_text(encoding="utf-8").split("\n")
    lines = lines[:-1] if lines[-1] == "" else lines
    assert len(lines) == len(texts) and all(lines), lines[:5]

    model_dir = tmp_path / "model"
    with tarfile.open(rehearsal.root / "training" / rehearsal.job / "compressed_artifacts" / "model.tar.gz") as tar:
        tar.extractall(model_dir, filter="data")
    expected = Classifier.load(model_dir).predict(texts)
    assert len({round(p[0]["score"], 5) for p in expected}) > 5, "scores too alike to tell the order"
    for line, want in zip(lines, expected, strict=True):
        got = json.loads(line)
        assert got[0]["label"] == want[0]["label"]
        assert got[0]["score"] == pytest.approx(want[0]["score"], abs=1e-5)
