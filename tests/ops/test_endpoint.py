"""Endpoint deploy (moto), autoscaling, the safe update with roll back (Stubber: moto lacks UpdateEndpoint),
and serverless endpoints: their request, every limit refused up front, and the updates SageMaker allows."""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import ANY, Stubber

from ops import autoscaling, cli, endpoint
from ops.aws import OpsError
from ops.config import ConfigError, load
from support.aws import SERVING_INSTANCE, Calls, completed_training_job, pinned_image

ARN = "arn:aws:sagemaker:eu-west-1:000000000000"


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ops.aws.time.sleep", lambda _: None)


def test_create_from_a_training_job(aws: Any, calls: Calls) -> None:
    model_data = completed_training_job(aws)
    assert endpoint.resolve_model_data(aws, training_job="textclf-done") == model_data
    result = endpoint.deploy(aws, model_data)
    assert result["EndpointStatus"] == "InService"

    model = calls.one("CreateModel")
    assert model["ModelName"].startswith("textclf-test-")
    assert model["ExecutionRoleArn"] == aws.role_arn
    assert model["PrimaryContainer"] == {
        "Image": pinned_image(aws, "t1-serve"),  # the slim image, by digest
        "ModelDataUrl": model_data,
        "Environment": {"MODEL_SERVER_WORKERS": "2"},
    }
    config = calls.one("CreateEndpointConfig")
    assert config["ProductionVariants"] == [
        {
            "VariantName": "AllTraffic",
            "ModelName": model["ModelName"],
            "InitialInstanceCount": 1,
            "InstanceType": SERVING_INSTANCE,
            "ContainerStartupHealthCheckTimeoutInSeconds": 900,
            "ModelDataDownloadTimeoutInSeconds": 600,
        }
    ]
    assert calls.one("CreateEndpoint") == {
        "EndpointName": "textclf-test",
        "EndpointConfigName": config["EndpointConfigName"],
        "Tags": [{"Key": "project", "Value": "textclf"}],
    }

    target = calls.one("RegisterScalableTarget")
    assert target == {
        "ServiceNamespace": "sagemaker",
        "ResourceId": "endpoint/textclf-test/variant/AllTraffic",
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
        "MinCapacity": 1,
        "MaxCapacity": 3,
    }
    policy = calls.one("PutScalingPolicy")
    assert policy["PolicyType"] == "TargetTrackingScaling"
    assert policy["TargetTrackingScalingPolicyConfiguration"] == {
        "TargetValue": 250.0,
        "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
        "ScaleInCooldown": 300,
        "ScaleOutCooldown": 60,
    }
    stored = aws.client("application-autoscaling").describe_scaling_policies(ServiceNamespace="sagemaker")
    assert [p["PolicyName"] for p in stored["ScalingPolicies"]] == ["textclf-test-invocations-per-instance"]


def test_autoscaling_can_be_left_off(aws: Any, calls: Calls) -> None:
    endpoint.deploy(aws, "s3://textclf-test-bucket/m/model.tar.gz", autoscale=False)
    assert calls.of("RegisterScalableTarget") == []
    assert not autoscaling.is_registered(aws, "textclf-test")


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({}, "give exactly one of --training-job, --tuning-job, --model-data"),
        ({"model_data": "s3://b/model.zip"}, r"--model-data must be an s3:// URI of a \.tar\.gz .*model\.zip"),
        ({"model_data": "https://b/model.tar.gz"}, r"--model-data must be an s3:// URI of a \.tar\.gz"),
        ({"model_data": "s3://b/model.tar.gz", "training_job": "x"}, "give exactly one of"),
    ],
)
def test_model_source_must_be_one_tar_gz(aws: Any, kwargs: dict[str, str], reason: str) -> None:
    with pytest.raises(OpsError, match=reason):
        endpoint.resolve_model_data(aws, **kwargs)


def _endpoint(status: str, config: str, count: int = 1, reason: str | None = None) -> dict[str, Any]:
    description: dict[str, Any] = {
        "EndpointName": "textclf-test",
        "EndpointArn": f"{ARN}:endpoint/textclf-test",
        "EndpointConfigName": config,
        "EndpointStatus": status,
        "CreationTime": "2026-01-01T00:00:00Z",
        "LastModifiedTime": "2026-01-01T00:00:00Z",
        "ProductionVariants": [{"VariantName": "AllTraffic", "CurrentInstanceCount": count}],
    }
    if reason:
        description["FailureReason"] = reason
    return description


def _config(name: str, model: str) -> dict[str, Any]:
    return {
        "EndpointConfigName": name,
        "EndpointConfigArn": f"{ARN}:endpoint-config/{name}",
        "CreationTime": "2026-01-01T00:00:00Z",
        "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": model}],
    }


NAME = {"EndpointName": "textclf-test"}


STAMP = "20260101-000000"
NEW = f"textclf-test-{STAMP}"  # the new model's and endpoint config's name


@pytest.fixture
def fixed_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ops.aws.timestamp", lambda: STAMP)


def _start_update(stub: Stubber, aws: Any) -> None:
    """describe (InService on old, grown to 3 instances by autoscaling) -> new model -> new config -> update."""
    stub.add_response("describe_endpoint", _endpoint("InService", "cfg-old", count=3), NAME)
    stub.add_response(
        "create_model",
        {"ModelArn": f"{ARN}:model/{NEW}"},
        {
            "ModelName": NEW,
            "ExecutionRoleArn": aws.role_arn,
            "PrimaryContainer": ANY,
            "Tags": ANY,
            "EnableNetworkIsolation": True,  # [security] model_network_isolation
        },
    )
    stub.add_response(
        "create_endpoint_config",
        {"EndpointConfigArn": f"{ARN}:endpoint-config/{NEW}"},
        {"EndpointConfigName": NEW, "ProductionVariants": ANY, "Tags": ANY},
    )
    stub.add_response(
        "update_endpoint",
        {"EndpointArn": f"{ARN}:endpoint/textclf-test"},
        {"EndpointName": "textclf-test", "EndpointConfigName": NEW, "DeploymentConfig": ANY},
    )


def _delete(stub: Stubber, config: str, model: str) -> None:
    stub.add_response("describe_endpoint_config", _config(config, model), {"EndpointConfigName": config})
    stub.add_response("delete_endpoint_config", {}, {"EndpointConfigName": config})
    stub.add_response("delete_model", {}, {"ModelName": model})


@pytest.fixture
def scaled(aws: Any, fixed_names: None) -> Any:
    """The endpoint's variant is registered with Application Auto Scaling (in moto) before the update."""
    autoscaling.apply(aws, "textclf-test")
    return aws


def test_safe_update_switches_then_prunes_the_old_config(scaled: Any, calls: Calls) -> None:
    aws = scaled
    stub = Stubber(aws.client("sagemaker"))
    _start_update(stub, aws)
    stub.add_response("describe_endpoint", _endpoint("Updating", "cfg-old", 3), NAME)
    stub.add_response("describe_endpoint", _endpoint("InService", NEW, 3), NAME)
    _delete(stub, "cfg-old", "model-old")
    with stub:
        result = endpoint.deploy(aws, "s3://textclf-test-bucket/m2/model.tar.gz")
    stub.assert_no_pending_responses()
    assert result["EndpointConfigName"] == NEW

    variant = calls.one("CreateEndpointConfig")["ProductionVariants"][0]
    assert variant["InitialInstanceCount"] == 3  # never shrink a fleet autoscaling has grown
    assert variant["ContainerStartupHealthCheckTimeoutInSeconds"] == 900
    assert calls.one("CreateModel")["PrimaryContainer"]["ModelDataUrl"] == "s3://textclf-test-bucket/m2/model.tar.gz"
    deployment = calls.one("UpdateEndpoint")["DeploymentConfig"]
    assert deployment["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"] == "ALL_AT_ONCE"
    assert "AutoRollbackConfiguration" not in deployment
    ops = calls.operations()
    # autoscaling is off for the switch and back on after it
    assert (
        ops.index("DeregisterScalableTarget")
        < ops.index("UpdateEndpoint")
        < len(ops) - 1 - ops[::-1].index("PutScalingPolicy")
    )
    assert autoscaling.is_registered(aws, "textclf-test")


def test_alarms_can_roll_an_update_back(scaled: Any, calls: Calls) -> None:
    aws = scaled
    aws.cfg.endpoint.rollback_alarms = ["textclf-5xx"]
    aws.cfg.endpoint.bake_s = 600
    aws.cfg.endpoint.keep_previous = True
    stub = Stubber(aws.client("sagemaker"))
    _start_update(stub, aws)
    stub.add_response("describe_endpoint", _endpoint("InService", NEW, 3), NAME)
    with stub:  # keep_previous: no deletion calls expected
        endpoint.deploy(aws, "s3://textclf-test-bucket/m2/model.tar.gz")
    stub.assert_no_pending_responses()
    deployment = calls.one("UpdateEndpoint")["DeploymentConfig"]
    assert deployment["AutoRollbackConfiguration"] == {"Alarms": [{"AlarmName": "textclf-5xx"}]}
    assert deployment["BlueGreenUpdatePolicy"]["TerminationWaitInSeconds"] == 600


def test_failed_update_that_sagemaker_rolled_back(scaled: Any, calls: Calls) -> None:
    aws = scaled
    stub = Stubber(aws.client("sagemaker"))
    _start_update(stub, aws)
    stub.add_response("describe_endpoint", _endpoint("InService", "cfg-old", 3, "health check failed"), NAME)
    _delete(stub, NEW, NEW)  # the new config and model go; the old ones stay
    with stub, pytest.raises(OpsError, match="rolled back to cfg-old: health check failed"):
        endpoint.deploy(aws, "s3://textclf-test-bucket/m2/model.tar.gz")
    stub.assert_no_pending_responses()
    assert len(calls.of("UpdateEndpoint")) == 1
    assert autoscaling.is_registered(aws, "textclf-test")


def test_failed_update_is_rolled_back_by_us(scaled: Any, calls: Calls) -> None:
    aws = scaled
    stub = Stubber(aws.client("sagemaker"))
    _start_update(stub, aws)
    stub.add_response("describe_endpoint", _endpoint("Failed", NEW, 0, "image pull failed"), NAME)
    stub.add_response(
        "update_endpoint",
        {"EndpointArn": f"{ARN}:endpoint/textclf-test"},
        {"EndpointName": "textclf-test", "EndpointConfigName": "cfg-old"},
    )
    stub.add_response("describe_endpoint", _endpoint("Updating", "cfg-old", 1), NAME)
    stub.add_response("describe_endpoint", _endpoint("InService", "cfg-old", 1), NAME)
    _delete(stub, NEW, NEW)
    with stub, pytest.raises(OpsError, match="rolled back to cfg-old: image pull failed"):
        endpoint.deploy(aws, "s3://textclf-test-bucket/m2/model.tar.gz")
    stub.assert_no_pending_responses()
    assert [u["EndpointConfigName"] for u in calls.of("UpdateEndpoint")] == [NEW, "cfg-old"]
    assert autoscaling.is_registered(aws, "textclf-test")


def test_busy_endpoint_is_left_alone(aws: Any, calls: Calls) -> None:
    stub = Stubber(aws.client("sagemaker"))
    stub.add_response("describe_endpoint", _endpoint("Updating", "cfg-old"), NAME)
    with stub, pytest.raises(OpsError, match="is Updating"):
        endpoint.deploy(aws, "s3://textclf-test-bucket/m2/model.tar.gz")
    assert calls.of("CreateModel") == []


# -- Serverless Inference ----------------------------------------------------------------------------
# Limits from docs.aws.amazon.com/sagemaker/latest/dg/serverless-endpoints.html (memory sizes, 10 GB
# image, 5 GB disk, no GPU, no conversion of an instance endpoint) and the botocore service model.
SERVE_TAG = "t1-serve"
SERVE_IMAGE_BYTES = 160 * 10**6  # about what ECR reports for the ~450 MB serve image, compressed
MODEL_KEY = "textclf/output/done/model.tar.gz"
DIGEST = "sha256:" + "a" * 64
SIZES = "1024, 2048, 3072, 4096, 5120, 6144 (MB)"


def push_image(aws: Any, tag: str, size: int) -> str:
    """An image in moto's ECR; moto reports the manifest's config size as ``imageSizeInBytes``."""
    ecr = aws.client("ecr")
    with contextlib.suppress(ecr.exceptions.RepositoryAlreadyExistsException):
        ecr.create_repository(repositoryName="textclf")
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": size, "digest": DIGEST},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": size, "digest": DIGEST}],
    }
    ecr.put_image(repositoryName="textclf", imageManifest=json.dumps(manifest), imageTag=tag)
    return f"{aws.account_id}.dkr.ecr.eu-west-1.amazonaws.com/textclf:{tag}"


@pytest.fixture
def serverless(aws: Any, bucket: str) -> str:
    """Serverless enabled (2048 MB, 10 concurrent), the serve image in ECR and a 23 MB model.tar.gz in S3."""
    s = aws.cfg.endpoint.serverless
    s.enabled, s.memory_size_mb, s.max_concurrency = True, 2048, 10
    push_image(aws, SERVE_TAG, SERVE_IMAGE_BYTES)
    aws.client("s3").put_object(Bucket=bucket, Key=MODEL_KEY, Body=b"\0" * (23 * 2**20))
    return f"s3://{bucket}/{MODEL_KEY}"


def test_serverless_endpoint_carries_only_a_serverless_config(aws: Any, calls: Calls, serverless: str) -> None:
    result = endpoint.deploy(aws, serverless)
    assert result["EndpointStatus"] == "InService"
    model = calls.one("CreateModel")
    assert model["PrimaryContainer"]["Image"] == pinned_image(aws, "t1-serve")
    assert model["PrimaryContainer"]["Environment"] == {"MODEL_SERVER_WORKERS": "2"}  # configured: kept
    # nothing of an instance variant: no type, count, volume or the two timeouts
    assert calls.one("CreateEndpointConfig")["ProductionVariants"] == [
        {
            "VariantName": "AllTraffic",
            "ModelName": model["ModelName"],
            "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 10},
        }
    ]
    assert result["ProductionVariants"][0]["CurrentServerlessConfig"]["MemorySizeInMB"] == 2048
    assert endpoint.is_serverless(result)
    # the limits were looked up before anything was created, and no instance autoscaling was set up
    ops = calls.operations()
    assert ops.index("DescribeImages") < ops.index("HeadObject") < ops.index("CreateModel")
    # the tag resolved to its digest (what the model runs), then that digest's size
    digest = model["PrimaryContainer"]["Image"].rpartition("@")[2]
    assert [c["imageIds"] for c in calls.of("DescribeImages")] == [[{"imageTag": SERVE_TAG}], [{"imageDigest": digest}]]
    assert calls.of("RegisterScalableTarget") == []
    assert not autoscaling.is_registered(aws, "textclf-test")
    assert calls.invalid() == []


def test_serverless_defaults_to_one_worker_and_can_keep_some_warm(aws: Any, calls: Calls, serverless: str) -> None:
    aws.cfg.endpoint.environment = {"TEXTCLF_CACHE_SIZE": "64"}
    aws.cfg.endpoint.serverless.provisioned_concurrency = 3
    endpoint.deploy(aws, serverless)
    environment = calls.one("CreateModel")["PrimaryContainer"]["Environment"]
    assert environment == {"TEXTCLF_CACHE_SIZE": "64", "MODEL_SERVER_WORKERS": "1"}
    config = calls.one("CreateEndpointConfig")["ProductionVariants"][0]["ServerlessConfig"]
    assert config == {"MemorySizeInMB": 2048, "MaxConcurrency": 10, "ProvisionedConcurrency": 3}
    assert calls.invalid() == []


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("memory_size_mb = 1500", {}, f"serverless.memory_size_mb (--memory-size-mb) must be one of {SIZES}, got 1500"),
        ("memory_size_mb = 512", {}, f"must be one of {SIZES}, got 512"),
        ("", {"TEXTCLF_ENDPOINT_SERVERLESS_MEMORY_SIZE_MB": "8192"}, f"must be one of {SIZES}, got 8192"),
        ("max_concurrency = 0", {}, "endpoint.serverless.max_concurrency (--max-concurrency) must be within 1..200"),
        ("max_concurrency = 201", {}, "regional quota of 500 or 1000), got 201"),
        ("max_concurrency = 5\nprovisioned_concurrency = 6", {}, "(--provisioned-concurrency) must be within "
         "0..max_concurrency (5; 0: none), got 6"),
        ("provisioned_concurrency = -1", {}, "0..max_concurrency (5; 0: none), got -1"),
    ],
)  # fmt: skip
def test_serverless_settings_sagemaker_would_refuse(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    path = tmp_path / "ops.toml"
    path.write_text(f"[endpoint.serverless]\n{text}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load(path, env=env)


def test_serverless_limits_are_accepted_at_both_ends(tmp_path: Path) -> None:
    path = tmp_path / "ops.toml"
    path.write_text(
        "[endpoint.serverless]\nmemory_size_mb = 6144\nmax_concurrency = 200\nprovisioned_concurrency = 200\n"
    )
    assert load(path, env={}).endpoint.serverless.max_concurrency == 200
    path.write_text("[endpoint.serverless]\nmemory_size_mb = 1024\nmax_concurrency = 1\n")
    assert load(path, env={}).endpoint.serverless.memory_size_mb == 1024


def test_deploy_serverless_from_the_command_line(aws: Any, calls: Calls, serverless: str) -> None:
    aws.cfg.endpoint.serverless.enabled = False  # --serverless turns it on
    argv = ["deploy", "--model-data", serverless, "--serverless", "--memory-size-mb", "1024", "--max-concurrency", "3"]
    assert cli.main(argv, aws=aws) == 0
    config = calls.one("CreateEndpointConfig")["ProductionVariants"][0]
    assert config["ServerlessConfig"] == {"MemorySizeInMB": 1024, "MaxConcurrency": 3}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--memory-size-mb", "2048"], "--memory-size-mb: only for a serverless endpoint; add --serverless"),
        (["--max-concurrency", "4", "--provisioned-concurrency", "1"], "--max-concurrency, --provisioned-concurrency:"),
        (["--serverless", "--memory-size-mb", "1500"], f"(--memory-size-mb) must be one of {SIZES}, got 1500"),
        (["--serverless", "--max-concurrency", "500"], "(--max-concurrency) must be within 1..200"),
        (["--serverless", "--max-concurrency", "2", "--provisioned-concurrency", "3"], "(2; 0: none), got 3"),
        (["--serverless", "--to-provisioned"], "--to-provisioned moves an endpoint to instances: it cannot go with"),
    ],
)  # fmt: skip
def test_deploy_arguments_that_are_refused(
    aws: Any, calls: Calls, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert cli.main(["deploy", "--model-data", "s3://textclf-test-bucket/m/model.tar.gz", *extra], aws=aws) == 1
    assert message in capsys.readouterr().err
    assert calls.of("CreateModel") == []


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("{account}.dkr.ecr.eu-west-1.amazonaws.com/textclf:t1-gpu", "serverless endpoints have no GPU"),
        ("{account}.dkr.ecr.eu-west-1.amazonaws.com/textclf:v2-gpu@sha256:" + "c" * 64, "is the gpu variant"),
    ],
)
def test_a_gpu_image_is_refused(aws: Any, calls: Calls, serverless: str, uri: str, message: str) -> None:
    aws.cfg.image.uri = uri.format(account=aws.account_id)
    with pytest.raises(OpsError, match=re.escape(message)):
        endpoint.deploy(aws, serverless)
    assert calls.of("CreateModel") == [] and calls.of("DescribeImages") == []


def test_an_image_over_10_gb_is_refused(aws: Any, calls: Calls, serverless: str) -> None:
    push_image(aws, SERVE_TAG, 11 * 10**9)
    with pytest.raises(
        OpsError, match=r"is 11\.0 GB in ECR \(compressed\); serverless endpoints take images up to 10 GB"
    ):
        endpoint.deploy(aws, serverless)
    assert calls.of("CreateModel") == []


def test_an_image_that_is_not_pushed_is_refused(aws: Any, calls: Calls, serverless: str) -> None:
    aws.cfg.image.tag = "never-pushed"
    with pytest.raises(OpsError, match=r"textclf:never-pushed-serve is not in ECR \(ImageNotFoundException\)"):
        endpoint.deploy(aws, serverless)
    assert calls.of("CreateModel") == []


def test_a_missing_model_is_refused(aws: Any, calls: Calls, serverless: str) -> None:
    with pytest.raises(OpsError, match=re.escape("s3://textclf-test-bucket/nothing/model.tar.gz does not exist")):
        endpoint.deploy(aws, "s3://textclf-test-bucket/nothing/model.tar.gz")
    assert calls.of("CreateModel") == []


@pytest.mark.parametrize(
    ("memory_mb", "model_bytes", "fits"),
    [
        (1024, 1100 * 2**20, False),  # more than the memory
        (6144, 5_500_000_000, False),  # within 6 GB of memory, but more than the 5 GB disk
        (1024, 900 * 2**20, True),
    ],
)
def test_a_model_larger_than_the_memory_or_disk_is_refused(
    aws: Any, calls: Calls, serverless: str, memory_mb: int, model_bytes: int, fits: bool
) -> None:
    """The size comes from S3's HeadObject (a Stubber: moto would have to hold the bytes)."""
    aws.cfg.endpoint.serverless.memory_size_mb = memory_mb
    s3 = Stubber(aws.client("s3"))
    bucket, key = "textclf-test-bucket", "big/model.tar.gz"
    s3.add_response("head_object", {"ContentLength": model_bytes}, {"Bucket": bucket, "Key": key})
    with s3:
        if fits:
            endpoint.check_serverless(aws, f"s3://{bucket}/{key}")
        else:
            message = f"is {model_bytes / 2**20:.0f} MB compressed, more than endpoint.serverless.memory_size_mb "
            with pytest.raises(OpsError, match=re.escape(message + f"({memory_mb}) or the 5 GB disk")):
                endpoint.check_serverless(aws, f"s3://{bucket}/{key}")
    s3.assert_no_pending_responses()
    assert calls.invalid() == []


def test_an_instance_endpoint_is_not_updated_to_serverless(aws: Any, calls: Calls, serverless: str) -> None:
    aws.cfg.endpoint.serverless.enabled = False
    endpoint.deploy(aws, serverless)  # on instances
    aws.cfg.endpoint.serverless.enabled = True
    with pytest.raises(
        OpsError, match="runs on instances, and SageMaker cannot update an instance endpoint to serverless"
    ):
        endpoint.deploy(aws, serverless)
    assert len(calls.of("CreateModel")) == 1  # nothing new was created for the refused update


def test_a_serverless_endpoint_goes_to_instances_only_when_asked(aws: Any, calls: Calls, serverless: str) -> None:
    endpoint.deploy(aws, serverless)
    aws.cfg.endpoint.serverless.enabled = False
    with pytest.raises(OpsError, match=r"is serverless and this deploy is not .* pass --to-provisioned"):
        endpoint.deploy(aws, serverless)
    assert len(calls.of("CreateModel")) == 1


def _serverless_endpoint(status: str, config: str, reason: str | None = None) -> dict[str, Any]:
    description = _endpoint(status, config, reason=reason)
    description["ProductionVariants"] = [
        {"VariantName": "AllTraffic", "CurrentServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 10}}
    ]
    return description


def _start_serverless_update(stub: Stubber, aws: Any, deployment: Any = None) -> None:
    stub.add_response("describe_endpoint", _serverless_endpoint("InService", "cfg-old"), NAME)
    model = {"ModelName": NEW, "ExecutionRoleArn": aws.role_arn, "PrimaryContainer": ANY, "Tags": ANY}
    if not aws.cfg.endpoint.serverless.enabled:  # to instances: isolated; serverless takes no isolation
        model["EnableNetworkIsolation"] = True
    stub.add_response("create_model", {"ModelArn": f"{ARN}:model/{NEW}"}, model)
    stub.add_response(
        "create_endpoint_config",
        {"EndpointConfigArn": f"{ARN}:endpoint-config/{NEW}"},
        {"EndpointConfigName": NEW, "ProductionVariants": ANY, "Tags": ANY},
    )
    update = {"EndpointName": "textclf-test", "EndpointConfigName": NEW}
    if deployment is not None:
        update["DeploymentConfig"] = deployment
    stub.add_response("update_endpoint", {"EndpointArn": f"{ARN}:endpoint/textclf-test"}, update)


def test_serverless_update_is_a_plain_update_endpoint(
    aws: Any, calls: Calls, serverless: str, fixed_names: None
) -> None:
    """Nothing to add to SageMaker's default (blue/green, all at once): no DeploymentConfig is sent."""
    stub = Stubber(aws.client("sagemaker"))
    _start_serverless_update(stub, aws)  # the expected parameters have no DeploymentConfig
    stub.add_response("describe_endpoint", _serverless_endpoint("Updating", "cfg-old"), NAME)
    stub.add_response("describe_endpoint", _serverless_endpoint("InService", NEW), NAME)
    _delete(stub, "cfg-old", "model-old")
    with stub:
        result = endpoint.deploy(aws, serverless)
    stub.assert_no_pending_responses()
    assert result["EndpointConfigName"] == NEW
    assert "InstanceType" not in calls.one("CreateEndpointConfig")["ProductionVariants"][0]
    assert not {"DescribeScalableTargets", "RegisterScalableTarget", "PutScalingPolicy"} & set(calls.operations())
    assert calls.invalid() == []


def test_serverless_update_keeps_rollback_alarms(aws: Any, calls: Calls, serverless: str, fixed_names: None) -> None:
    aws.cfg.endpoint.rollback_alarms = ["textclf-5xx"]
    aws.cfg.endpoint.keep_previous = True
    stub = Stubber(aws.client("sagemaker"))
    _start_serverless_update(stub, aws, deployment=ANY)
    stub.add_response("describe_endpoint", _serverless_endpoint("InService", NEW), NAME)
    with stub:
        endpoint.deploy(aws, serverless)
    stub.assert_no_pending_responses()
    deployment = calls.one("UpdateEndpoint")["DeploymentConfig"]
    assert deployment["AutoRollbackConfiguration"] == {"Alarms": [{"AlarmName": "textclf-5xx"}]}
    assert deployment["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"] == "ALL_AT_ONCE"
    assert calls.invalid() == []


def test_serverless_to_instances_when_asked(aws: Any, calls: Calls, serverless: str, fixed_names: None) -> None:
    aws.cfg.endpoint.serverless.enabled = False
    stub = Stubber(aws.client("sagemaker"))
    _start_serverless_update(stub, aws, deployment=ANY)
    stub.add_response("describe_endpoint", _endpoint("InService", NEW, 1), NAME)
    _delete(stub, "cfg-old", "model-old")
    with stub:
        endpoint.deploy(aws, serverless, to_provisioned=True)
    stub.assert_no_pending_responses()
    variant = calls.one("CreateEndpointConfig")["ProductionVariants"][0]
    assert (variant["InstanceType"], variant["InitialInstanceCount"]) == (SERVING_INSTANCE, 1)
    assert "ServerlessConfig" not in variant
    assert calls.one("UpdateEndpoint")["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TerminationWaitInSeconds"] == 0
    assert "DeregisterScalableTarget" not in calls.operations()  # the serverless variant was never scaled
    assert autoscaling.is_registered(aws, "textclf-test")  # the instances are
    assert calls.invalid() == []


def test_a_failed_update_to_instances_is_not_rolled_back_to_serverless(
    aws: Any, calls: Calls, serverless: str, fixed_names: None
) -> None:
    """SageMaker cannot update an endpoint back to serverless: ops says so instead of trying."""
    aws.cfg.endpoint.serverless.enabled = False
    stub = Stubber(aws.client("sagemaker"))
    _start_serverless_update(stub, aws, deployment=ANY)
    stub.add_response("describe_endpoint", _endpoint("Failed", NEW, 0, "image pull failed"), NAME)
    message = "failed (image pull failed) and SageMaker cannot update an endpoint back to serverless"
    with stub, pytest.raises(OpsError, match=re.escape(message)):
        endpoint.deploy(aws, serverless, to_provisioned=True)
    stub.assert_no_pending_responses()  # no second UpdateEndpoint, nothing deleted
    assert len(calls.of("UpdateEndpoint")) == 1
    assert calls.of("RegisterScalableTarget") == []  # nothing on instances to scale


def test_a_serverless_endpoint_is_deleted_without_touching_autoscaling(aws: Any, calls: Calls, serverless: str) -> None:
    """Its variant has no instance-count target; one for provisioned concurrency is not ops' to deregister."""
    endpoint.deploy(aws, serverless)
    assert endpoint.teardown_endpoint(aws)
    assert endpoint.describe(aws) is None
    assert calls.one("DeleteEndpoint") == {"EndpointName": "textclf-test"}
    assert not {"DescribeScalableTargets", "DeregisterScalableTarget"} & set(calls.operations())
