"""Fixtures for ops/ tests: fake credentials, moto, a recorder of every AWS request, a test config.

AWS is the only thing mocked (moto, and botocore's Stubber where moto lacks a call). Requests are
recorded at botocore's ``provide-client-params`` event, i.e. exactly what the code (or the SDK)
asked boto3 to send.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

# `ops` is a top-level package of the repository, not an installed one: make it importable
# (it wins over this tests/ops folder, which has no __init__.py).
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

REGION = "eu-west-1"
ROLE_NAME = "textclf-test-sagemaker"
TRAINING_INSTANCE = "ml.g5.xlarge"
SERVING_INSTANCE = "ml.c5.xlarge"  # moto's endpoint-config validation predates c6i

TEST_CONFIG = f"""
project = "textclf"
[aws]
region = "{REGION}"
bucket = "textclf-test-bucket"
prefix = "textclf"
[image]
repository = "textclf"
tag = "t1"
[training]
instance_type = "{TRAINING_INSTANCE}"
spot = true
max_run_s = 3600
max_wait_s = 7200
[training.hyperparameters]
epochs = 2
learning_rate = 5e-5
mixed_precision = "bf16"
keep_full_precision = false
labels = ["neg", "pos"]
[tuning]
objective = "validation_macro_f1"
max_jobs = 6
max_parallel_jobs = 2
[tuning.ranges.learning_rate]
type = "continuous"
min = 1e-5
max = 1e-4
scaling = "Logarithmic"
[tuning.ranges.batch_size]
type = "categorical"
values = [16, 32]
[tuning.ranges.epochs]
type = "integer"
min = 2
max = 4
[endpoint]
name = "textclf-test"
instance_type = "{SERVING_INSTANCE}"
startup_health_check_timeout_s = 900
wait_delay_s = 1
wait_max_attempts = 3
[endpoint.environment]
MODEL_SERVER_WORKERS = "2"
[endpoint.autoscaling]
min_instances = 1
max_instances = 3
invocations_per_instance = 250.0
[batch]
instance_type = "{SERVING_INSTANCE}"
max_concurrent_transforms = 4
"""


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("TEXTCLF_", "AWS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    # moto implements no iam:SimulatePrincipalPolicy, which the SDK uses to vet the role.
    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")


@pytest.fixture(autouse=True)
def no_sdk_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    """The v3 SDK sends usage telemetry over HTTP in a thread; keep tests offline and quiet."""
    try:
        from sagemaker.core.telemetry import telemetry_logging
    except ImportError:
        return
    monkeypatch.setattr(telemetry_logging, "_send_telemetry_request", lambda *a, **k: None)


@pytest.fixture
def moto() -> Iterator[None]:
    with mock_aws():
        yield


@dataclass
class Calls:
    """Every request made through the recorded session: (service, operation, params)."""

    items: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def record(self, params: dict[str, Any], event_name: str, **_: Any) -> None:
        _, service, operation = event_name.split(".", 2)
        self.items.append((service, operation, params))

    def of(self, operation: str) -> list[dict[str, Any]]:
        return [p for _, op, p in self.items if op == operation]

    def one(self, operation: str) -> dict[str, Any]:
        found = self.of(operation)
        assert len(found) == 1, f"{operation}: {len(found)} calls, expected 1 ({self.operations()})"
        return found[0]

    def operations(self) -> list[str]:
        return [op for _, op, _ in self.items]


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def session(calls: Calls) -> boto3.Session:
    s = boto3.Session(region_name=REGION)
    s.events.register("provide-client-params.*.*", calls.record)
    return s


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "ops.toml"
    path.write_text(TEST_CONFIG, encoding="utf-8")
    return path


@pytest.fixture
def role_arn(moto: None) -> str:
    return str(boto3.client("iam").create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument="{}")["Role"]["Arn"])


@pytest.fixture
def aws(moto: None, config_path: Path, session: boto3.Session, role_arn: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    from ops.aws import Aws
    from ops.config import load

    monkeypatch.setenv("TEXTCLF_AWS_ROLE_ARN", role_arn)
    return Aws(load(config_path), session=session)


@pytest.fixture
def bucket(aws: Any) -> str:
    from ops.channels import ensure_bucket

    return ensure_bucket(aws)


@pytest.fixture
def uploaded(aws: Any, bucket: str, tmp_path: Path) -> dict[str, str]:
    from ops.channels import upload

    train = tmp_path / "data" / "train.csv"
    train.parent.mkdir()
    train.write_text("text,label\ngood,pos\nbad,neg\n", encoding="utf-8")
    validation = tmp_path / "val"
    validation.mkdir()
    (validation / "validation.csv").write_text("text,label\nfine,pos\n", encoding="utf-8")
    return upload(aws, {"train": train, "validation": validation})


def completed_training_job(aws: Any, name: str = "textclf-done") -> str:
    """A Completed training job in moto (moto completes jobs at once); returns its model data URI."""
    sm = aws.client("sagemaker")
    sm.create_training_job(
        TrainingJobName=name,
        AlgorithmSpecification={"TrainingImage": aws.image_uri, "TrainingInputMode": "File"},
        RoleArn=aws.role_arn,
        OutputDataConfig={"S3OutputPath": aws.s3_uri("output")},
        ResourceConfig={"InstanceType": TRAINING_INSTANCE, "InstanceCount": 1, "VolumeSizeInGB": 10},
        StoppingCondition={"MaxRuntimeInSeconds": 60},
        CheckpointConfig={"S3Uri": aws.s3_uri("checkpoints", name)},
    )
    return str(sm.describe_training_job(TrainingJobName=name)["ModelArtifacts"]["S3ModelArtifacts"])
