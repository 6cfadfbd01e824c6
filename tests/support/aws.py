"""What the ops tests share besides fixtures (those are in tests/ops/conftest.py): the test config,
instance types, a recorder of AWS requests and a completed training job."""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

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
# an encoder inside the image, not a hub id: training jobs are network-isolated by default (ops.security)
model_name_or_path = "/opt/models/encoder"
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


@dataclass
class Calls:
    """Every request made through the recorded session: (service, operation, params)."""

    items: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    models: list[Any] = field(default_factory=list)  # the botocore OperationModel of each item

    def record(self, params: dict[str, Any], event_name: str, model: Any = None, **_: Any) -> None:
        _, service, operation = event_name.split(".", 2)
        self.items.append((service, operation, params))
        self.models.append(model)

    def invalid(self) -> list[str]:
        """Every recorded request that botocore's own validator refuses against the service model."""
        from botocore.validate import ParamValidator

        problems = []
        for (service, operation, params), model in zip(self.items, self.models, strict=True):
            report = ParamValidator().validate(params, model.input_shape)
            if report.has_errors():
                problems.append(f"{service}.{operation}: {report.generate_report()}")
        return problems

    def of(self, operation: str) -> list[dict[str, Any]]:
        return [p for _, op, p in self.items if op == operation]

    def one(self, operation: str) -> dict[str, Any]:
        found = self.of(operation)
        assert len(found) == 1, f"{operation}: {len(found)} calls, expected 1 ({self.operations()})"
        return found[0]

    def operations(self) -> list[str]:
        return [op for _, op, _ in self.items]


def completed_training_job(aws: Any, name: str = "textclf-done") -> str:
    """A Completed training job in moto (moto completes jobs at once); returns its model data URI."""
    sm = aws.client("sagemaker")
    sm.create_training_job(
        TrainingJobName=name,
        AlgorithmSpecification={"TrainingImage": aws.training_image, "TrainingInputMode": "File"},
        RoleArn=aws.role_arn,
        OutputDataConfig={"S3OutputPath": aws.s3_uri("output")},
        ResourceConfig={"InstanceType": TRAINING_INSTANCE, "InstanceCount": 1, "VolumeSizeInGB": 10},
        StoppingCondition={"MaxRuntimeInSeconds": 60},
        CheckpointConfig={"S3Uri": aws.s3_uri("checkpoints", name)},
    )
    return str(sm.describe_training_job(TrainingJobName=name)["ModelArtifacts"]["S3ModelArtifacts"])


# The images the test config's jobs run: image.tag "t1" and its variants, in moto's ECR.
IMAGE_TAGS = ("t1", "t1-gpu", "t1-serve")
SCHEMA2 = "application/vnd.docker.distribution.manifest.v2+json"


def image_manifest(tag: str, size: int = 1000) -> str:
    """A Docker v2 schema 2 manifest, one per tag (its config digest is the tag's), ``size`` bytes per blob."""
    blob = {"size": size, "digest": "sha256:" + hashlib.sha256(tag.encode()).hexdigest()}
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": SCHEMA2,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", **blob},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", **blob}],
        }
    )


def push_test_images(repository: str = "textclf", tags: tuple[str, ...] = IMAGE_TAGS) -> dict[str, str]:
    """What `ops image` would have pushed (moto must be active): ``repository`` (created with mutable tags,
    so that a test can move one) holding a schema 2 manifest under each tag. Through a client of its own,
    so the requests are not recorded. Returns each tag's digest."""
    import boto3

    ecr = boto3.client("ecr", region_name=REGION)
    with contextlib.suppress(ecr.exceptions.RepositoryAlreadyExistsException):
        ecr.create_repository(repositoryName=repository, imageTagMutability="MUTABLE")
    digests = {}
    for tag in tags:
        manifest = image_manifest(tag)
        digest = "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
        ecr.put_image(repositoryName=repository, imageTag=tag, imageManifest=manifest, imageDigest=digest)
        digests[tag] = digest
    return digests


def pinned_image(aws: Any, tag: str, repository: str = "textclf") -> str:
    """The image a job gets for ``tag``: ``<registry>/<repository>@<the digest ECR holds under the tag>``."""
    import boto3

    ecr = boto3.client("ecr", region_name=REGION)
    digest = ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])["imageDetails"][0]
    return f"{aws.account_id}.dkr.ecr.{REGION}.amazonaws.com/{repository}@{digest['imageDigest']}"


def set_api_gateway_log_role(region: str = REGION) -> str:
    """API Gateway's CloudWatch role of the region set, as an account's administrator would have set it
    once (moto must be active; through a client of its own, so not recorded). Returns the role's ARN."""
    import boto3

    arn = "arn:aws:iam::123456789012:role/apigateway-cloudwatch"
    boto3.client("apigateway", region_name=region).update_account(
        patchOperations=[{"op": "replace", "path": "/cloudwatchRoleArn", "value": arn}]
    )
    return arn
