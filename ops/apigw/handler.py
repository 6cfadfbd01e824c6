"""API Gateway -> Lambda -> SageMaker ``InvokeEndpoint``. Standard library and boto3 only.

Accepts API Gateway REST (payload 1.0) and HTTP API (payload 2.0) proxy events, base64 bodies
included. Checks size and content type before calling SageMaker; passes ``Content-Type``,
``Accept`` and ``X-Amzn-SageMaker-Custom-Attributes`` through and back. A request without ``Accept``
asks for its own type back, except one the container cannot answer in (``text/plain``): JSON. Errors map to:

    container 4xx (ModelError)            -> the container's status and body (OriginalMessage), scrubbed
    container 5xx, container/read timeout  -> 502, a fixed message
    throttling                             -> 429, a fixed message
    ModelNotReady / ServiceUnavailable     -> 503, a fixed message
    ValidationError                        -> 400, SageMaker's message scrubbed
    any other error                        -> 502, a fixed message

No answer echoes the account: SageMaker's messages name it ("Endpoint x of account <id> not found.",
"See https://<region>.console.aws.amazon.com/cloudwatch/...#logEventViewer:group=/aws/sagemaker/
Endpoints/x in account <id>"), and its error members carry log stream ARNs. Only two texts from
SageMaker reach the caller, a ValidationError's message and a container 4xx's own body, and both are
scrubbed first (:func:`scrub`): links, ARNs, ``/aws/...`` log group and stream names and 12-digit account
ids become ``<url>``, ``<arn>``, ``<log-group>`` and ``<account>``; a JSON body stays JSON. The rest is
this function's own text. The function's logs (the operator's) keep the error code only.

Time budget: the SageMaker read timeout (``SAGEMAKER_READ_TIMEOUT_S``,
70 s as AWS recommends when nothing in front is shorter) must end before the Lambda timeout, which
must end before API Gateway's integration timeout (29 s unless raised), so that every failure
reaches the caller as this function's JSON rather than a bare gateway 504.

Logs carry the request id, sizes, statuses and timings: never bodies, headers or attributes.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import time
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

LOG = logging.getLogger("textclf.api")
LOG.setLevel(os.environ.get("LOG_LEVEL", "INFO"))

MAX_BODY_BYTES = 6 * 1024 * 1024  # InvokeEndpoint's 6 MB request limit (6,291,456 bytes)
MAX_CUSTOM_ATTRIBUTES = 1024
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
DEFAULT_CONTENT_TYPES = "application/json,application/jsonlines,text/csv,text/plain"
# The container's response types (textclf.serve.codecs: RESPONSE_TYPES and their aliases).
RESPONSE_TYPES = frozenset(
    {
        "application/json",
        "application/jsonlines",
        "application/jsonl",
        "application/x-jsonlines",
        "application/json-lines",
        "application/x-ndjson",
        "text/csv",
        "application/csv",
    }
)
DEFAULT_ACCEPT = "application/json"
TEXT_TYPES = ("application/json", "application/jsonlines", "application/x-jsonlines", "text/")
_VISIBLE_ASCII = re.compile(r"^[\x20-\x7e]*$")
# What a message must not carry to the caller, in the order scrubbed: links first (a CloudWatch console
# link holds a log group and the region), then ARNs (arn:aws, arn:aws-cn, arn:aws-us-gov, ...), log
# groups and streams (/aws/sagemaker/Endpoints/<name>, /aws/lambda/...), and 12-digit account ids standing
# alone (not digits inside a longer token such as a hex request id).
_REST = r"[^\s\"'<>]*(?<![.,;:)])"  # up to a space, quote or bracket, less trailing punctuation
_SCRUBS = (
    (re.compile(r"\b(?:https?|s3)://" + _REST, re.IGNORECASE), "<url>"),
    (re.compile(r"\b[A-Za-z0-9.-]+\.(?:amazonaws\.com(?:\.cn)?|aws\.amazon\.com)\b" + _REST), "<url>"),
    (re.compile(r"\barn:aws[a-z-]*:" + _REST, re.IGNORECASE), "<arn>"),
    (re.compile(r"(?<![A-Za-z0-9])/aws/" + _REST), "<log-group>"),
    (re.compile(r"(?<![A-Za-z0-9])[0-9]{12}(?![A-Za-z0-9])"), "<account>"),
)

_client: Any = None


def _runtime() -> Any:
    """One client per execution environment (created on the first request, reused while warm)."""
    global _client
    if _client is None:
        _client = boto3.client(
            "sagemaker-runtime",
            config=Config(
                read_timeout=float(os.environ.get("SAGEMAKER_READ_TIMEOUT_S", "70")),
                connect_timeout=float(os.environ.get("SAGEMAKER_CONNECT_TIMEOUT_S", "2")),
                # A retry would not fit in the API's time budget; the caller retries 429/503.
                retries={"total_max_attempts": 1},
            ),
        )
    return _client


class HttpError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def _allowed_types() -> set[str]:
    raw = os.environ.get("ALLOWED_CONTENT_TYPES", DEFAULT_CONTENT_TYPES)
    return {t.strip().lower() for t in raw.split(",") if t.strip()}


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def _default_accept(content_type: str) -> str:
    """A request without ``Accept`` asks for its own type back where the container writes that type
    (JSON, JSON Lines, CSV); ``text/plain`` has no response type of its own (the container would
    answer 406), so it, and any other such type, gets JSON."""
    return content_type if _media_type(content_type) in RESPONSE_TYPES else DEFAULT_ACCEPT


def _headers(event: dict[str, Any]) -> dict[str, str]:
    """Request headers, names lower-cased (v1 keeps the client's case; v2 lower-cases; both may repeat)."""
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items() if v is not None}
    for name, values in (event.get("multiValueHeaders") or {}).items():
        if values and name.lower() not in headers:
            headers[name.lower()] = ",".join(values)
    return headers


def _method(event: dict[str, Any]) -> str:
    if event.get("version") == "2.0":
        return str(event.get("requestContext", {}).get("http", {}).get("method", "")).upper()
    return str(event.get("httpMethod", "")).upper()


def _body(event: dict[str, Any]) -> bytes:
    raw = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise HttpError(400, "BadRequest", "body is flagged base64 but is not valid base64") from None
    return raw.encode("utf-8")


def _parse(event: dict[str, Any]) -> dict[str, Any]:
    """The InvokeEndpoint arguments, or HttpError for a request SageMaker would refuse anyway."""
    method = _method(event)
    if method and method != "POST":
        raise HttpError(405, "MethodNotAllowed", "use POST", {"Allow": "POST"})
    headers = _headers(event)
    content_type = headers.get("content-type", "")
    allowed = _allowed_types()
    if _media_type(content_type) not in allowed:
        shown = content_type or "none"
        raise HttpError(
            415,
            "UnsupportedMediaType",
            f"Content-Type {shown} is not accepted; use one of: {', '.join(sorted(allowed))}",
        )
    # Checked on the raw event first: a huge base64 string is refused before it is decoded.
    if len(event.get("body") or "") > MAX_BODY_BYTES * 4 // 3 + 4:
        raise HttpError(413, "PayloadTooLarge", f"body exceeds {MAX_BODY_BYTES} bytes")
    body = _body(event)
    if len(body) > MAX_BODY_BYTES:
        raise HttpError(413, "PayloadTooLarge", f"body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}")
    if not body:
        raise HttpError(400, "BadRequest", "empty body")
    kwargs: dict[str, Any] = {
        "EndpointName": os.environ["ENDPOINT_NAME"],
        "Body": body,
        "ContentType": content_type,
        "Accept": headers.get("accept") or _default_accept(content_type),
    }
    attributes = headers.get(CUSTOM_ATTRIBUTES.lower())
    if attributes is not None:
        if len(attributes) > MAX_CUSTOM_ATTRIBUTES or not _VISIBLE_ASCII.match(attributes):
            raise HttpError(
                400,
                "BadRequest",
                f"{CUSTOM_ATTRIBUTES} must be at most {MAX_CUSTOM_ATTRIBUTES} visible US-ASCII characters",
            )
        kwargs["CustomAttributes"] = attributes
    return kwargs


def scrub(text: str) -> str:
    """``text`` without links, ARNs, ``/aws/`` log names and account ids (see the module's docstring)."""
    for pattern, replacement in _SCRUBS:
        text = pattern.sub(replacement, text)
    return text


def _scrub_json(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, list):
        return [_scrub_json(v) for v in value]
    if isinstance(value, dict):
        return {scrub(str(k)): _scrub_json(v) for k, v in value.items()}
    if isinstance(value, int) and not isinstance(value, bool) and scrub(str(value)) != str(value):
        return "<account>"
    return value


def scrub_body(body: str) -> str:
    """A container's error body, scrubbed; left byte for byte as it is when there is nothing to scrub, and
    JSON scrubbed value by value (so that it stays JSON) when there is."""
    if scrub(body) == body:
        return body
    try:
        return json.dumps(_scrub_json(json.loads(body)), ensure_ascii=False)
    except ValueError:
        return scrub(body)


def _field(response: dict[str, Any], name: str) -> Any:
    # botocore puts modelled error members at the top level; look in Error too, to be safe.
    return response.get(name, response.get("Error", {}).get(name))


def _map_client_error(exc: ClientError) -> HttpError | tuple[int, str, str]:
    """A SageMaker error -> HttpError, or (status, content type, body) for a container's own 4xx."""
    response = exc.response
    code = response.get("Error", {}).get("Code", "")
    message = str(response.get("Error", {}).get("Message", ""))
    if code == "ModelError":
        original = _field(response, "OriginalStatusCode")
        try:
            status = int(original)
        except (TypeError, ValueError):
            status = 0
        if 400 <= status < 500:
            original_message = _field(response, "OriginalMessage")
            if not original_message:
                # Not SageMaker's Message instead: it names the account and links its CloudWatch logs.
                return HttpError(status, "ModelError", f"the model refused the request (status {status})")
            body = scrub_body(str(original_message))
            try:
                json.loads(body)
                media = "application/json"
            except ValueError:
                media = "text/plain; charset=utf-8"
            return status, media, body
        what = "timed out" if status == 0 else f"failed with status {status}"
        return HttpError(502, "ModelError", f"the model {what}")
    if code in ("ModelNotReadyException", "ServiceUnavailable", "ServiceUnavailableException"):
        return HttpError(503, code, "the model is not ready; retry shortly", {"Retry-After": "1"})
    if "Throttl" in code or code in ("TooManyRequestsException", "RequestLimitExceeded"):
        return HttpError(429, code, "too many requests; retry with backoff", {"Retry-After": "1"})
    if code in ("ValidationError", "ValidationException"):
        return HttpError(400, "ValidationError", scrub(message))
    return HttpError(502, scrub(code) or "UpstreamError", "SageMaker could not answer")


def _text_or_base64(body: bytes, content_type: str) -> tuple[str, bool]:
    if _media_type(content_type).startswith(TEXT_TYPES):
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode("ascii"), True


def _error(err: HttpError, request_id: str) -> dict[str, Any]:
    body = {"error": err.code, "message": err.message, "request_id": request_id}
    return {
        "statusCode": err.status,
        "headers": {"Content-Type": "application/json", **err.headers},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request_id = str(getattr(context, "aws_request_id", "") or "")
    started = time.monotonic()
    outcome = "ok"
    status = 500
    try:
        kwargs = _parse(event)
        try:
            response = _runtime().invoke_endpoint(**kwargs)
        except ClientError as exc:
            mapped = _map_client_error(exc)
            outcome = exc.response.get("Error", {}).get("Code", "ClientError")
            if isinstance(mapped, HttpError):
                raise mapped from None
            status, media, text = mapped
            return {"statusCode": status, "headers": {"Content-Type": media}, "body": text, "isBase64Encoded": False}
        except (ReadTimeoutError, ConnectTimeoutError) as exc:
            outcome = type(exc).__name__
            raise HttpError(502, "Timeout", "the model did not answer in time") from None
        except EndpointConnectionError as exc:
            outcome = type(exc).__name__
            raise HttpError(502, "UpstreamError", "SageMaker could not be reached") from None
        content_type = response.get("ContentType") or "application/octet-stream"
        text, is_b64 = _text_or_base64(response["Body"].read(), content_type)
        headers = {"Content-Type": content_type}
        if response.get("CustomAttributes"):
            headers[CUSTOM_ATTRIBUTES] = response["CustomAttributes"]
        if response.get("InvokedProductionVariant"):
            headers["X-Amzn-Invoked-Production-Variant"] = response["InvokedProductionVariant"]
        status = 200
        return {"statusCode": 200, "headers": headers, "body": text, "isBase64Encoded": is_b64}
    except HttpError as err:
        status = err.status
        if outcome == "ok":
            outcome = err.code
        return _error(err, request_id)
    except Exception:
        LOG.exception("unexpected error (request %s)", request_id)
        outcome = "InternalError"
        return _error(HttpError(500, "InternalError", "internal error"), request_id)
    finally:
        LOG.info(
            json.dumps(
                {
                    "request_id": request_id,
                    "status": status,
                    "outcome": outcome,
                    "body_bytes": len(event.get("body") or ""),
                    "ms": round((time.monotonic() - started) * 1000),
                }
            )
        )
