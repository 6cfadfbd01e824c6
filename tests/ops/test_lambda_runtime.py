"""The API Lambda with boto3's real ``sagemaker-runtime`` client, against the real serving stack.

test_lambda_handler.py checks the handler's mapping with botocore's Stubber, i.e. with error shapes
we wrote. Here nothing of botocore is replaced: the handler's own ``_runtime()`` client serialises,
signs and sends ``InvokeEndpoint`` to a local stand-in of SageMaker's front end
(support/invoke_endpoint_standin.py, which documents what it mirrors and what is our reading), which
forwards to the project's real nginx -> gunicorn -> Flask stack serving a really exported tiny model
and wraps its errors as SageMaker does; botocore parses the answers into the exceptions the handler
maps. One stack and one stand-in for the module.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from ops.apigw import handler as lam
from support.aws import REGION
from support.invoke_endpoint_standin import (
    ACCOUNT,
    CUSTOM_ATTRIBUTES,
    MAX_BODY_BYTES,
    VARIANT,
    InvokeEndpointStandIn,
    Seen,
    error_reply,
)
from support.serving import SINGLE_LABELS, ServeProcess, export_serving_model, make_sm_root

ENDPOINT = "textclf-test"
CONTAINER_TIMEOUT_S = 1.5  # the stand-in's stand-in for SageMaker's 60 s container limit
HOOK_SLEEP_S = 4.0  # longer than every timeout below: only a timeout can end such a request early
# Hooks that make the real container answer a 422, a 500 or late, on request (custom attributes).
MODEL_RULES = """
    import time

    from textclf.errors import RuleRejection


    def before(texts, context):
        if any("forbidden" in text for text in texts):
            raise RuleRejection("texts must not mention forbidden things", status=422)
        if any("leak" in text for text in texts):  # a hook whose message names AWS resources
            raise RuleRejection(LEAK, status=409)
        if "sleep" in context.attributes:
            time.sleep(float(context.attributes["sleep"]))
        return texts


    def after(texts, predictions, context):
        if context.attributes.get("boom") == "1":
            raise RuntimeError("a bug in the hook")
        forced = context.attributes.get("force_label")
        if forced:
            for result in predictions:
                result[0]["label"] = forced
            context.response_attributes["rules"] = "forced"
        return predictions
"""
# What SageMaker adds to its errors and the API caller must never see.
LEAKS = (ACCOUNT, "arn:aws", "cloudwatch", "Received client error", "Received server error")
LEAKS += ("amazonaws.com", "aws.amazon.com", "/aws/", "s3://")
_STANDALONE_12_DIGITS = re.compile(r"(?<![A-Za-z0-9])[0-9]{12}(?![A-Za-z0-9])")  # not digits inside a hex id
# Every kind of account detail in one message: an IAM principal and a resource ARN, a CloudWatch console
# link, a log group and stream, a bucket named after the account, a regional host, the account id.
LEAKY = (
    f"User: arn:aws:sts::{ACCOUNT}:assumed-role/textclf-api-FunctionRole-X/textclf-api-invoke is not authorized "
    f"to perform: sagemaker:InvokeEndpoint on resource: arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{ENDPOINT}. "
    f"See https://{REGION}.console.aws.amazon.com/cloudwatch/home?region={REGION}#logEventViewer:group="
    f"/aws/sagemaker/Endpoints/{ENDPOINT} in account {ACCOUNT}; stream /aws/sagemaker/Endpoints/{ENDPOINT}/"
    f"AllTraffic/i-0abc, model s3://textclf-{ACCOUNT}-{REGION}/m/model.tar.gz, "
    f"host runtime.sagemaker.{REGION}.amazonaws.com"
)


class Context:
    aws_request_id = "req-rt"


@pytest.fixture(scope="module")
def container(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    work = tmp_path_factory.mktemp("lambda-runtime")
    model_dir = export_serving_model(work / "models", "single", SINGLE_LABELS)
    rules = MODEL_RULES.replace("LEAK,", f"{LEAKY!r},")
    root = make_sm_root(model_dir, work / "opt-ml", rules)
    with ServeProcess(root, work / "logs", workers=2) as serve:
        serve.wait_ready()
        yield serve


@pytest.fixture(scope="module")
def standin(container: ServeProcess) -> Iterator[InvokeEndpointStandIn]:
    with InvokeEndpointStandIn(container.url(""), ENDPOINT, REGION, CONTAINER_TIMEOUT_S) as server:
        yield server


@pytest.fixture(autouse=True)
def real_client(aws_environment: None, standin: InvokeEndpointStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    """The handler builds its own client (fake credentials and region from aws_environment), pointed
    at the stand-in through the service-specific endpoint variable boto3 honours."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", standin.url)
    monkeypatch.setenv("ENDPOINT_NAME", ENDPOINT)
    monkeypatch.setenv("SAGEMAKER_READ_TIMEOUT_S", "10")
    monkeypatch.setattr(lam, "_client", None)


def event(
    body: str | bytes, content_type: str = "application/json", headers: dict[str, str] | None = None, v2: bool = False
) -> dict[str, Any]:
    """An API Gateway proxy event (REST v1, or HTTP API v2 with its lower-cased header names)."""
    text = body.decode() if isinstance(body, bytes) else body
    all_headers = {"Content-Type": content_type, **(headers or {})}
    if v2:
        return {
            "version": "2.0",
            "headers": {k.lower(): v for k, v in all_headers.items()},
            "requestContext": {"http": {"method": "POST", "path": "/invocations"}},
            "body": text,
            "isBase64Encoded": False,
        }
    return {"httpMethod": "POST", "headers": all_headers, "body": text, "isBase64Encoded": False}


def call(standin: InvokeEndpointStandIn, request: dict[str, Any]) -> tuple[dict[str, Any], list[Seen], float]:
    """The handler's answer, the requests the stand-in got meanwhile, and the seconds it took."""
    mark = standin.mark()
    started = time.monotonic()
    result = lam.handler(request, Context())
    return result, standin.seen_since(mark), time.monotonic() - started


def assert_no_leaks(result: dict[str, Any]) -> None:
    """No account id (no 12-digit number standing alone), no ARN, no AWS link, host or log name."""
    shown = json.dumps(result)
    for leak in LEAKS:
        assert leak not in shown, (leak, shown)
    assert not _STANDALONE_12_DIGITS.search(shown), shown
    assert not re.search(r"\barn:", shown), shown


# -- success ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("v2", [False, True], ids=["rest-v1", "http-v2"])
def test_json_passes_through_unchanged(standin: InvokeEndpointStandIn, container: ServeProcess, v2: bool) -> None:
    body = json.dumps({"inputs": ["a great film", "an awful plot"], "parameters": {"top_k": None}})
    result, seen, _ = call(standin, event(body, v2=v2))
    assert result["statusCode"] == 200, result
    direct = requests.post(
        container.url("/invocations"), data=body, headers={"Content-Type": "application/json"}, timeout=30
    )
    assert json.loads(result["body"]) == direct.json()  # the container's own answer, untouched
    predictions = json.loads(result["body"])
    assert len(predictions) == 2 and all(sorted(e["label"] for e in r) == sorted(SINGLE_LABELS) for r in predictions)
    assert result["headers"]["Content-Type"] == "application/json" and result["isBase64Encoded"] is False
    assert result["headers"]["X-Amzn-Invoked-Production-Variant"] == VARIANT
    assert CUSTOM_ATTRIBUTES not in result["headers"]
    # what botocore put on the wire: the operation's URI, the headers, a SigV4 signature for SageMaker
    [request] = seen
    assert request.path == f"/endpoints/{ENDPOINT}/invocations"
    assert request.headers["content-type"] == "application/json" and request.headers["accept"] == "application/json"
    assert request.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=testing/")
    assert f"/{REGION}/sagemaker/aws4_request" in request.headers["authorization"]
    assert request.body_bytes == len(body) and request.container_status == 200


def test_text_plain_gets_json_back(standin: InvokeEndpointStandIn) -> None:
    """Asked as it is, the container would answer text/plain with JSON Lines; the handler asks for JSON."""
    result, [request], _ = call(standin, event("a great film\nan awful plot\n", "text/plain"))
    assert result["statusCode"] == 200, result
    assert request.headers["accept"] == "application/json"
    assert result["headers"]["Content-Type"] == "application/json"
    predictions = json.loads(result["body"])  # two JSON Lines would not parse as one document
    assert len(predictions) == 2 and all(r[0]["label"] in SINGLE_LABELS for r in predictions)


def test_custom_attributes_pass_through_both_ways(standin: InvokeEndpointStandIn) -> None:
    attributes = "force_label=spam;trace=abc-123"
    body = json.dumps({"inputs": ["a", "b"], "parameters": {"top_k": 2}})
    result, [request], _ = call(standin, event(body, headers={CUSTOM_ATTRIBUTES: attributes}))
    assert result["statusCode"] == 200, result
    assert request.headers[CUSTOM_ATTRIBUTES.lower()] == attributes  # reached the container...
    assert [r[0]["label"] for r in json.loads(result["body"])] == ["spam", "spam"]  # ...whose hook read them
    assert result["headers"][CUSTOM_ATTRIBUTES] == attributes + ";rules=forced"  # and the hook's reply came back


# -- the container's errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "content_type", "headers", "status", "fragment"),
    [
        ('{"inputs": ["a", ', "application/json", {}, 400, "malformed JSON"),
        ('{"inputs": "x"}', "application/json", {"Accept": "text/html"}, 406, "cannot answer with Accept"),
        ("a=b", "application/x-www-form-urlencoded", {}, 415, "unsupported Content-Type"),
        (
            '{"inputs": "x"}',
            "application/json",
            {CUSTOM_ATTRIBUTES: "top_k=many"},
            400,
            "custom attribute top_k='many'",
        ),
        ('{"inputs": ["a forbidden text"]}', "application/json", {}, 422, "must not mention forbidden things"),
    ],
    ids=["malformed-json", "unanswerable-accept", "unsupported-type", "bad-custom-attribute", "rule-rejection"],
)
def test_a_container_4xx_reaches_the_caller_with_its_status_and_message(
    standin: InvokeEndpointStandIn,
    monkeypatch: pytest.MonkeyPatch,
    body: str,
    content_type: str,
    headers: dict[str, str],
    status: int,
    fragment: str,
) -> None:
    monkeypatch.setenv("ALLOWED_CONTENT_TYPES", f"{lam.DEFAULT_CONTENT_TYPES},application/x-www-form-urlencoded")
    result, [request], _ = call(standin, event(body, content_type, headers))
    assert request.container_status == status and request.reply is not None and request.reply.status == 424
    assert result["statusCode"] == status, result
    assert result["headers"]["Content-Type"] == "application/json"
    assert result["body"] == request.container_body.decode()  # the container's own words, as OriginalMessage
    error = json.loads(result["body"])["error"]
    assert error["code"] == status and fragment in error["message"]
    assert_no_leaks(result)


@pytest.mark.parametrize(
    ("body", "attributes", "original", "prefix"),
    [
        ('{"inputs": ["a", ', None, 400, 'Received client error (400) from primary with message "{'),
        ('{"inputs": "x"}', "boom=1", 500, 'Received server error (500) from primary with message "{'),
        ('{"inputs": "x"}', f"sleep={HOOK_SLEEP_S}", 0, 'Received server error (0) from primary with message "Your'),
    ],
    ids=["4xx", "5xx", "timeout"],
)
def test_botocore_raises_model_error_with_the_original_fields(
    standin: InvokeEndpointStandIn, body: str, attributes: str | None, original: int, prefix: str
) -> None:
    """The stand-in's wire format, checked against botocore's parser: the exception class, the code,
    and the modelled members at the top level of ``response``, where the handler reads them."""
    client = lam._runtime()
    extra = {"CustomAttributes": attributes} if attributes else {}
    with pytest.raises(client.exceptions.ModelError) as raised:
        client.invoke_endpoint(EndpointName=ENDPOINT, Body=body.encode(), ContentType="application/json", **extra)
    response = raised.value.response
    assert response["Error"]["Code"] == "ModelError"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert response["OriginalStatusCode"] == original
    assert response["LogStreamArn"] == standin.log_stream_arn()
    assert response["Error"]["Message"].startswith(prefix)
    assert f"in account {ACCOUNT} for more information." in response["Error"]["Message"]
    if original:
        assert json.loads(response["OriginalMessage"])["error"]["code"] == original
    else:
        assert response["OriginalMessage"].startswith("Your invocation timed out")


def test_a_container_5xx_is_a_502_without_the_containers_text(standin: InvokeEndpointStandIn) -> None:
    result, [request], _ = call(standin, event('{"inputs": "x"}', headers={CUSTOM_ATTRIBUTES: "boom=1"}))
    assert request.container_status == 500
    container_error = json.loads(request.container_body)["error"]
    assert result["statusCode"] == 502, result
    body = json.loads(result["body"])
    assert (body["error"], body["message"], body["request_id"]) == (
        "ModelError",
        "the model failed with status 500",
        "req-rt",
    )
    assert container_error["request_id"] not in result["body"]  # the container's message stays in its logs
    assert_no_leaks(result)


def test_an_empty_container_4xx_message_does_not_become_sagemakers_message(standin: InvokeEndpointStandIn) -> None:
    """A container 4xx without a body: botocore gives OriginalMessage "", and SageMaker's Message
    (account id, CloudWatch link) must not stand in for it."""
    with standin.answering(standin.model_error(404, "")):
        result, [_], _ = call(standin, event('{"inputs": "x"}'))
    assert result["statusCode"] == 404, result
    assert json.loads(result["body"])["error"] == "ModelError"
    assert_no_leaks(result)


# -- timeouts ------------------------------------------------------------------------------------------------
def test_a_container_timeout_is_sagemakers_model_error_and_a_502(standin: InvokeEndpointStandIn) -> None:
    """SageMaker gives up on the container (here after CONTAINER_TIMEOUT_S) long before the client's
    10 s read timeout: the handler maps the ModelError with status 0, not a socket timeout."""
    result, [request], elapsed = call(
        standin, event('{"inputs": "x"}', headers={CUSTOM_ATTRIBUTES: f"sleep={HOOK_SLEEP_S}"})
    )
    assert request.container_status == 0
    assert result["statusCode"] == 502, result
    body = json.loads(result["body"])
    assert (body["error"], body["message"]) == ("ModelError", "the model timed out")
    assert CONTAINER_TIMEOUT_S <= elapsed < HOOK_SLEEP_S, elapsed


def test_the_clients_read_timeout_is_a_502_and_is_not_retried(
    standin: InvokeEndpointStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The handler's SAGEMAKER_READ_TIMEOUT_S ends the wait before the stand-in's ModelError would
    come (CONTAINER_TIMEOUT_S): the answer is the handler's own Timeout, after a single attempt."""
    monkeypatch.setenv("SAGEMAKER_READ_TIMEOUT_S", "0.3")
    result, seen, elapsed = call(
        standin, event('{"inputs": "x"}', headers={CUSTOM_ATTRIBUTES: f"sleep={HOOK_SLEEP_S}"})
    )
    assert result["statusCode"] == 502, result
    body = json.loads(result["body"])
    assert (body["error"], body["message"]) == ("Timeout", "the model did not answer in time")
    assert 0.3 <= elapsed < CONTAINER_TIMEOUT_S, elapsed
    assert len(seen) == 1  # no retry
    assert lam._runtime().meta.config.read_timeout == 0.3


# -- sizes ---------------------------------------------------------------------------------------------------
def padded(size: int) -> str:
    """A valid JSON request of exactly ``size`` bytes (JSON allows trailing whitespace)."""
    head = '{"inputs": "a great film"}'
    return head + " " * (size - len(head))


def test_the_largest_body_passes_and_one_byte_more_is_the_handlers_413(standin: InvokeEndpointStandIn) -> None:
    assert lam.MAX_BODY_BYTES == MAX_BODY_BYTES  # the handler's limit is InvokeEndpoint's
    result, [request], _ = call(standin, event(padded(MAX_BODY_BYTES)))
    assert result["statusCode"] == 200, result["body"][:500]
    assert request.body_bytes == MAX_BODY_BYTES and request.container_status == 200
    assert json.loads(result["body"])[0]["label"] in SINGLE_LABELS
    result, seen, _ = call(standin, event(padded(MAX_BODY_BYTES + 1)))
    assert result["statusCode"] == 413 and json.loads(result["body"])["error"] == "PayloadTooLarge"
    assert seen == []  # refused before any call


def test_a_body_over_sagemakers_limit_is_its_validation_error_and_a_400(
    standin: InvokeEndpointStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only reachable if the handler's limit were above SageMaker's (raised here on purpose)."""
    monkeypatch.setattr(lam, "MAX_BODY_BYTES", MAX_BODY_BYTES + 1024)
    result, [request], _ = call(standin, event(padded(MAX_BODY_BYTES + 1)))
    assert request.forwarded is False and request.reply is not None and request.reply.status == 400
    assert result["statusCode"] == 400, result
    body = json.loads(result["body"])
    assert body["error"] == "ValidationError" and body["message"].endswith("has oversize body.")


def test_an_unknown_endpoint_is_a_400_without_the_account_id(
    standin: InvokeEndpointStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENDPOINT_NAME", "textclf-gone")
    result, [request], _ = call(standin, event('{"inputs": "x"}'))
    assert request.path == "/endpoints/textclf-gone/invocations" and request.forwarded is False
    assert result["statusCode"] == 400, result
    assert json.loads(result["body"])["message"] == "Endpoint textclf-gone of account <account> not found."
    assert_no_leaks(result)


# -- SageMaker's own errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "http", "status"),
    [
        ("ThrottlingException", 400, 429),
        ("ThrottlingException", 429, 429),
        ("ModelNotReadyException", 429, 503),
        ("ServiceUnavailable", 503, 503),
        ("InternalFailure", 500, 502),
    ],
)
def test_sagemaker_errors_map_and_are_not_retried(
    standin: InvokeEndpointStandIn, code: str, http: int, status: int
) -> None:
    """botocore retries throttling and 5xx by default; the handler's client makes one attempt and
    leaves retrying to the API caller (429/503 with Retry-After)."""
    with standin.answering(error_reply(code, http, f"{code}: {LEAKY}")):
        result, seen, _ = call(standin, event('{"inputs": "x"}'))
    assert len(seen) == 1 and seen[0].forwarded is False
    assert result["statusCode"] == status, result
    assert json.loads(result["body"])["error"] == code
    if status in (429, 503):
        assert result["headers"]["Retry-After"] == "1"
    assert_no_leaks(result)


# -- no account details: every error path that can carry them ---------------------------------------------------
def test_a_validation_error_keeps_its_words_without_the_account_details(standin: InvokeEndpointStandIn) -> None:
    """The one SageMaker message the caller gets: scrubbed of ARNs, links, log names and the account id."""
    with standin.answering(error_reply("ValidationError", 400, LEAKY)):
        result, [_], _ = call(standin, event('{"inputs": "x"}'))
    assert result["statusCode"] == 400, result
    message = json.loads(result["body"])["message"]
    assert message.startswith("User: <arn> is not authorized to perform: sagemaker:InvokeEndpoint on resource: <arn>.")
    assert "See <url> in account <account>; stream <log-group>, model <url>, host <url>" in message
    assert_no_leaks(result)


def test_access_denied_is_a_502_without_the_principal_or_the_resource(standin: InvokeEndpointStandIn) -> None:
    """A generic ClientError (here the Lambda's role lacking sagemaker:InvokeEndpoint): a fixed message."""
    with standin.answering(error_reply("AccessDeniedException", 400, LEAKY)):
        result, [_], _ = call(standin, event('{"inputs": "x"}'))
    assert result["statusCode"] == 502, result
    body = json.loads(result["body"])
    assert (body["error"], body["message"]) == ("AccessDeniedException", "SageMaker could not answer")
    assert_no_leaks(result)


def test_a_container_4xx_naming_aws_resources_is_scrubbed_and_stays_json(standin: InvokeEndpointStandIn) -> None:
    """The real container's own 4xx (a rule hook's message) through SageMaker's ModelError: its status and
    its JSON shape kept, the account details in its message scrubbed."""
    result, [request], _ = call(standin, event('{"inputs": ["a leak"]}'))
    assert request.container_status == 409 and LEAKY in request.container_body.decode()
    assert result["statusCode"] == 409, result
    assert result["headers"]["Content-Type"] == "application/json"
    error = json.loads(result["body"])["error"]  # still JSON
    sent = json.loads(request.container_body)["error"]
    assert error["code"] == 409 and error["request_id"] == sent["request_id"]
    assert error["message"] == lam.scrub(sent["message"]) != sent["message"]
    assert_no_leaks(result)


def test_a_plain_text_container_4xx_naming_aws_resources_is_scrubbed(standin: InvokeEndpointStandIn) -> None:
    with standin.answering(standin.model_error(403, LEAKY)):
        result, [_], _ = call(standin, event('{"inputs": "x"}'))
    assert result["statusCode"] == 403, result
    assert result["headers"]["Content-Type"].startswith("text/plain")
    assert result["body"] == lam.scrub(LEAKY)
    assert_no_leaks(result)


@pytest.mark.parametrize("original", [500, 0], ids=["5xx", "timeout"])
def test_a_container_5xx_or_timeout_naming_aws_resources_says_nothing_of_them(
    standin: InvokeEndpointStandIn, original: int
) -> None:
    with standin.answering(standin.model_error(original, LEAKY)):
        result, [_], _ = call(standin, event('{"inputs": "x"}'))
    assert result["statusCode"] == 502, result
    assert json.loads(result["body"])["message"] in ("the model failed with status 500", "the model timed out")
    assert_no_leaks(result)
