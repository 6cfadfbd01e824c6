"""`python -m ops invoke`: the request it sends to sagemaker-runtime and how it reports errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber

from ops.aws import RUNTIME_READ_TIMEOUT_S, OpsError
from ops.invoke import MAX_BODY_BYTES, build_request, invoke
from support.aws import Calls


def test_invoke_sends_json_and_passes_attributes(aws: Any, calls: Calls) -> None:
    request = build_request(["great product", "très mauvais"], custom_attributes="threshold=0.7")
    body, headers = invoke(aws, request)
    sent = calls.one("InvokeEndpoint")
    assert sent["EndpointName"] == "textclf-test"
    assert json.loads(sent["Body"]) == {"inputs": ["great product", "très mauvais"]}
    assert sent["ContentType"] == sent["Accept"] == "application/json"
    assert sent["CustomAttributes"] == "threshold=0.7"
    assert body and "Content-Type" in headers
    assert aws.client("sagemaker-runtime").meta.config.read_timeout == RUNTIME_READ_TIMEOUT_S == 70


def test_json_lines_and_files(tmp_path: Path) -> None:
    lines = build_request(["a", "b"], content_type="application/jsonlines", accept="application/jsonlines")
    assert [json.loads(x) for x in lines.body.decode().splitlines()] == [{"inputs": "a"}, {"inputs": "b"}]
    path = tmp_path / "body.csv"
    path.write_bytes(b"text\nhello\n")
    assert build_request(body_file=path, content_type="text/csv").body == b"text\nhello\n"
    with pytest.raises(OpsError, match="use --body-file"):
        build_request(["a"], content_type="text/csv")
    with pytest.raises(OpsError, match="at most"):
        build_request(["x" * MAX_BODY_BYTES])
    with pytest.raises(OpsError, match="not both"):
        build_request(["a"], body_file=path)


def test_container_errors_name_the_original_status(aws: Any) -> None:
    client = aws.client("sagemaker-runtime")
    stub = Stubber(client)
    stub.add_client_error(
        "invoke_endpoint",
        service_error_code="ModelError",
        service_message="Received client error (422) from primary",
        http_status_code=424,
        modeled_fields={"OriginalStatusCode": 422, "OriginalMessage": '{"error": "text too long"}'},
    )
    with stub, pytest.raises(OpsError, match=r"ModelError \(container status 422\): \{\"error\": \"text too long\"\}"):
        invoke(aws, build_request(["x"]))
