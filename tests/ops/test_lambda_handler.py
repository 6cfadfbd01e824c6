"""The API Lambda: REST (v1) and HTTP API (v2) events, pass-through, validation, error mapping, logs."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from ops.apigw import handler as lam
from support import loopback
from support.loopback import QuietHandler

ENDPOINT = "textclf-test"
SECRETS = ("SECRET-KEY-123", "Bearer SECRET-TOKEN", "user=SECRET-ATTR", "SECRET-BODY")


class Context:
    aws_request_id = "req-1"


def v1_event(
    body: str | bytes = '{"inputs": ["hi"]}',
    headers: dict[str, str] | None = None,
    b64: bool = False,
    method: str = "POST",
) -> dict[str, Any]:
    raw = body if isinstance(body, bytes) else body.encode()
    return {
        "resource": "/invocations",
        "path": "/invocations",
        "httpMethod": method,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "multiValueHeaders": {},
        "requestContext": {"requestId": "r", "stage": "v1"},
        "body": base64.b64encode(raw).decode() if b64 else raw.decode(),
        "isBase64Encoded": b64,
    }


def v2_event(
    body: str | bytes = '{"inputs": ["hi"]}',
    headers: dict[str, str] | None = None,
    b64: bool = False,
    method: str = "POST",
) -> dict[str, Any]:
    raw = body if isinstance(body, bytes) else body.encode()
    return {
        "version": "2.0",
        "routeKey": "POST /invocations",
        "rawPath": "/invocations",
        "headers": {"content-type": "application/json", **{k.lower(): v for k, v in (headers or {}).items()}},
        "requestContext": {"http": {"method": method, "path": "/invocations"}, "requestId": "r"},
        "body": base64.b64encode(raw).decode() if b64 else raw.decode(),
        "isBase64Encoded": b64,
    }


EVENTS = pytest.mark.parametrize("make", [v1_event, v2_event], ids=["rest-v1", "http-v2"])


@pytest.fixture(autouse=True)
def lambda_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("ENDPOINT_NAME", ENDPOINT)
    monkeypatch.setattr(lam, "_client", None)
    yield


@pytest.fixture
def stub() -> Iterator[Stubber]:
    client = lam._runtime()
    with Stubber(client) as s:
        yield s
        s.assert_no_pending_responses()


def _ok(
    stub: Stubber,
    expected: dict[str, Any],
    body: bytes = b'[{"label": "pos", "score": 0.9}]',
    content_type: str = "application/json",
    attributes: str | None = "trace=abc",
) -> None:
    response: dict[str, Any] = {
        "Body": StreamingBody(io.BytesIO(body), len(body)),
        "ContentType": content_type,
        "InvokedProductionVariant": "AllTraffic",
    }
    if attributes:
        response["CustomAttributes"] = attributes
    stub.add_response("invoke_endpoint", response, expected)


@EVENTS
def test_success_passes_headers_through_and_back(make: Any, stub: Stubber) -> None:
    body = '{"inputs": ["great"]}'
    _ok(
        stub,
        {
            "EndpointName": ENDPOINT,
            "Body": body.encode(),
            "ContentType": "application/json",
            "Accept": "application/jsonlines",
            "CustomAttributes": "threshold=0.7",
        },
    )
    event = make(body, {"Accept": "application/jsonlines", "X-Amzn-SageMaker-Custom-Attributes": "threshold=0.7"})
    result = lam.handler(event, Context())
    assert result["statusCode"] == 200
    assert json.loads(result["body"]) == [{"label": "pos", "score": 0.9}]
    assert result["isBase64Encoded"] is False
    assert result["headers"]["Content-Type"] == "application/json"
    assert result["headers"]["X-Amzn-SageMaker-Custom-Attributes"] == "trace=abc"
    assert result["headers"]["X-Amzn-Invoked-Production-Variant"] == "AllTraffic"


@EVENTS
def test_base64_bodies_are_decoded(make: Any, stub: Stubber) -> None:
    body = '{"inputs": "ünïcode"}\n{"inputs": "zwei"}\n'.encode()
    _ok(
        stub,
        {
            "EndpointName": ENDPOINT,
            "Body": body,
            "ContentType": "application/jsonlines; charset=utf-8",
            "Accept": "application/jsonlines; charset=utf-8",
        },
        attributes=None,
    )
    event = make(body, {"Content-Type": "application/jsonlines; charset=utf-8"}, b64=True)
    result = lam.handler(event, Context())
    assert result["statusCode"] == 200
    assert "X-Amzn-SageMaker-Custom-Attributes" not in result["headers"]


def test_binary_answers_go_back_base64(stub: Stubber) -> None:
    payload = bytes(range(256))
    _ok(
        stub,
        {"EndpointName": ENDPOINT, "Body": b"{}", "ContentType": "application/json", "Accept": "application/x-npy"},
        body=payload,
        content_type="application/x-npy",
    )
    result = lam.handler(v1_event("{}", {"Accept": "application/x-npy"}), Context())
    assert result["isBase64Encoded"] is True and base64.b64decode(result["body"]) == payload


def test_multi_value_headers_of_rest_events(stub: Stubber) -> None:
    _ok(
        stub,
        {
            "EndpointName": ENDPOINT,
            "Body": b"{}",
            "ContentType": "application/json",
            "Accept": "text/csv",
            "CustomAttributes": "a=1",
        },
    )
    event = v1_event("{}")
    event["multiValueHeaders"] = {"Accept": ["text/csv"], "X-Amzn-SageMaker-Custom-Attributes": ["a=1"]}
    assert lam.handler(event, Context())["statusCode"] == 200


def _error(stub: Stubber, code: str, http: int, fields: dict[str, Any] | None = None, message: str = "m") -> None:
    stub.add_client_error(
        "invoke_endpoint",
        service_error_code=code,
        service_message=message,
        http_status_code=http,
        modeled_fields=fields,
    )


@EVENTS
@pytest.mark.parametrize("status", [400, 404, 413, 422])
def test_container_4xx_keeps_its_status_and_body(make: Any, stub: Stubber, status: int) -> None:
    original = json.dumps({"error": "BadRequest", "message": f"rule failed ({status})"})
    _error(stub, "ModelError", 424, {"OriginalStatusCode": status, "OriginalMessage": original})
    result = lam.handler(make(), Context())
    assert result["statusCode"] == status
    assert json.loads(result["body"]) == json.loads(original)
    assert result["headers"]["Content-Type"] == "application/json"


def test_container_4xx_with_a_plain_text_body(stub: Stubber) -> None:
    _error(stub, "ModelError", 424, {"OriginalStatusCode": 415, "OriginalMessage": "unsupported"})
    result = lam.handler(v1_event(), Context())
    assert (result["statusCode"], result["body"]) == (415, "unsupported")
    assert result["headers"]["Content-Type"].startswith("text/plain")


@EVENTS
@pytest.mark.parametrize(
    ("code", "http", "fields", "status"),
    [
        ("ModelError", 424, {"OriginalStatusCode": 500, "OriginalMessage": "Traceback ..."}, 502),
        ("ModelError", 424, {"OriginalStatusCode": 503}, 502),
        ("ModelError", 424, {"OriginalStatusCode": 0, "OriginalMessage": "timed out"}, 502),  # container timeout
        ("ThrottlingException", 400, None, 429),
        ("ModelNotReadyException", 429, None, 503),
        ("ServiceUnavailable", 503, None, 503),
        ("ValidationError", 400, None, 400),
        ("InternalFailure", 500, None, 502),
    ],
)
def test_error_mapping(make: Any, stub: Stubber, code: str, http: int, fields: Any, status: int) -> None:
    _error(stub, code, http, fields, message="Endpoint textclf-test of account 123456789012 not found.")
    result = lam.handler(make(), Context())
    assert result["statusCode"] == status
    body = json.loads(result["body"])
    assert body["request_id"] == "req-1" and body["error"]
    assert "Traceback" not in result["body"]  # a container's 5xx text is not echoed
    assert "123456789012" not in result["body"]  # nor the account id
    if status in (429, 503):
        assert result["headers"]["Retry-After"] == "1"


@EVENTS
@pytest.mark.parametrize(
    ("headers", "body", "b64", "status"),
    [
        ({"Content-Type": "application/x-www-form-urlencoded"}, "a=1", False, 415),
        ({"Content-Type": ""}, "{}", False, 415),
        ({}, "x" * (lam.MAX_BODY_BYTES + 1), False, 413),
        ({}, b"x" * (lam.MAX_BODY_BYTES + 1), True, 413),
        ({}, "", False, 400),
        ({"X-Amzn-SageMaker-Custom-Attributes": "x" * 1025}, "{}", False, 400),
        ({"X-Amzn-SageMaker-Custom-Attributes": "naïve"}, "{}", False, 400),
    ],
)
def test_refused_before_calling_sagemaker(
    make: Any, stub: Stubber, headers: dict[str, str], body: Any, b64: bool, status: int
) -> None:
    result = lam.handler(make(body, headers, b64=b64), Context())  # the stub holds no response: any call fails
    assert result["statusCode"] == status, result
    assert json.loads(result["body"])["message"]


def test_bad_base64_and_wrong_method(stub: Stubber) -> None:
    event = v1_event("{}")
    event.update(body="not base64!!", isBase64Encoded=True)
    assert lam.handler(event, Context())["statusCode"] == 400
    result = lam.handler(v2_event(method="GET"), Context())
    assert result["statusCode"] == 405 and result["headers"]["Allow"] == "POST"


def test_allowed_content_types_come_from_the_environment(stub: Stubber, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLOWED_CONTENT_TYPES", "text/csv")
    assert lam.handler(v1_event(), Context())["statusCode"] == 415


class _SlowModel(QuietHandler):
    hits = 0

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        type(self).hits += 1
        time.sleep(1.5)
        self.send_response(200)
        self.end_headers()


def test_read_timeout_is_a_502_and_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    """A real socket timeout against a slow server on the loopback interface."""
    with loopback.serve(_SlowModel) as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", url)
        monkeypatch.setenv("SAGEMAKER_READ_TIMEOUT_S", "0.3")
        started = time.monotonic()
        result = lam.handler(v1_event(), Context())
        assert result["statusCode"] == 502
        assert json.loads(result["body"])["error"] == "Timeout"
        assert time.monotonic() - started < 1.4
        assert lam._runtime().meta.config.read_timeout == 0.3
        assert _SlowModel.hits == 1


def test_default_read_timeout_is_70_seconds() -> None:
    assert lam._runtime().meta.config.read_timeout == 70


def test_logs_hold_no_secrets(stub: Stubber, caplog: pytest.LogCaptureFixture) -> None:
    _ok(
        stub,
        {
            "EndpointName": ENDPOINT,
            "Body": b'{"inputs": "SECRET-BODY"}',
            "ContentType": "application/json",
            "Accept": "application/json",
            "CustomAttributes": "user=SECRET-ATTR",
        },
    )
    _error(stub, "ModelError", 424, {"OriginalStatusCode": 400, "OriginalMessage": "{}"})
    headers = {
        "x-api-key": "SECRET-KEY-123",
        "Authorization": "Bearer SECRET-TOKEN",
        "X-Amzn-SageMaker-Custom-Attributes": "user=SECRET-ATTR",
    }
    with caplog.at_level(logging.DEBUG):
        assert lam.handler(v1_event('{"inputs": "SECRET-BODY"}', headers), Context())["statusCode"] == 200
        assert lam.handler(v2_event('{"inputs": "SECRET-BODY"}', headers), Context())["statusCode"] == 400
        lam.handler(v1_event("x", {"Content-Type": "SECRET-BODY"}), Context())
    assert caplog.records, "the handler logs one line per request"
    for secret in SECRETS:
        assert secret not in caplog.text
    assert '"status": 200' in caplog.text and '"request_id": "req-1"' in caplog.text


@EVENTS
@pytest.mark.parametrize(
    ("content_type", "accept"),
    [
        ("text/plain", "application/json"),  # the container writes no text/plain: JSON, not a 406
        ("text/plain; charset=utf-8", "application/json"),
        ("application/json", "application/json"),
        ("application/jsonlines", "application/jsonlines"),
        ("text/csv", "text/csv"),
    ],
)
def test_a_missing_accept_defaults_to_a_type_the_container_writes(
    make: Any, stub: Stubber, monkeypatch: pytest.MonkeyPatch, content_type: str, accept: str
) -> None:
    monkeypatch.setenv("ALLOWED_CONTENT_TYPES", lam.DEFAULT_CONTENT_TYPES)
    _ok(stub, {"EndpointName": ENDPOINT, "Body": b"hi", "ContentType": content_type, "Accept": accept}, attributes=None)
    event = make("hi", {"Content-Type": content_type})
    assert lam.handler(event, Context())["statusCode"] == 200
    stub.assert_no_pending_responses()


def test_an_explicit_accept_is_passed_as_it_is(stub: Stubber) -> None:
    expected = {"EndpointName": ENDPOINT, "Body": b"hi", "ContentType": "text/plain", "Accept": "text/csv"}
    _ok(stub, expected, attributes=None)
    assert (
        lam.handler(v1_event("hi", {"Content-Type": "text/plain", "Accept": "text/csv"}), Context())["statusCode"]
        == 200
    )


@pytest.mark.parametrize("content_type", [*sorted(lam.DEFAULT_CONTENT_TYPES.split(",")), "application/x-jsonlines"])
def test_the_default_accept_is_one_the_container_answers(content_type: str) -> None:
    """The contract, checked against the container's own negotiation (textclf.serve.codecs)."""
    from textclf.serve import codecs

    accept = lam._default_accept(content_type)
    media = codecs.parse_media_type(content_type)[0]
    assert codecs.negotiate(accept, media) in codecs.RESPONSE_TYPES  # raises (406) if it cannot answer


# -- no account details in any answer ------------------------------------------------------------------------
ACCOUNT = "123456789012"
CONSOLE = (
    "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#logEventViewer:"
    f"group=/aws/sagemaker/Endpoints/{ENDPOINT}"
)
ROLE = f"arn:aws:sts::{ACCOUNT}:assumed-role/textclf-api-FunctionRole-X/textclf-api-invoke"
ENDPOINT_ARN = f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:endpoint/{ENDPOINT}"
# Every kind of account detail SageMaker's (and IAM's) messages carry, in one message.
LEAKY = (
    f"User: {ROLE} is not authorized to perform: sagemaker:InvokeEndpoint on resource: {ENDPOINT_ARN}. "
    f"See {CONSOLE} in account {ACCOUNT} for more information; log stream /aws/sagemaker/Endpoints/{ENDPOINT}"
    f"/AllTraffic/i-0abc, model s3://textclf-{ACCOUNT}-eu-west-1/m/model.tar.gz, "
    f"host runtime.sagemaker.eu-west-1.amazonaws.com"
)
_STANDALONE_12_DIGITS = re.compile(r"(?<![A-Za-z0-9])[0-9]{12}(?![A-Za-z0-9])")


def assert_no_account_details(result: dict[str, Any]) -> None:
    """No 12-digit number standing alone, no ARN, no AWS link or host, no /aws/ log name, anywhere."""
    shown = json.dumps(result)
    assert not _STANDALONE_12_DIGITS.search(shown), shown
    assert not re.search(r"\barn:", shown), shown
    for leak in ("amazonaws.com", "aws.amazon.com", "/aws/", "s3://", "cloudwatch"):
        assert leak not in shown, (leak, shown)


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        (
            f"Endpoint {ENDPOINT} of account {ACCOUNT} not found.",
            f"Endpoint {ENDPOINT} of account <account> not found.",
        ),
        (f"See {CONSOLE} in account {ACCOUNT} for more.", "See <url> in account <account> for more."),
        (f"on resource: {ENDPOINT_ARN}.", "on resource: <arn>."),
        (f"(arn:aws-cn:iam::{ACCOUNT}:role/r), next", "(<arn>), next"),
        (f"group /aws/sagemaker/Endpoints/{ENDPOINT}, stream x", "group <log-group>, stream x"),
        ("at textclf.s3.eu-west-1.amazonaws.com/k now", "at <url> now"),
        (f"bucket textclf-{ACCOUNT}-eu-west-1", "bucket textclf-<account>-eu-west-1"),
        # what is no account detail stays: other lengths, digits inside a longer token, words with "arn"
        ("request 0123456789ab123456789012abcdef00 of 1234567890123 items", None),
        ("warn: 12345678901 is not 12 digits", None),
        ("", None),
    ],
)
def test_scrub(text: str, scrubbed: str | None) -> None:
    assert lam.scrub(text) == (text if scrubbed is None else scrubbed)


def test_scrub_body_keeps_a_clean_body_as_it_is_and_json_as_json() -> None:
    clean = '{"error":  {"code": 400, "message": "bad \\u00e9"}}'  # spacing and escapes kept byte for byte
    assert lam.scrub_body(clean) == clean
    leaky = json.dumps({"error": {"code": 422, "message": LEAKY, "account": int(ACCOUNT), ACCOUNT: [ENDPOINT_ARN]}})
    scrubbed = json.loads(lam.scrub_body(leaky))  # still JSON
    assert scrubbed["error"]["code"] == 422 and scrubbed["error"]["account"] == "<account>"
    assert scrubbed["error"]["<account>"] == ["<arn>"]
    assert scrubbed["error"]["message"] == lam.scrub(LEAKY)
    assert lam.scrub_body(f"plain {ENDPOINT_ARN}") == "plain <arn>"


@EVENTS
@pytest.mark.parametrize(
    ("code", "http", "fields", "status", "message"),
    [
        ("ValidationError", 400, None, 400, lam.scrub(LEAKY)),  # the one SageMaker message passed on
        ("ThrottlingException", 400, None, 429, "too many requests; retry with backoff"),
        ("ModelNotReadyException", 429, None, 503, "the model is not ready; retry shortly"),
        ("ServiceUnavailable", 503, None, 503, "the model is not ready; retry shortly"),
        ("InternalFailure", 500, None, 502, "SageMaker could not answer"),
        ("AccessDeniedException", 400, None, 502, "SageMaker could not answer"),
        (
            "ModelError",
            424,
            {"OriginalStatusCode": 500, "OriginalMessage": LEAKY},
            502,
            "the model failed with status 500",
        ),
        ("ModelError", 424, {"OriginalStatusCode": 0, "OriginalMessage": LEAKY}, 502, "the model timed out"),
        ("ModelError", 424, {"OriginalStatusCode": 404, "OriginalMessage": ""}, 404, None),
    ],
)
def test_no_error_answer_carries_account_details(
    make: Any, stub: Stubber, code: str, http: int, fields: Any, status: int, message: str | None
) -> None:
    if fields:  # a ModelError also names its log stream (an ARN) as a member
        fields = {**fields, "LogStreamArn": f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:/aws/sagemaker/Endpoints/x"}
    _error(stub, code, http, fields, LEAKY)
    result = lam.handler(make(), Context())
    assert result["statusCode"] == status
    body = json.loads(result["body"])
    assert body["error"] == code and body["request_id"] == "req-1"
    if message is not None:
        assert body["message"] == message
    assert_no_account_details(result)


@pytest.mark.parametrize(
    ("original", "media"),
    [
        (json.dumps({"error": {"code": 422, "message": LEAKY, "request_id": "abc"}}), "application/json"),
        (LEAKY, "text/plain; charset=utf-8"),
    ],
    ids=["json", "text"],
)
def test_a_container_4xx_body_is_scrubbed_and_keeps_its_status(stub: Stubber, original: str, media: str) -> None:
    _error(stub, "ModelError", 424, {"OriginalStatusCode": 422, "OriginalMessage": original}, LEAKY)
    result = lam.handler(v1_event(), Context())
    assert (result["statusCode"], result["headers"]["Content-Type"]) == (422, media)
    if media == "application/json":
        assert json.loads(result["body"])["error"]["message"] == lam.scrub(LEAKY)
    assert_no_account_details(result)
