"""Tear down what the other commands created, the billable parts first.

Default: the API stack, the endpoint (and its autoscaling), then the endpoint configs and models
whose names start with the project's prefixes and that no remaining endpoint uses.
``everything=True`` also stops running jobs, deletes the role stack, the ECR repository and the
objects under the bucket prefix, every version of them (the bucket is versioned by default,
``security.bucket_versioning``), and the bucket itself when that leaves it empty.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from ops import api, endpoint, stacks
from ops.aws import Aws, OpsError


def _paged(client: Any, method: str, key: str, **kwargs: Any) -> list[dict[str, Any]]:
    return [item for page in client.get_paginator(method).paginate(**kwargs) for item in page[key]]


def _prefixes(aws: Aws) -> tuple[str, ...]:
    return (f"{aws.cfg.endpoint.name}-", f"{aws.cfg.project}-")


def _in_use(aws: Aws) -> tuple[set[str], set[str]]:
    """Endpoint configs used by remaining endpoints, and the models those configs name.

    An endpoint in the middle of an update uses two configs: the one it serves from and the one
    it is switching to (``PendingDeploymentSummary``); deleting the latter would fail the update.
    """
    sm = aws.client("sagemaker")
    configs: set[str] = set()
    for e in _paged(sm, "list_endpoints", "Endpoints"):
        described = sm.describe_endpoint(EndpointName=e["EndpointName"])
        pending = (described.get("PendingDeploymentSummary") or {}).get("EndpointConfigName")
        configs.update(c for c in (described.get("EndpointConfigName"), pending) if c)
    models = {
        v["ModelName"]
        for c in sorted(configs)
        for v in sm.describe_endpoint_config(EndpointConfigName=c)["ProductionVariants"]
        if "ModelName" in v  # absent for variants that serve inference components
    }
    return configs, models


def endpoint_resources(aws: Aws) -> dict[str, list[str]]:
    sm = aws.client("sagemaker")
    prefixes = _prefixes(aws)
    used_configs, used_models = _in_use(aws)
    deleted: dict[str, list[str]] = {"endpoint_configs": [], "models": []}
    for c in _paged(sm, "list_endpoint_configs", "EndpointConfigs"):
        name = c["EndpointConfigName"]
        if name.startswith(prefixes) and name not in used_configs:
            sm.delete_endpoint_config(EndpointConfigName=name)
            deleted["endpoint_configs"].append(name)
    for m in _paged(sm, "list_models", "Models"):
        name = m["ModelName"]
        if name.startswith(prefixes) and name not in used_models:
            sm.delete_model(ModelName=name)
            deleted["models"].append(name)
    return deleted


def stop_jobs(aws: Aws) -> list[str]:
    sm = aws.client("sagemaker")
    stopped: list[str] = []
    prefixes = _prefixes(aws)
    for method, key, name_key, stop, arg in (
        (
            "list_hyper_parameter_tuning_jobs",
            "HyperParameterTuningJobSummaries",
            "HyperParameterTuningJobName",
            sm.stop_hyper_parameter_tuning_job,
            "HyperParameterTuningJobName",
        ),
        ("list_training_jobs", "TrainingJobSummaries", "TrainingJobName", sm.stop_training_job, "TrainingJobName"),
        ("list_transform_jobs", "TransformJobSummaries", "TransformJobName", sm.stop_transform_job, "TransformJobName"),
    ):
        for job in _paged(sm, method, key, StatusEquals="InProgress"):
            if job[name_key].startswith(prefixes):
                stop(**{arg: job[name_key]})
                stopped.append(job[name_key])
    return stopped


def storage(aws: Aws) -> None:
    ecr = aws.client("ecr")
    try:
        ecr.delete_repository(repositoryName=aws.cfg.image.repository, force=True)
        print(f"deleted ECR repository {aws.cfg.image.repository}")
    except ecr.exceptions.RepositoryNotFoundException:
        pass
    s3 = aws.client("s3")
    prefix = aws.cfg.aws.prefix.strip("/") + "/"
    # Every version and delete marker: deleting only the current objects of a versioned bucket would
    # leave their versions (billed, and the bucket never empty). An unversioned bucket lists its
    # objects here too, each with the version id "null".
    try:
        pages = list(s3.get_paginator("list_object_versions").paginate(Bucket=aws.bucket, Prefix=prefix))
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "NoSuchBucket":
            return
        raise
    objects = [
        {"Key": v["Key"], "VersionId": v["VersionId"]}
        for page in pages
        for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
    ]
    keys = sorted({o["Key"] for o in objects})
    for start in range(0, len(objects), 1000):
        batch = {"Objects": objects[start : start + 1000]}
        # DeleteObjects answers 200 even when some keys could not be deleted: they come back in Errors.
        errors = s3.delete_objects(Bucket=aws.bucket, Delete=batch).get("Errors", [])
        if errors:
            first = errors[0]
            raise OpsError(
                f"{len(errors)} object(s) under s3://{aws.bucket}/{prefix} were not deleted, e.g. "
                f"{first.get('Key')}: {first.get('Code')} {first.get('Message', '')}".rstrip()
            )
    print(f"deleted {len(keys)} object(s) ({len(objects)} version(s)) under s3://{aws.bucket}/{prefix}")
    left = s3.list_object_versions(Bucket=aws.bucket, MaxKeys=1)
    if not left.get("Versions") and not left.get("DeleteMarkers"):
        s3.delete_bucket(Bucket=aws.bucket)
        print(f"deleted bucket {aws.bucket}")


def teardown(aws: Aws, everything: bool = False) -> dict[str, Any]:
    summary: dict[str, Any] = {"api_stack": api.delete(aws), "endpoint": endpoint.teardown_endpoint(aws)}
    if everything:
        summary["stopped_jobs"] = stop_jobs(aws)
    summary.update(endpoint_resources(aws))
    if everything:
        summary["role_stack"] = stacks.delete(aws, aws.cfg.role.stack_name)
        storage(aws)
    return summary
