"""Every request ops builds is valid against botocore's service model, for every supported
configuration, not only the test default: spot on and off, each tuning strategy, CPU and GPU
instance families, each input mode, each API auth mode, instance and serverless endpoints, and the
[security] settings (KMS key or not, VPC or not, network isolation on or off, one host or several). The
requests are made through ops' own code under moto and checked, as recorded, with botocore's own
validator (``Calls.invalid``)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ops import api, batch, endpoint, training, tuning
from support.aws import Calls, completed_training_job, set_api_gateway_log_role

INSTANCE_TYPES = ["ml.g5.xlarge", "ml.p4d.24xlarge", "ml.c5.2xlarge", "ml.m5.xlarge"]
STRATEGIES = ["Bayesian", "Random", "Hyperband", "Grid"]
DIGEST = "sha256:" + "a" * 64


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ops.aws.time.sleep", lambda _: None)


def _assert_valid(calls: Calls, *operations: str) -> None:
    for operation in operations:
        assert calls.of(operation), f"no {operation} request was made ({calls.operations()})"
    assert calls.invalid() == []


@pytest.mark.parametrize("instance_type", INSTANCE_TYPES)
@pytest.mark.parametrize("spot", [True, False], ids=["spot", "on-demand"])
@pytest.mark.parametrize("input_mode", ["File", "FastFile"])
def test_training_requests(
    aws: Any, calls: Calls, uploaded: dict[str, str], instance_type: str, spot: bool, input_mode: str
) -> None:
    aws.cfg.training.instance_type, aws.cfg.training.spot, aws.cfg.training.input_mode = instance_type, spot, input_mode
    training.start(aws)
    _assert_valid(calls, "CreateTrainingJob")
    request = calls.one("CreateTrainingJob")
    assert request["CheckpointConfig"]["S3Uri"].startswith("s3://")  # also on demand: --resume-from needs it
    assert request["AlgorithmSpecification"]["TrainingInputMode"] == input_mode


@pytest.mark.parametrize("instance_type", INSTANCE_TYPES)
@pytest.mark.parametrize("spot", [True, False], ids=["spot", "on-demand"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_tuning_requests(
    aws: Any, calls: Calls, uploaded: dict[str, str], instance_type: str, spot: bool, strategy: str
) -> None:
    aws.cfg.training.instance_type, aws.cfg.training.spot = instance_type, spot
    aws.cfg.tuning.strategy = strategy
    if strategy == "Hyperband":
        aws.cfg.tuning.early_stopping = "Off"  # the API allows nothing else with Hyperband
    if strategy == "Grid":  # grid search takes categorical ranges only
        aws.cfg.tuning.ranges = {"batch_size": {"type": "categorical", "values": [16, 32]}}
    name = tuning.start(aws)
    _assert_valid(calls, "CreateHyperParameterTuningJob")
    request = calls.one("CreateHyperParameterTuningJob")
    assert request["HyperParameterTuningJobConfig"]["Strategy"] == strategy
    definition = request["TrainingJobDefinition"]
    if spot:
        assert definition["CheckpointConfig"]["S3Uri"] == f"s3://textclf-test-bucket/textclf/checkpoints/{name}/"
    else:
        assert "CheckpointConfig" not in definition


def test_on_demand_tuning_sends_no_checkpoint_config(aws: Any, calls: Calls, uploaded: dict[str, str]) -> None:
    """Without spot nothing restarts a trial, and a prefix shared by all trials would only be copied into
    each of them at start: no CheckpointConfig (it used to go out without its required S3Uri)."""
    aws.cfg.training.spot = False
    tuning.start(aws)
    definition = calls.one("CreateHyperParameterTuningJob")["TrainingJobDefinition"]
    assert "CheckpointConfig" not in definition
    assert definition.get("EnableManagedSpotTraining") in (None, False)
    assert "MaxWaitTimeInSeconds" not in definition["StoppingCondition"]


def test_each_tuning_job_has_its_own_checkpoint_prefix(aws: Any, calls: Calls, uploaded: dict[str, str]) -> None:
    """One definition serves every trial (botocore: HyperParameterTrainingJobDefinition has a single
    CheckpointConfig, and nothing documents a per-job suffix), so the narrowest prefix a request can
    give is the tuning job's own; the container keeps each trial apart inside it."""
    aws.cfg.tuning.base_job_name = "hpo-a"
    first = tuning.start(aws)
    aws.cfg.tuning.base_job_name = "hpo-b"
    second = tuning.start(aws)
    uris = [r["TrainingJobDefinition"]["CheckpointConfig"]["S3Uri"] for r in calls.of("CreateHyperParameterTuningJob")]
    assert uris == [aws.s3_uri("checkpoints", first), aws.s3_uri("checkpoints", second)]
    assert all(uri.endswith("/") for uri in uris)  # a prefix ending in '/' never matches a sibling job's


@pytest.mark.parametrize("max_concurrent", [0, 4])
@pytest.mark.parametrize("payload_mb", [0, 1, 6, 25])
def test_transform_requests(aws: Any, calls: Calls, max_concurrent: int, payload_mb: int) -> None:
    aws.cfg.batch.max_concurrent_transforms, aws.cfg.batch.max_payload_mb = max_concurrent, payload_mb
    aws.cfg.batch.environment = {"MODEL_SERVER_WORKERS": "2"}
    batch.start(aws, "s3://textclf-test-bucket/in/", model_data="s3://textclf-test-bucket/m/model.tar.gz")
    _assert_valid(calls, "CreateModel", "CreateTransformJob")


@pytest.mark.parametrize("autoscale", [True, False])
def test_endpoint_requests(aws: Any, calls: Calls, autoscale: bool) -> None:
    endpoint.deploy(aws, completed_training_job(aws), autoscale=autoscale)
    _assert_valid(calls, "CreateModel", "CreateEndpointConfig", "CreateEndpoint")
    assert bool(calls.of("PutScalingPolicy")) is autoscale


@pytest.mark.parametrize("memory_mb", [1024, 6144])
@pytest.mark.parametrize("max_concurrency", [1, 200])
@pytest.mark.parametrize("provisioned", [False, True], ids=["on-demand", "provisioned-concurrency"])
def test_serverless_endpoint_requests(
    aws: Any, calls: Calls, bucket: str, memory_mb: int, max_concurrency: int, provisioned: bool
) -> None:
    """A serverless variant at both ends of each range (botocore checks only the minimums: ops.config
    checks the rest), with the ECR and S3 look-ups that come before it."""
    s = aws.cfg.endpoint.serverless
    s.enabled, s.memory_size_mb, s.max_concurrency = True, memory_mb, max_concurrency
    s.provisioned_concurrency = max_concurrency if provisioned else 0
    # the serve image in moto's ECR (whose imageSizeInBytes is the manifest's config size), in the
    # repository the aws fixture made
    layer = {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 160 * 10**6, "digest": DIGEST}
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {**layer, "mediaType": "application/vnd.docker.container.image.v1+json"},
        "layers": [layer],
    }
    aws.client("ecr").put_image(repositoryName="textclf", imageManifest=json.dumps(manifest), imageTag="t1-serve")
    aws.client("s3").put_object(Bucket=bucket, Key="m/model.tar.gz", Body=b"model")
    endpoint.deploy(aws, f"s3://{bucket}/m/model.tar.gz")
    _assert_valid(calls, "DescribeImages", "HeadObject", "CreateModel", "CreateEndpointConfig", "CreateEndpoint")
    assert "@sha256:" in calls.one("CreateModel")["PrimaryContainer"]["Image"]  # by digest
    variant = calls.one("CreateEndpointConfig")["ProductionVariants"][0]
    assert variant["ServerlessConfig"]["MemorySizeInMB"] == memory_mb
    assert ("ProvisionedConcurrency" in variant["ServerlessConfig"]) is provisioned
    assert "InstanceType" not in variant
    assert calls.of("PutScalingPolicy") == []


@pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")
@pytest.mark.parametrize("auth", ["API_KEY", "AWS_IAM"])
@pytest.mark.parametrize("quota", [0, 1000])
def test_api_stack_requests(aws: Any, calls: Calls, auth: str, quota: int) -> None:
    aws.cfg.api.auth, aws.cfg.api.quota_per_day = auth, quota
    set_api_gateway_log_role()  # the region's API Gateway logging role, which access logs need
    api.deploy(aws)
    aws.cfg.api.timeout_s = 60
    api.deploy(aws)
    _assert_valid(calls, "GetAccount", "PutObject", "CreateStack", "UpdateStack")


@pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")
@pytest.mark.parametrize(
    ("access_logs", "create_role", "role_set"),
    [(False, False, False), (True, True, False), (True, True, True)],
    ids=["no-access-logs", "the-stack-sets-the-role", "the-stack-replaces-the-role"],
)
def test_api_stack_requests_for_each_logging_choice(
    aws: Any, calls: Calls, access_logs: bool, create_role: bool, role_set: bool
) -> None:
    aws.cfg.api.access_logs, aws.cfg.api.create_account_log_role = access_logs, create_role
    if role_set:
        set_api_gateway_log_role()
    api.deploy(aws)
    _assert_valid(calls, "PutObject", "CreateStack")
    assert bool(calls.of("GetAccount")) is (access_logs or create_role)  # the role is read where it matters
    assert calls.invalid() == []


# --- [security]: KMS key, VPC, network isolation, several hosts --------------------------------------

SUBNETS, GROUPS = ["subnet-0123abcd"], ["sg-0123abcd"]


def _secure(aws: Any, kms: bool, vpc: bool, isolation: bool) -> str | None:
    """Apply one [security] combination; returns the KMS key id (a key moto made) or None."""
    import boto3

    s = aws.cfg.security
    s.training_network_isolation = s.model_network_isolation = isolation
    s.subnets, s.security_group_ids = (list(SUBNETS), list(GROUPS)) if vpc else ([], [])
    s.kms_key_id = boto3.client("kms", region_name=aws.region).create_key()["KeyMetadata"]["KeyId"] if kms else ""
    return s.kms_key_id or None


@pytest.mark.parametrize("kms", [False, True], ids=["aws-keys", "kms-key"])
@pytest.mark.parametrize(("vpc", "isolation"), [(False, True), (True, False)], ids=["isolated", "vpc-network"])
@pytest.mark.parametrize(
    ("instance_type", "hosts"), [("ml.m5.xlarge", 2), ("ml.g5.xlarge", 1)], ids=["ebs-2-hosts", "nvme-1-host"]
)
def test_training_and_tuning_requests_for_each_security_setting(
    aws: Any,
    calls: Calls,
    uploaded: dict[str, str],
    kms: bool,
    vpc: bool,
    isolation: bool,
    hosts: int,
    instance_type: str,
) -> None:
    key = _secure(aws, kms, vpc, isolation)
    aws.cfg.training.instance_type, aws.cfg.training.instance_count = instance_type, hosts
    training.start(aws)
    tuning.start(aws)
    _assert_valid(calls, "CreateTrainingJob", "CreateHyperParameterTuningJob")
    job = calls.one("CreateTrainingJob")
    definition = calls.one("CreateHyperParameterTuningJob")["TrainingJobDefinition"]
    for request in (job, definition):  # the trials run as the training job would
        assert request.get("EnableNetworkIsolation", False) is isolation
        assert request.get("EnableInterContainerTrafficEncryption", False) is (hosts > 1)
        assert ("VpcConfig" in request) is vpc
        assert request["OutputDataConfig"].get("KmsKeyId") == key
        # no volume key on NVMe instance storage (AWS refuses it there)
        assert request["ResourceConfig"].get("VolumeKmsKeyId") == (key if instance_type == "ml.m5.xlarge" else None)


@pytest.mark.parametrize("kms", [False, True], ids=["aws-keys", "kms-key"])
@pytest.mark.parametrize(("vpc", "isolation"), [(False, True), (True, False)], ids=["isolated", "vpc-network"])
@pytest.mark.parametrize("instance_type", ["ml.c5.xlarge", "ml.g4dn.xlarge"], ids=["ebs", "nvme"])
def test_model_endpoint_and_transform_requests_for_each_security_setting(
    aws: Any, calls: Calls, kms: bool, vpc: bool, isolation: bool, instance_type: str
) -> None:
    key = _secure(aws, kms, vpc, isolation)
    aws.cfg.endpoint.instance_type = aws.cfg.batch.instance_type = instance_type
    endpoint.deploy(aws, completed_training_job(aws), autoscale=False)
    batch.start(aws, "s3://textclf-test-bucket/textclf/batch/in/", model_data=completed_training_job(aws, "b"))
    _assert_valid(calls, "CreateModel", "CreateEndpointConfig", "CreateEndpoint", "CreateTransformJob")
    ebs_key = key if instance_type == "ml.c5.xlarge" else None
    for model in calls.of("CreateModel"):
        assert model.get("EnableNetworkIsolation", False) is isolation
        assert ("VpcConfig" in model) is vpc
    assert calls.one("CreateEndpointConfig").get("KmsKeyId") == ebs_key
    transform = calls.one("CreateTransformJob")
    assert transform["TransformOutput"].get("KmsKeyId") == key
    assert transform["TransformResources"].get("VolumeKmsKeyId") == ebs_key


@pytest.mark.parametrize("kms", [False, True], ids=["aws-keys", "kms-key"])
@pytest.mark.parametrize("tls_versioning", [True, False], ids=["protected", "switched-off"])
def test_bucket_and_upload_requests_for_each_security_setting(
    aws: Any, calls: Calls, tmp_path: Any, kms: bool, tls_versioning: bool
) -> None:
    from ops import channels

    _secure(aws, kms, vpc=False, isolation=True)
    aws.cfg.security.bucket_tls_only = aws.cfg.security.bucket_versioning = tls_versioning
    data = tmp_path / "train.csv"
    data.write_text("text,label\ngood,pos\n", encoding="utf-8")
    channels.upload(aws, {"train": data})
    _assert_valid(calls, "CreateBucket", "PutBucketEncryption", "PutObject")
    assert bool(calls.of("PutBucketPolicy")) is bool(calls.of("PutBucketVersioning")) is tls_versioning
    assert all(("SSEKMSKeyId" in p) is kms for p in calls.of("PutObject"))
