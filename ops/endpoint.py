"""Real-time endpoint: model + endpoint config + endpoint, autoscaling, and a safe update.

Written against boto3 (not the SDK's resource classes) so that moto and botocore's Stubber can
check every request. An update never edits what is serving: it creates a new model and endpoint
config, switches the endpoint to them (blue/green), and if the switch does not end InService on the
new config it puts the old config back and deletes the new one.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError, WaiterError

from ops import autoscaling
from ops.aws import Aws, OpsError, poll, unique_name

BUSY = {"Creating", "Updating", "SystemUpdating", "RollingBack"}


def resolve_model_data(
    aws: Aws, training_job: str | None = None, tuning_job: str | None = None, model_data: str | None = None
) -> str:
    """``model.tar.gz`` from exactly one of: a training job, a tuning job's best job, an S3 URI."""
    from ops import training, tuning

    given = [x for x in (training_job, tuning_job, model_data) if x]
    if len(given) != 1:
        raise OpsError("give exactly one of --training-job, --tuning-job, --model-data")
    if model_data:
        if not (model_data.startswith("s3://") and model_data.endswith(".tar.gz")):
            raise OpsError(f"--model-data must be an s3:// URI of a .tar.gz (SageMaker's rule), got {model_data}")
        return model_data
    if tuning_job:
        training_job = tuning.best_training_job(aws, tuning_job)
    return training.model_data(aws, str(training_job))


def create_model(aws: Aws, model_data: str, base: str, environment: dict[str, str]) -> str:
    name = unique_name(base)
    aws.client("sagemaker").create_model(
        ModelName=name,
        ExecutionRoleArn=aws.role_arn,
        PrimaryContainer={"Image": aws.serving_image, "ModelDataUrl": model_data, "Environment": dict(environment)},
        Tags=[{"Key": "project", "Value": aws.cfg.project}],
    )
    return name


def create_endpoint_config(aws: Aws, model_name: str, instance_count: int) -> str:
    e = aws.cfg.endpoint
    name = unique_name(e.name)
    aws.client("sagemaker").create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": e.variant,
                "ModelName": model_name,
                "InitialInstanceCount": instance_count,
                "InstanceType": e.instance_type,
                "ContainerStartupHealthCheckTimeoutInSeconds": e.startup_health_check_timeout_s,
                "ModelDataDownloadTimeoutInSeconds": e.model_download_timeout_s,
            }
        ],
        Tags=[{"Key": "project", "Value": aws.cfg.project}],
    )
    return name


def describe(aws: Aws) -> dict[str, Any] | None:
    try:
        return dict(aws.client("sagemaker").describe_endpoint(EndpointName=aws.cfg.endpoint.name))
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ValidationException" and "Could not find" in str(exc):
            return None
        raise


def _wait(aws: Aws) -> dict[str, Any]:
    e = aws.cfg.endpoint
    sm = aws.client("sagemaker")
    return poll(
        lambda: sm.describe_endpoint(EndpointName=e.name), "EndpointStatus", BUSY, e.wait_delay_s, e.wait_max_attempts
    )


def _delete_config_and_models(aws: Aws, config_name: str) -> None:
    sm = aws.client("sagemaker")
    variants = sm.describe_endpoint_config(EndpointConfigName=config_name)["ProductionVariants"]
    sm.delete_endpoint_config(EndpointConfigName=config_name)
    for variant in variants:
        sm.delete_model(ModelName=variant["ModelName"])


def _create(aws: Aws, config_name: str) -> dict[str, Any]:
    e = aws.cfg.endpoint
    sm = aws.client("sagemaker")
    sm.create_endpoint(
        EndpointName=e.name, EndpointConfigName=config_name, Tags=[{"Key": "project", "Value": aws.cfg.project}]
    )
    try:
        sm.get_waiter("endpoint_in_service").wait(
            EndpointName=e.name, WaiterConfig={"Delay": e.wait_delay_s, "MaxAttempts": e.wait_max_attempts}
        )
    except WaiterError:
        described = sm.describe_endpoint(EndpointName=e.name)
        raise OpsError(
            f"endpoint {e.name} is {described['EndpointStatus']}: {described.get('FailureReason', 'no reason given')}"
        ) from None
    return dict(sm.describe_endpoint(EndpointName=e.name))


def _update(aws: Aws, current: dict[str, Any], config_name: str, autoscale: bool) -> dict[str, Any]:
    e = aws.cfg.endpoint
    sm = aws.client("sagemaker")
    old_config = current["EndpointConfigName"]
    deployment: dict[str, Any] = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0},
            "TerminationWaitInSeconds": e.bake_s,
        }
    }
    if e.rollback_alarms:
        deployment["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a} for a in e.rollback_alarms]}
    # Application Auto Scaling refuses an update that changes a scaled variant's instance type:
    # take the variant off autoscaling for the switch and put it back afterwards, whatever happens.
    was_scaled = autoscaling.remove(aws, e.name)
    try:
        sm.update_endpoint(EndpointName=e.name, EndpointConfigName=config_name, DeploymentConfig=deployment)
        after = _wait(aws)
        if after["EndpointStatus"] == "InService" and after["EndpointConfigName"] == config_name:
            if not e.keep_previous:
                _delete_config_and_models(aws, old_config)
            return after
        reason = after.get("FailureReason") or f"ended {after['EndpointStatus']} on {after['EndpointConfigName']}"
        if after["EndpointStatus"] != "InService" or after["EndpointConfigName"] != old_config:
            sm.update_endpoint(EndpointName=e.name, EndpointConfigName=old_config)
            restored = _wait(aws)
            if restored["EndpointStatus"] != "InService":
                raise OpsError(
                    f"update of {e.name} failed ({reason}) and so did the roll back to {old_config}: "
                    f"{restored.get('FailureReason', restored['EndpointStatus'])}"
                )
        _delete_config_and_models(aws, config_name)
        raise OpsError(f"update of {e.name} failed and was rolled back to {old_config}: {reason}")
    finally:
        if was_scaled or autoscale:
            autoscaling.apply(aws, e.name)


def deploy(aws: Aws, model_data: str, autoscale: bool = True) -> dict[str, Any]:
    """Create the endpoint, or safely update it when it exists; returns the final description."""
    e = aws.cfg.endpoint
    current = describe(aws)
    if current is not None and current["EndpointStatus"] in BUSY:
        raise OpsError(f"endpoint {e.name} is {current['EndpointStatus']}; try again when it is InService")
    if current is not None and current["EndpointStatus"] == "Failed":
        print(f"endpoint {e.name} is Failed ({current.get('FailureReason', '')}); deleting it to start over")
        teardown_endpoint(aws)
        current = None
    instances = e.instance_count
    if current is not None:
        # Never shrink a fleet that autoscaling has grown: start the new fleet at today's size.
        live = [v.get("CurrentInstanceCount", 0) for v in current.get("ProductionVariants", [])]
        instances = max([instances, *live])
    model_name = create_model(aws, model_data, e.name, e.environment)
    config_name = create_endpoint_config(aws, model_name, instances)
    if current is None:
        print(f"creating endpoint {e.name} ({e.instance_type} x{instances}); this takes several minutes")
        result = _create(aws, config_name)
        if autoscale:
            autoscaling.apply(aws, e.name)
    else:
        print(f"updating endpoint {e.name}: {current['EndpointConfigName']} -> {config_name}")
        result = _update(aws, current, config_name, autoscale)
    print(f"endpoint {e.name} InService on {result['EndpointConfigName']}")
    return result


def teardown_endpoint(aws: Aws) -> bool:
    """Delete the endpoint (autoscaling first); configs and models are left to ``teardown``."""
    name = aws.cfg.endpoint.name
    if describe(aws) is None:
        return False
    autoscaling.remove(aws, name)
    sm = aws.client("sagemaker")
    sm.delete_endpoint(EndpointName=name)
    try:
        sm.get_waiter("endpoint_deleted").wait(
            EndpointName=name, WaiterConfig={"Delay": aws.cfg.endpoint.wait_delay_s, "MaxAttempts": 60}
        )
    except WaiterError as exc:
        raise OpsError(f"endpoint {name} was not deleted: {exc}") from None
    print(f"deleted endpoint {name}")
    return True
