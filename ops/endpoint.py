"""Real-time endpoint: model + endpoint config + endpoint, autoscaling, and a safe update.

Written against boto3 (not the SDK's resource classes) so that moto and botocore's Stubber can
check every request. An update never edits what is serving: it creates a new model and endpoint
config, switches the endpoint to them (blue/green), and if the switch does not end InService on the
new config it puts the old config back and deletes the new one.

With ``endpoint.serverless.enabled`` (``deploy --serverless``) the variant is a Serverless Inference
one: ``ServerlessConfig`` instead of an instance type and count, and what Serverless cannot take is
refused before anything is created (serverless-endpoints.html, "Container support" and "Feature
exclusions"): a GPU image, an image over 10 GB, a model.tar.gz larger than the memory size or the
5 GB of disk, and an update of an instance endpoint to serverless (SageMaker answers it with a
ValidationError). Instance autoscaling does not apply to a serverless variant and is skipped.

Security (``[security]``, ``ops.security``): a model runs as the serving role (a transform job's model as
the batch role, ``ops.role``), network isolated and in the configured VPC; the endpoint config encrypts
the instance volume with the configured KMS key where the instance has one. A serverless endpoint takes
no VPC (refused when one is configured), no network isolation and no volume key.
"""

from __future__ import annotations

import re
from typing import Any

from botocore.exceptions import ClientError, WaiterError

from ops import autoscaling, role, security, variants
from ops.aws import Aws, OpsError, poll, unique_name
from ops.config import ConfigError, EndpointSection, check_serverless_settings

BUSY = {"Creating", "Updating", "SystemUpdating", "RollingBack"}

# serverless-endpoints.html: "The maximum size of the container image you can use is 10 GB" and "your
# serverless endpoint has 5 GB of ephemeral disk storage" (the model is extracted there).
SERVERLESS_MAX_IMAGE_BYTES = 10 * 10**9
SERVERLESS_DISK_BYTES = 5 * 10**9
# serverless-endpoints.html: "we recommend creating only one worker in the container and only loading
# one copy of the model"; the container's own default is one worker per CPU (textclf serve settings).
SERVERLESS_WORKERS = "1"
WORKER_VARIABLES = ("SAGEMAKER_MODEL_SERVER_WORKERS", "MODEL_SERVER_WORKERS")
_ECR_URI = re.compile(
    r"^(?P<registry>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
    r"(?P<repository>[^:@]+)(?::(?P<tag>[^@]+))?(?:@(?P<digest>sha256:[0-9a-f]+))?$"
)


def use_deploy_arguments(
    e: EndpointSection,
    serverless: bool = False,
    memory_size_mb: int | None = None,
    max_concurrency: int | None = None,
    provisioned_concurrency: int | None = None,
    to_provisioned: bool = False,
) -> None:
    """Lay ``deploy``'s command-line choices over the configuration and check them as the file is checked.

    ``--serverless`` turns ``endpoint.serverless.enabled`` on for this run; the sizes override their
    settings. A size without serverless would be silently ignored, so it is refused instead.
    """
    s = e.serverless
    given = {
        "--memory-size-mb": memory_size_mb,
        "--max-concurrency": max_concurrency,
        "--provisioned-concurrency": provisioned_concurrency,
    }
    named = [flag for flag, value in given.items() if value is not None]
    if named and not (serverless or s.enabled):
        raise ConfigError(
            f"{', '.join(named)}: only for a serverless endpoint; add --serverless (or set endpoint.serverless.enabled)"
        )
    if to_provisioned and (serverless or s.enabled):
        raise ConfigError("--to-provisioned moves an endpoint to instances: it cannot go with serverless")
    s.enabled = s.enabled or serverless
    s.memory_size_mb = s.memory_size_mb if memory_size_mb is None else memory_size_mb
    s.max_concurrency = s.max_concurrency if max_concurrency is None else max_concurrency
    if provisioned_concurrency is not None:
        s.provisioned_concurrency = provisioned_concurrency
    check_serverless_settings(s)


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


def create_model(aws: Aws, model_data: str, base: str, environment: dict[str, str], kind: str = "serving") -> str:
    """A model of ``model_data`` on the serve image, run as the ``kind`` role (serving: an endpoint's;
    batch: a transform job's), with the configured network isolation and VPC."""
    role.check_reach(aws, kind, "model data", model_data, "output")
    serverless = kind == "serving" and aws.cfg.endpoint.serverless.enabled
    name = unique_name(base)
    aws.client("sagemaker").create_model(
        ModelName=name,
        ExecutionRoleArn=role.arn(aws, kind),
        PrimaryContainer={"Image": aws.serving_image, "ModelDataUrl": model_data, "Environment": dict(environment)},
        Tags=[{"Key": "project", "Value": aws.cfg.project}],
        **security.model_fields(aws, serverless),
    )
    return name


def production_variant(aws: Aws, model_name: str, instance_count: int) -> dict[str, Any]:
    """The endpoint config's one variant: instances, or ``ServerlessConfig`` alone.

    A serverless variant carries none of the instance fields: SageMaker fixes its start-up window
    ("The model must download and the server must respond successfully to /ping within 3 minutes",
    serverless-endpoints-invoke.html), and the SageMaker SDK sends ``InstanceType``,
    ``InitialInstanceCount``, ``VolumeSizeInGB`` and both timeouts only for instance variants
    (``sagemaker.core.helper.session_helper.production_variant``).
    """
    e = aws.cfg.endpoint
    if e.serverless.enabled:
        s = e.serverless
        config: dict[str, Any] = {"MemorySizeInMB": s.memory_size_mb, "MaxConcurrency": s.max_concurrency}
        if s.provisioned_concurrency:
            config["ProvisionedConcurrency"] = s.provisioned_concurrency
        return {"VariantName": e.variant, "ModelName": model_name, "ServerlessConfig": config}
    return {
        "VariantName": e.variant,
        "ModelName": model_name,
        "InitialInstanceCount": instance_count,
        "InstanceType": e.instance_type,
        "ContainerStartupHealthCheckTimeoutInSeconds": e.startup_health_check_timeout_s,
        "ModelDataDownloadTimeoutInSeconds": e.model_download_timeout_s,
    }


def create_endpoint_config(aws: Aws, model_name: str, instance_count: int) -> str:
    name = unique_name(aws.cfg.endpoint.name)
    aws.client("sagemaker").create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[production_variant(aws, model_name, instance_count)],
        Tags=[{"Key": "project", "Value": aws.cfg.project}],
        **security.endpoint_config_kms(aws),
    )
    return name


def is_serverless(description: dict[str, Any]) -> bool:
    """Whether a DescribeEndpoint answer is a serverless endpoint (its variants report a serverless config)."""
    return any(
        "CurrentServerlessConfig" in v or "DesiredServerlessConfig" in v
        for v in description.get("ProductionVariants", [])
    )


def serverless_environment(environment: dict[str, str]) -> dict[str, str]:
    """The container environment for a serverless variant: one worker unless the configuration names a count."""
    if any(name in environment for name in WORKER_VARIABLES):
        return dict(environment)
    return {**environment, "MODEL_SERVER_WORKERS": SERVERLESS_WORKERS}


def _image_bytes(aws: Aws, image: str) -> int | None:
    """The image's size as ECR reports it (``imageSizeInBytes``: the compressed layers, so a lower bound
    of the unpacked size), or None where ops cannot tell (not in ECR, not allowed to look)."""
    match = _ECR_URI.match(image)
    if match is None or match["region"] != aws.region:
        print(f"serverless: {image} is not an ECR image of {aws.region}; its size (<= 10 GB) is not checked")
        return None
    image_id = {"imageDigest": match["digest"]} if match["digest"] else {"imageTag": match["tag"] or "latest"}
    try:
        found = aws.client("ecr").describe_images(
            registryId=match["registry"], repositoryName=match["repository"], imageIds=[image_id]
        )["imageDetails"]
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        if code in ("ImageNotFoundException", "RepositoryNotFoundException"):
            raise OpsError(
                f"image {image} is not in ECR ({code}): push it first with `python -m ops image --variant serve`"
            ) from None
        print(f"serverless: could not read the size of {image} ({code}); not checked")
        return None
    sizes = [d["imageSizeInBytes"] for d in found if d.get("imageSizeInBytes") is not None]
    return max(sizes) if sizes else None


def _model_bytes(aws: Aws, model_data: str) -> int | None:
    """The size of ``model.tar.gz`` (compressed: a lower bound of the model it unpacks to); None if unreadable."""
    bucket, _, key = model_data.removeprefix("s3://").partition("/")
    try:
        return int(aws.client("s3").head_object(Bucket=bucket, Key=key)["ContentLength"])
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        if code in ("404", "NoSuchKey", "NotFound"):
            raise OpsError(f"{model_data} does not exist") from None
        print(f"serverless: could not read the size of {model_data} ({code}); not checked")
        return None


def check_serverless(aws: Aws, model_data: str) -> None:
    """Refuse, before anything is created or billed, what a serverless endpoint cannot run.

    The memory size, concurrency and provisioned concurrency are checked when the configuration is
    read (``ops.config.check_serverless_settings``); here go the checks that need AWS: the image (no GPU
    variant, at most 10 GB) and the model (no larger than the memory, nor the 5 GB disk).
    """
    s = aws.cfg.endpoint.serverless
    image = aws.serving_image
    repository_tag = image.rsplit("/", 1)[-1]
    if repository_tag.split("@")[0].endswith(variants.GPU.tag_suffix):
        raise OpsError(
            f"serverless endpoints have no GPU (serverless-endpoints.html, Feature exclusions), and {image} is "
            "the gpu variant: deploy the serve variant (leave image.uri empty, or point it at a <tag>-serve image)"
        )
    if aws.cfg.image.uri and not repository_tag.split("@")[0].endswith(variants.SERVE.tag_suffix):
        print(f"serverless: image.uri {image} is not a -serve image; cold starts grow with the image's size")
    image_bytes = _image_bytes(aws, image)
    if image_bytes is not None and image_bytes > SERVERLESS_MAX_IMAGE_BYTES:
        raise OpsError(
            f"image {image} is {image_bytes / 1e9:.1f} GB in ECR (compressed); serverless endpoints take images "
            "up to 10 GB: deploy the serve variant (about 0.45 GB)"
        )
    model_bytes = _model_bytes(aws, model_data)
    memory_bytes = s.memory_size_mb * 2**20
    if model_bytes is not None and model_bytes > min(memory_bytes, SERVERLESS_DISK_BYTES):
        raise OpsError(
            f"{model_data} is {model_bytes / 2**20:.0f} MB compressed, more than endpoint.serverless.memory_size_mb "
            f"({s.memory_size_mb}) or the 5 GB disk of a serverless endpoint can hold: the model cannot fit; "
            "choose a larger memory size (up to 6144) or deploy on instances"
        )


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


def _deployment_config(aws: Aws, serverless: bool) -> dict[str, Any] | None:
    """Blue/green, all at once, with the configured bake time and rollback alarms.

    Rolling updates are the deployment SageMaker refuses for serverless endpoints
    (deployment-guardrails-exclusions.html); blue/green is what UpdateEndpoint does by default ("If no
    update policy is specified, SageMaker uses a blue/green deployment strategy with all at once traffic
    shifting", botocore ``DeploymentConfig``). A serverless update with nothing to add to that default
    sends no DeploymentConfig at all, so it asks SageMaker for nothing a serverless endpoint might not take.
    """
    e = aws.cfg.endpoint
    if serverless and not e.rollback_alarms and not e.bake_s:
        return None
    deployment: dict[str, Any] = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0},
            "TerminationWaitInSeconds": e.bake_s,
        }
    }
    if e.rollback_alarms:
        deployment["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a} for a in e.rollback_alarms]}
    return deployment


def _update(aws: Aws, current: dict[str, Any], config_name: str, autoscale: bool) -> dict[str, Any]:
    e = aws.cfg.endpoint
    sm = aws.client("sagemaker")
    old_config = current["EndpointConfigName"]
    from_serverless, to_serverless = is_serverless(current), e.serverless.enabled
    request: dict[str, Any] = {"EndpointName": e.name, "EndpointConfigName": config_name}
    deployment = _deployment_config(aws, to_serverless)
    if deployment is not None:
        request["DeploymentConfig"] = deployment
    # Application Auto Scaling refuses an update that changes a scaled variant's instance type:
    # take the variant off autoscaling for the switch and put it back afterwards, whatever happens.
    # A serverless variant has no instance count to scale (nor to take off scaling).
    was_scaled = False if from_serverless else autoscaling.remove(aws, e.name)
    reapply = not to_serverless and (was_scaled or autoscale)
    try:
        sm.update_endpoint(**request)
        after = _wait(aws)
        if after["EndpointStatus"] == "InService" and after["EndpointConfigName"] == config_name:
            if not e.keep_previous:
                _delete_config_and_models(aws, old_config)
            return after
        reason = after.get("FailureReason") or f"ended {after['EndpointStatus']} on {after['EndpointConfigName']}"
        if after["EndpointStatus"] != "InService" or after["EndpointConfigName"] != old_config:
            if from_serverless and not to_serverless:
                # serverless-endpoints.html: "once you make the update, you cannot roll it back to serverless"
                reapply = False  # no instance variant is serving to scale
                raise OpsError(
                    f"update of serverless endpoint {e.name} to instances failed ({reason}) and SageMaker cannot "
                    f"update an endpoint back to serverless, so ops did not try; {old_config} and {config_name} "
                    "are kept: delete the endpoint (`python -m ops teardown`) and deploy again"
                )
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
        if reapply:
            autoscaling.apply(aws, e.name)


def _check_conversion(aws: Aws, current: dict[str, Any], to_provisioned: bool) -> None:
    """Refuse the switches between instances and serverless that SageMaker refuses or cannot undo.

    serverless-endpoints.html (Feature exclusions): "You cannot convert your instance-based, real-time
    endpoint to a serverless endpoint. If you try to update your real-time endpoint to serverless, you
    receive a ValidationError message. You can convert a serverless endpoint to real-time, but once you
    make the update, you cannot roll it back to serverless."
    """
    e = aws.cfg.endpoint
    if e.serverless.enabled and not is_serverless(current):
        raise OpsError(
            f"endpoint {e.name} runs on instances, and SageMaker cannot update an instance endpoint to serverless "
            "(it answers ValidationError): deploy the serverless endpoint under another endpoint.name "
            "(e.g. TEXTCLF_ENDPOINT_NAME), or delete this one first (`python -m ops teardown`)"
        )
    if not e.serverless.enabled and is_serverless(current) and not to_provisioned:
        raise OpsError(
            f"endpoint {e.name} is serverless and this deploy is not (no --serverless; endpoint.serverless.enabled "
            "is false). SageMaker can move a serverless endpoint to instances but never back: pass --to-provisioned "
            "to do that, or --serverless to stay serverless"
        )


def deploy(aws: Aws, model_data: str, autoscale: bool = True, to_provisioned: bool = False) -> dict[str, Any]:
    """Create the endpoint, or safely update it when it exists; returns the final description.

    ``endpoint.serverless.enabled`` makes it a serverless endpoint; ``to_provisioned`` allows the
    one-way update of a serverless endpoint to instances.
    """
    e = aws.cfg.endpoint
    serverless = e.serverless.enabled
    # what the roles and [security] cannot allow, refused before anything is created or deleted
    role.check_reach(aws, "serving", "model data", model_data, "output")
    if serverless:
        security.refuse_serverless_vpc(aws)
    current = describe(aws)
    if current is not None and current["EndpointStatus"] in BUSY:
        raise OpsError(f"endpoint {e.name} is {current['EndpointStatus']}; try again when it is InService")
    failed = current is not None and current["EndpointStatus"] == "Failed"
    if current is not None and not failed:
        _check_conversion(aws, current, to_provisioned)
    if serverless:
        check_serverless(aws, model_data)
    if current is not None and failed:
        print(f"endpoint {e.name} is Failed ({current.get('FailureReason', '')}); deleting it to start over")
        teardown_endpoint(aws)
        current = None
    instances = e.instance_count
    if current is not None:
        # Never shrink a fleet that autoscaling has grown: start the new fleet at today's size.
        live = [v.get("CurrentInstanceCount", 0) for v in current.get("ProductionVariants", [])]
        instances = max([instances, *live])
    environment = serverless_environment(e.environment) if serverless else e.environment
    model_name = create_model(aws, model_data, e.name, environment)
    config_name = create_endpoint_config(aws, model_name, instances)
    if serverless:
        s = e.serverless
        warm = f", {s.provisioned_concurrency} provisioned" if s.provisioned_concurrency else ""
        shape = f"serverless, {s.memory_size_mb} MB, up to {s.max_concurrency} concurrent invocations{warm}"
        if autoscale and e.autoscaling.enabled:
            print("autoscaling: skipped; a serverless endpoint scales itself up to its max_concurrency")
    else:
        shape = f"{e.instance_type} x{instances}"
    if current is None:
        print(f"creating endpoint {e.name} ({shape}); this takes several minutes")
        result = _create(aws, config_name)
        if autoscale and not serverless:
            autoscaling.apply(aws, e.name)
    else:
        print(f"updating endpoint {e.name} ({shape}): {current['EndpointConfigName']} -> {config_name}")
        result = _update(aws, current, config_name, autoscale)
    print(f"endpoint {e.name} InService on {result['EndpointConfigName']}")
    return result


def teardown_endpoint(aws: Aws) -> bool:
    """Delete the endpoint (autoscaling first); configs and models are left to ``teardown``."""
    name = aws.cfg.endpoint.name
    current = describe(aws)
    if current is None:
        return False
    if not is_serverless(current):  # a serverless variant has no instance-count target to deregister
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
