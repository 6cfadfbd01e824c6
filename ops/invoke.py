"""Invoke the endpoint from the command line, straight through sagemaker-runtime."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from botocore.exceptions import ClientError

from ops.aws import Aws, OpsError

MAX_BODY_BYTES = 6 * 1024 * 1024  # InvokeEndpoint's request limit (6,291,456 bytes)


@dataclass
class Request:
    body: bytes
    content_type: str
    accept: str
    custom_attributes: str = ""


def build_request(
    texts: list[str] | None = None,
    body_file: Path | None = None,
    content_type: str = "application/json",
    accept: str = "application/json",
    custom_attributes: str = "",
) -> Request:
    """Texts become ``{"inputs": [...]}`` (JSON) or one ``{"inputs": text}`` per line (JSON Lines)."""
    if bool(texts) == bool(body_file):
        raise OpsError("give texts or --body-file, not both and not neither")
    if body_file is not None:
        body = body_file.read_bytes()
    elif content_type == "application/jsonlines":
        body = "".join(json.dumps({"inputs": t}, ensure_ascii=False) + "\n" for t in texts or []).encode()
    elif content_type == "application/json":
        body = json.dumps({"inputs": texts}, ensure_ascii=False).encode()
    else:
        raise OpsError(
            f"texts can be sent as application/json or application/jsonlines; use --body-file for {content_type}"
        )
    if len(body) > MAX_BODY_BYTES:
        raise OpsError(f"body is {len(body)} bytes; SageMaker takes at most {MAX_BODY_BYTES}")
    return Request(body, content_type, accept, custom_attributes)


def invoke(aws: Aws, request: Request) -> tuple[bytes, dict[str, str]]:
    """Returns the response body and its headers (content type, custom attributes, variant)."""
    kwargs = {
        "EndpointName": aws.cfg.endpoint.name,
        "Body": request.body,
        "ContentType": request.content_type,
        "Accept": request.accept,
    }
    if request.custom_attributes:
        kwargs["CustomAttributes"] = request.custom_attributes
    try:
        response = aws.client("sagemaker-runtime").invoke_endpoint(**kwargs)
    except ClientError as exc:
        err = exc.response.get("Error", {})
        original = exc.response.get("OriginalStatusCode") or err.get("OriginalStatusCode")
        detail = exc.response.get("OriginalMessage") or err.get("OriginalMessage") or err.get("Message", "")
        status = f" (container status {original})" if original else ""
        raise OpsError(f"{err.get('Code', 'error')}{status}: {detail}") from None
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 200
    if status >= 400:
        # Only the SDK's local mode gets here: its runtime client returns the container's 4xx/5xx as
        # a status, where the real client raises ModelError (handled above) with the same content.
        detail = response["Body"].read().decode("utf-8", errors="replace")
        raise OpsError(f"ModelError (container status {status}): {detail}")
    headers = {
        "Content-Type": response.get("ContentType", ""),
        "X-Amzn-SageMaker-Custom-Attributes": response.get("CustomAttributes", ""),
        "X-Amzn-Invoked-Production-Variant": response.get("InvokedProductionVariant", ""),
    }
    return response["Body"].read(), {k: v for k, v in headers.items() if v}
