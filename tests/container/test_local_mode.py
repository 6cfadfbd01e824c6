"""The full image driven by the SageMaker SDK's own local mode: sagemaker-core's ``LocalSession``,
a real SageMaker client with only AWS absent (see tests/support/local_mode.py for its setup).

``create_training_job`` with ``InstanceCount`` 1 and 2: two containers (``algo-1-*``,
``algo-2-*``) that rendezvous over gloo on compose's network, as two SageMaker instances do. What a
user gets back is checked: the job completes, ``model.tar.gz`` at the S3 output path holds a
verified model directory that predicts, ``output.tar.gz`` holds ``data/metrics.json`` with the
world size and no failure file. Compose stops every container as soon as one exits
(``--abort-on-container-exit``: SIGTERM, SIGKILL 10 s later) and takes the job's status from the
first one to exit: so no rank may exit before rank 0 has written the model.

A job with a bad hyperparameter (``epochs=-1``) fails as local mode fails jobs: see
``test_a_bad_hyperparameter_fails_the_job_and_names_it`` for what the user gets instead of the
``FailureReason`` of real SageMaker.

Small on purpose: a tiny BERT (2 layers, hidden 64) in the ``pretrained`` channel, a slice of the
demo data, one epoch of 32-token sequences, one thread per container. Except the 2-instance job's
``test`` channel: only rank 0 evaluates it, after training, and it is made long (the demo test rows
repeated, scored one at a time: about 35 s) so that rank 0's evaluation and export clearly outlast
what a rank that does not wait for it gets: its own exit (3-12 s after training, most of it
interpreter shutdown) plus compose's 10 s between SIGTERM and SIGKILL. Such a rank then ends the
job before the model is written every time, not by chance; with the tiny model alone, rank 0's
evaluation and export take 2 s and win that race.
"""

from __future__ import annotations

import csv
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.docker_engine import CACHE_DIR, REPO_ROOT, Docker
from support.local_mode import LocalMode, TrainingJobResult
from support.tiny_model import make_tiny_model, words_of

pytestmark = pytest.mark.container

DEMO_DATA = REPO_ROOT / "local_test/test_dir/input/data"
DEMO_LABELS = {"billing", "delivery", "technical"}
ROWS = {"train": 240, "validation": 60, "test": 150}  # of each demo channel, from the top
LONG_TEST_REPEATS = 300  # the 2-instance job's test channel: 150 x 300 rows, about 35 s of rank 0's time
HYPERPARAMETERS = {  # as SageMaker sends them: strings
    "max_seq_length": "32",
    "batch_size": "16",
    "eval_batch_size": "1",  # see LONG_TEST_REPEATS
    "epochs": "1",
    "learning_rate": "0.001",
    "eval_metric": "accuracy",
    "checkpoint_every_steps": "0",
    "log_every_steps": "5",
    "max_accuracy_drop": "100",  # a random tiny model may lose points to INT8; that is not tested here
    "num_threads": "1",  # two containers on a 2-core machine
    "seed": "42",
}
JOB_TIMEOUT_S = 240  # the watchdog kills the job's containers after this


@pytest.fixture(scope="module")
def channels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """train/validation/test: the first rows of the demo CSVs; long-test: the test rows repeated;
    pretrained: a tiny random BERT encoder with a WordPiece vocabulary of those texts."""
    root = tmp_path_factory.mktemp("channels")
    paths: dict[str, Path] = {}
    texts: list[str] = []

    def write(folder: str, name: str, fieldnames: list[str], rows: list[dict[str, str]], repeats: int = 1) -> None:
        paths[folder] = root / folder
        paths[folder].mkdir()
        with (paths[folder] / f"{name}.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=fieldnames)
            writer.writeheader()
            for _ in range(repeats):
                writer.writerows(rows)

    for channel, count in ROWS.items():
        source = DEMO_DATA / channel / f"{channel}.csv"
        with source.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            fieldnames = list(reader.fieldnames or [])
            rows = [row for _, row in zip(range(count), reader, strict=False)]
        assert {row["label"] for row in rows} == DEMO_LABELS, f"{source}: the first {count} rows lack a label"
        write(channel, channel, fieldnames, rows)
        if channel == "test":
            write("long-test", channel, fieldnames, rows, LONG_TEST_REPEATS)
        texts += [row["text"] for row in rows]
    paths["pretrained"] = make_tiny_model(
        root / "pretrained", labels=None, words=words_of(texts), hidden_size=64, num_layers=2, num_heads=2
    )
    return paths


@pytest.fixture(scope="module")
def local_mode(docker: Docker, full_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMode]:
    with LocalMode(docker, tmp_path_factory.mktemp("local-mode"), CACHE_DIR) as mode:
        yield mode


@pytest.fixture(scope="module", params=[1, 2], ids=["1-instance", "2-instances"])
def job(
    request: pytest.FixtureRequest, local_mode: LocalMode, full_image: str, channels: dict[str, Path]
) -> TrainingJobResult:
    count = request.param
    inputs = {name: channels[name] for name in ("train", "validation", "test", "pretrained")}
    if count > 1:
        inputs["test"] = channels["long-test"]
    return local_mode.train(f"textclf-local-{count}", full_image, inputs, HYPERPARAMETERS, count, timeout=JOB_TIMEOUT_S)


def _members(archive: Path) -> list[str]:
    with tarfile.open(archive) as tar:
        return sorted(m.name.removeprefix("./") for m in tar.getmembers() if m.isfile())


def _extract(archive: Path, dest: Path) -> Path:
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return dest


def test_training_job_completes(job: TrainingJobResult) -> None:
    assert job.error is None and not job.timed_out, job.show()
    assert job.description["TrainingJobStatus"] == "Completed", job.show()
    assert job.description["ModelArtifacts"]["S3ModelArtifacts"] == job.model_tar.as_uri()
    assert job.model_tar.is_file() and job.output_tar.is_file(), sorted(p.name for p in job.output.iterdir())


def test_model_artifact_is_a_verified_model_directory(job: TrainingJobResult, tmp_path: Path) -> None:
    from textclf.contract.model_dir import MANIFEST_FILE, MODEL_FILE, read_manifest
    from textclf.model.predictor import Classifier

    assert job.model_tar.is_file(), job.show()
    members = _members(job.model_tar)
    assert MANIFEST_FILE in members and MODEL_FILE in members, (
        f"model.tar.gz holds {members or 'nothing'}: the model directory was not written "
        f"(was rank 0 stopped before its export?)\n{job.show()}"
    )
    model_dir = _extract(job.model_tar, tmp_path / "model")
    manifest = read_manifest(model_dir, verify=True)  # format version and the sha256 of every file
    assert set(manifest.labels) == DEMO_LABELS
    assert manifest.max_seq_length == int(HYPERPARAMETERS["max_seq_length"])
    predictions = Classifier.load(model_dir).predict(["I was charged twice this month", "my parcel never arrived"])
    assert len(predictions) == 2
    assert all(p[0]["label"] in DEMO_LABELS for p in predictions), predictions


def test_output_artifact_has_metrics_and_no_failure(job: TrainingJobResult, tmp_path: Path) -> None:
    assert job.output_tar.is_file(), job.show()
    members = _members(job.output_tar)
    output = _extract(job.output_tar, tmp_path / "output")
    assert "failure" not in members, f"failure file: {(output / 'failure').read_text()[:1024]}\n{job.show()}"
    assert "data/metrics.json" in members, f"output.tar.gz holds {members or 'nothing'}\n{job.show()}"
    metrics = json.loads((output / "data/metrics.json").read_text())
    assert metrics["training"]["world_size"] == job.instance_count, metrics["training"]
    assert set(metrics["labels"]) == DEMO_LABELS
    assert 0.0 <= metrics["objective"]["value"] <= 1.0


def test_a_bad_hyperparameter_fails_the_job_and_names_it(
    local_mode: LocalMode, full_image: str, channels: dict[str, Path], tmp_path: Path
) -> None:
    """What a user of local mode gets for a job that fails: ``create_training_job`` raises
    ``RuntimeError("Failed to run: [<compose command>]. Process exited with code: 2")`` (the
    container's exit status, not the reason), ``describe_training_job`` raises ClientError
    ("Could not find local training job": no record, so no ``FailureReason``), and the reason is
    only in ``output.tar.gz``: the first line of ``failure``, which SageMaker would show as
    ``FailureReason`` (and compose's output, where the container printed it)."""
    from botocore.exceptions import ClientError

    from textclf.errors import EXIT_USER_ERROR

    inputs = {name: channels[name] for name in ("train", "validation", "pretrained")}
    hyperparameters = {**HYPERPARAMETERS, "epochs": "-1"}
    job = local_mode.train("textclf-local-bad-epochs", full_image, inputs, hyperparameters, 1, timeout=JOB_TIMEOUT_S)
    assert isinstance(job.error, RuntimeError) and not job.timed_out, job.show()
    assert [end.exit_code for end in job.containers.values()] == [EXIT_USER_ERROR], job.show()
    assert f"exited with code: {EXIT_USER_ERROR}" in str(job.error), job.show()  # compose's status is the container's
    with pytest.raises(ClientError, match="Could not find local training job"):
        local_mode.session.sagemaker_client.describe_training_job(TrainingJobName=job.name)
    assert job.output_tar.is_file(), job.show()
    assert "failure" in _members(job.output_tar), job.show()
    reason = (_extract(job.output_tar, tmp_path / "output") / "failure").read_text().splitlines()[0]
    assert "epochs" in reason and "-1" in reason, reason
    assert "data/metrics.json" not in _members(job.output_tar), "a job that failed on its hyperparameters trained"
