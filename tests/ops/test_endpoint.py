"""Endpoint deploy (moto), autoscaling, and the safe update with roll back (Stubber: moto lacks UpdateEndpoint)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.stub import ANY, Stubber

from ops import autoscaling, endpoint
from ops.aws import OpsError
from support.aws import SERVING_INSTANCE, Calls, completed_training_job

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
        "Image": f"{aws.account_id}.dkr.ecr.eu-west-1.amazonaws.com/textclf:t1-serve",  # the slim image
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
    "kwargs",
    [
        {},
        {"model_data": "s3://b/model.zip"},
        {"model_data": "https://b/model.tar.gz"},
        {"model_data": "s3://b/model.tar.gz", "training_job": "x"},
    ],
)
def test_model_source_must_be_one_tar_gz(aws: Any, kwargs: dict[str, str]) -> None:
    with pytest.raises(OpsError):
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
        {"ModelName": NEW, "ExecutionRoleArn": aws.role_arn, "PrimaryContainer": ANY, "Tags": ANY},
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
