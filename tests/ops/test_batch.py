"""Batch Transform over JSON Lines, checked at the CreateTransformJob request."""

from __future__ import annotations

from typing import Any

import pytest

from ops import batch
from ops.aws import OpsError
from support.aws import SERVING_INSTANCE, Calls, pinned_image


def test_transform_request(aws: Any, calls: Calls) -> None:
    job = batch.start(aws, "s3://textclf-test-bucket/in/", model_data="s3://textclf-test-bucket/m/model.tar.gz")
    model = calls.one("CreateModel")
    assert model["PrimaryContainer"]["ModelDataUrl"] == "s3://textclf-test-bucket/m/model.tar.gz"
    assert model["PrimaryContainer"]["Image"] == pinned_image(aws, "t1-serve")  # by digest
    req = calls.one("CreateTransformJob")
    assert req["TransformJobName"] == job and req["ModelName"] == model["ModelName"]
    assert req["BatchStrategy"] == "MultiRecord"
    assert req["MaxPayloadInMB"] == 6
    assert req["MaxConcurrentTransforms"] == 4
    assert req["TransformInput"] == {
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://textclf-test-bucket/in/"}},
        "ContentType": "application/jsonlines",
        "SplitType": "Line",
        "CompressionType": "None",
    }
    assert req["TransformOutput"] == {
        "S3OutputPath": f"s3://textclf-test-bucket/textclf/batch/{job}/",
        "Accept": "application/jsonlines",
        "AssembleWith": "Line",
    }
    assert req["TransformResources"] == {"InstanceType": SERVING_INSTANCE, "InstanceCount": 1}
    assert req["ModelClientConfig"] == {"InvocationsTimeoutInSeconds": 600, "InvocationsMaxRetries": 1}
    assert aws.client("sagemaker").describe_transform_job(TransformJobName=job)["TransformJobStatus"]


def test_existing_model_and_output(aws: Any, calls: Calls) -> None:
    aws.cfg.batch.max_concurrent_transforms = 0
    aws.cfg.batch.environment = {"MODEL_SERVER_WORKERS": "4"}
    batch.start(aws, "s3://b/in/", model_name="some-model", output_uri="s3://b/out/")
    assert calls.of("CreateModel") == []
    req = calls.one("CreateTransformJob")
    assert req["ModelName"] == "some-model"
    assert req["TransformOutput"]["S3OutputPath"] == "s3://b/out/"
    assert "MaxConcurrentTransforms" not in req  # the container's /execution-parameters decides
    assert req["Environment"] == {"MODEL_SERVER_WORKERS": "4"}


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"input_uri": "/local/in", "model_name": "m"}, "--input must be an s3:// URI, got /local/in"),
        ({"input_uri": "s3://b/in/"}, "give exactly one of a model name or model data"),
        (
            {"input_uri": "s3://b/in/", "model_name": "m", "model_data": "s3://b/model.tar.gz"},
            "give exactly one of a model name or model data",
        ),
    ],
)
def test_bad_arguments(aws: Any, calls: Calls, kwargs: dict[str, str], reason: str) -> None:
    with pytest.raises(OpsError, match=reason):
        batch.start(aws, **kwargs)
    assert calls.of("CreateTransformJob") == []
