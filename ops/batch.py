"""Batch Transform over JSON Lines: one input line in, one output line out, in order.

``SplitType=Line`` + ``BatchStrategy=MultiRecord`` packs as many lines as fit in
``MaxPayloadInMB`` into one ``/invocations`` request (``application/jsonlines``);
``AssembleWith=Line`` joins the answers with newlines, one output file per input file.

Security: the model runs as the batch role (``ops.role``: with the role stack's, the input and output
must lie under ``<prefix>/batch/``, checked before anything is created), network isolated and in the
configured VPC (``ops.endpoint.create_model``); the output, and the volume where the instance type has
one, are encrypted with ``security.kms_key_id``.
"""

from __future__ import annotations

import contextlib
from typing import Any

from botocore.exceptions import WaiterError

from ops import role, security
from ops.aws import Aws, OpsError, unique_name
from ops.endpoint import create_model

JSONLINES = "application/jsonlines"
MAX_TRANSFORM_ENV = 16


def transform_request(aws: Aws, job_name: str, model_name: str, input_uri: str, output_uri: str) -> dict[str, Any]:
    b = aws.cfg.batch
    if len(b.environment) > MAX_TRANSFORM_ENV:
        raise OpsError(f"batch.environment has {len(b.environment)} entries; transform jobs take {MAX_TRANSFORM_ENV}")
    request: dict[str, Any] = {
        "TransformJobName": job_name,
        "ModelName": model_name,
        "BatchStrategy": "MultiRecord",
        "MaxPayloadInMB": b.max_payload_mb,
        "ModelClientConfig": {
            "InvocationsTimeoutInSeconds": b.invocation_timeout_s,
            "InvocationsMaxRetries": b.invocation_max_retries,
        },
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_uri}},
            "ContentType": JSONLINES,
            "SplitType": "Line",
            "CompressionType": "None",
        },
        "TransformOutput": {"S3OutputPath": output_uri, "Accept": JSONLINES, "AssembleWith": "Line"},
        "TransformResources": {"InstanceType": b.instance_type, "InstanceCount": b.instance_count},
        "Tags": [{"Key": "project", "Value": aws.cfg.project}],
    }
    key = security.kms_key(aws)
    if key is not None:
        request["TransformOutput"]["KmsKeyId"] = key
        volume_key = security.volume_kms_key(aws, b.instance_type, "batch")
        if volume_key is not None:
            request["TransformResources"]["VolumeKmsKeyId"] = volume_key
    if b.max_concurrent_transforms:
        request["MaxConcurrentTransforms"] = b.max_concurrent_transforms
    if b.environment:
        request["Environment"] = dict(b.environment)
    return request


def start(
    aws: Aws,
    input_uri: str,
    model_data: str | None = None,
    model_name: str | None = None,
    output_uri: str | None = None,
    wait: bool = False,
) -> str:
    """Start a transform job with an existing model or a new one made from ``model_data``."""
    if not input_uri.startswith("s3://"):
        raise OpsError(f"--input must be an s3:// URI, got {input_uri}")
    if bool(model_data) == bool(model_name):
        raise OpsError("give exactly one of a model name or model data")
    job_name = unique_name(f"{aws.cfg.project}-batch")
    output_uri = output_uri or aws.s3_uri("batch", job_name)
    role.check_reach(aws, "batch", "--input", input_uri, "batch")
    role.check_reach(aws, "batch", "--output", output_uri, "batch")
    model_name = model_name or create_model(aws, str(model_data), f"{aws.cfg.project}-batch", {}, kind="batch")
    sm = aws.client("sagemaker")
    sm.create_transform_job(**transform_request(aws, job_name, model_name, input_uri, output_uri))
    print(f"transform job {job_name} started: {input_uri} -> {output_uri}")
    if wait:
        with contextlib.suppress(WaiterError):
            sm.get_waiter("transform_job_completed_or_stopped").wait(
                TransformJobName=job_name, WaiterConfig={"Delay": 30, "MaxAttempts": 240}
            )
        described = sm.describe_transform_job(TransformJobName=job_name)
        if described["TransformJobStatus"] != "Completed":
            raise OpsError(
                f"transform job {job_name} {described['TransformJobStatus']}: {described.get('FailureReason', '')}"
            )
    return job_name
