"""Training jobs through the SDK v3 ModelTrainer, checked at the CreateTrainingJob request."""

from __future__ import annotations

import re
from typing import Any

import pytest

from ops import training
from ops.aws import OpsError
from ops.config import ConfigError
from support.aws import TRAINING_INSTANCE, Calls, completed_training_job, pinned_image
from textclf.contract.metrics import METRIC_DEFINITIONS, format_metric


def test_request_sent_to_sagemaker(aws: Any, calls: Calls, uploaded: dict[str, str]) -> None:
    name = training.start(aws, overrides={"seed": 7, "quantize_per_channel": True})
    req = calls.one("CreateTrainingJob")
    assert req["TrainingJobName"] == name and name.startswith("textclf-")

    algo = req["AlgorithmSpecification"]
    assert algo["TrainingImage"] == pinned_image(aws, "t1-gpu")  # ml.g5: CUDA; by digest
    assert algo["TrainingInputMode"] == "File"
    assert "ContainerEntrypoint" not in algo  # no source_code: the image's own `train` runs
    assert algo["MetricDefinitions"] == METRIC_DEFINITIONS
    for d in algo["MetricDefinitions"]:
        assert re.search(d["Regex"], format_metric(d["Name"], 0.875)).group(1) == "0.875"

    hps = req["HyperParameters"]
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in hps.items())
    assert hps == {
        "epochs": "2",
        "learning_rate": "5e-05",
        "mixed_precision": "bf16",
        "keep_full_precision": "false",
        "labels": '["neg", "pos"]',
        "model_name_or_path": "/opt/models/encoder",
        "seed": "7",
        "quantize_per_channel": "true",
    }

    assert req["EnableManagedSpotTraining"] is True
    assert req["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    checkpoint = req["CheckpointConfig"]
    assert checkpoint["LocalPath"] == "/opt/ml/checkpoints"
    # one folder per job, under the prefix the training role may write: a new job never resumes
    # someone else's state (ops names it before the SDK names the job: <base_job_name>-<UTC time>)
    assert re.fullmatch(r"s3://textclf-test-bucket/textclf/checkpoints/textclf-\d{8}-\d{6}/", checkpoint["S3Uri"])

    assert req["RoleArn"] == aws.role_arn
    assert req["ResourceConfig"] == {"InstanceType": TRAINING_INSTANCE, "InstanceCount": 1, "VolumeSizeInGB": 50}
    assert req["OutputDataConfig"]["S3OutputPath"] == "s3://textclf-test-bucket/textclf/output/"
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in req["InputDataConfig"]}
    assert channels == uploaded
    assert all(uri.endswith("/") for uri in channels.values())


def test_on_demand_has_no_spot_wait(aws: Any, calls: Calls, uploaded: dict[str, str]) -> None:
    aws.cfg.training.spot = False
    training.start(aws)
    req = calls.one("CreateTrainingJob")
    assert req.get("EnableManagedSpotTraining") in (None, False)
    assert "MaxWaitTimeInSeconds" not in req["StoppingCondition"]


def test_resume_reuses_an_earlier_jobs_checkpoints(aws: Any, calls: Calls, uploaded: dict[str, str]) -> None:
    completed_training_job(aws, "textclf-interrupted")
    training.start(aws, resume_from="textclf-interrupted")
    created = calls.of("CreateTrainingJob")[-1]
    assert created["CheckpointConfig"]["S3Uri"] == aws.s3_uri("checkpoints", "textclf-interrupted")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"epoch": 3}, "unknown hyperparameter 'epoch'"),
        ({"batch_size": 0}, "batch_size"),
        ({"truncation": "middle"}, "truncation"),
        ({"text_column": "x" * 300}, "256 characters"),
    ],
)
def test_bad_hyperparameters_fail_before_any_job(
    aws: Any, calls: Calls, uploaded: dict[str, str], overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        training.start(aws, overrides=overrides)
    assert calls.of("CreateTrainingJob") == []


def test_train_channel_is_required(aws: Any, calls: Calls, bucket: str) -> None:
    with pytest.raises(OpsError, match="no `train` channel"):
        training.start(aws)
    with pytest.raises(OpsError, match="not an s3:// URI"):
        training.start(aws, channels={"train": "/local/path"})
    assert calls.of("CreateTrainingJob") == []


def test_model_data_needs_a_completed_job(aws: Any) -> None:
    uri = completed_training_job(aws)
    assert training.model_data(aws, "textclf-done") == uri
    assert uri.endswith("/model.tar.gz")


def test_ops_uses_no_private_attribute_of_another_object() -> None:
    """No ``obj._name`` outside ``self``/``cls``: the SDK's private attributes (``_latest_training_job``,
    ``_metric_definitions``) change without notice between releases."""
    import ast
    from pathlib import Path

    ops = Path(training.__file__).resolve().parent
    offenders = [
        f"{path.relative_to(ops)}:{node.lineno}: .{node.attr}"
        for path in sorted(ops.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
    ]
    assert offenders == []


def test_the_started_jobs_name_is_the_one_sent(aws: Any, calls: Calls, uploaded: dict[str, str]) -> None:
    first = training.start(aws)
    aws.cfg.training.base_job_name = "textclf-again"  # the SDK names jobs to the second
    second = training.start(aws)  # the same session (and cached SDK client) again
    assert [first, second] == [r["TrainingJobName"] for r in calls.of("CreateTrainingJob")]
