"""`python -m ops api ...`: packaging, the stack deploy (moto CloudFormation), the key, calling the API."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from botocore.stub import Stubber
from cfnlint.decode import decode

from ops import api
from ops.invoke import build_request
from support import loopback
from support.aws import Calls, set_api_gateway_log_role
from support.loopback import QuietHandler

TEMPLATE_PARAMETERS = set(decode(str(api.TEMPLATE))[0]["Parameters"])


@pytest.fixture
def log_role(aws: Any) -> str:
    """API Gateway's CloudWatch role set in the region, which the stage's access log needs."""
    return set_api_gateway_log_role()


def test_package_is_the_handler_alone_and_reproducible() -> None:
    data, digest = api.package()
    assert api.package()[1] == digest
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == ["handler.py"]
        assert archive.read("handler.py") == api.HANDLER.read_bytes()


# moto skips the API Gateway types it does not model; the request is what this test checks
@pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")
def test_deploy_creates_then_updates_the_stack(aws: Any, calls: Calls, log_role: str) -> None:
    outputs = api.deploy(aws)
    created = calls.one("CreateStack")
    assert created["StackName"] == "textclf-api"
    assert created["Capabilities"] == ["CAPABILITY_IAM"]
    params = {p["ParameterKey"]: p["ParameterValue"] for p in created["Parameters"]}
    assert created["TemplateBody"] == api.template_body(params)
    assert set(params) == TEMPLATE_PARAMETERS
    assert params["EndpointName"] == "textclf-test"
    assert (params["IntegrationTimeoutMs"], params["LambdaTimeoutSeconds"], params["SageMakerReadTimeoutSeconds"]) == (
        "29000",
        "28",
        "25",
    )
    assert params["AuthType"] == "AWS_IAM"  # the default: SigV4-signed callers with execute-api:Invoke
    assert (params["AccessLogging"], params["CreateApiGatewayAccountRole"]) == ("true", "false")
    key = params["CodeKey"]
    assert key.startswith("textclf/lambda/handler-") and key.endswith(".zip")
    stored = aws.client("s3").get_object(Bucket=params["CodeBucket"], Key=key)["Body"].read()
    assert stored == api.package()[0]
    assert outputs["InvokeUrl"].endswith("/v1/invocations")
    assert api.url(aws) == outputs["InvokeUrl"]

    aws.cfg.api.timeout_s = 120  # after a Service Quotas raise
    api.deploy(aws)
    updated = {p["ParameterKey"]: p["ParameterValue"] for p in calls.one("UpdateStack")["Parameters"]}
    assert (
        updated["IntegrationTimeoutMs"],
        updated["LambdaTimeoutSeconds"],
        updated["SageMakerReadTimeoutSeconds"],
    ) == ("120000", "119", "70")


def _deployment(body: str) -> str:
    """The logical id of the template's one API Gateway Deployment, checked to be the Stage's."""
    resources = yaml_resources(body)
    ids = [k for k, v in resources.items() if v["Type"] == "AWS::ApiGateway::Deployment"]
    assert len(ids) == 1, ids
    assert resources["Stage"]["Properties"]["DeploymentId"] == {"Ref": ids[0]}
    return ids[0]


def yaml_resources(body: str) -> dict[str, Any]:
    from cfnlint.decode.cfn_yaml import loads

    return dict(loads(body)["Resources"])


@pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")
def test_every_change_of_settings_deploys_the_api_anew(aws: Any, calls: Calls, log_role: str) -> None:
    """API Gateway serves the snapshot a Deployment took when it was created: a change of timeout or
    auth must come with a new Deployment (a new logical id), or the stage keeps the old snapshot."""
    api.deploy(aws)
    first = _deployment(calls.one("CreateStack")["TemplateBody"])
    assert first.startswith("Deployment") and first != "Deployment"

    aws.cfg.api.timeout_s = 60
    api.deploy(aws)
    after_timeout = _deployment(calls.of("UpdateStack")[-1]["TemplateBody"])
    aws.cfg.api.auth = "API_KEY"
    api.deploy(aws)
    after_auth = _deployment(calls.of("UpdateStack")[-1]["TemplateBody"])
    assert len({first, after_timeout, after_auth}) == 3

    params = {p["ParameterKey"]: p["ParameterValue"] for p in calls.of("UpdateStack")[-1]["Parameters"]}
    assert _deployment(api.template_body(params)) == after_auth  # same settings, same deployment: a no-op
    for name in ("ThrottleRateLimit", "AllowedContentTypes", "StageName"):
        assert _deployment(api.template_body({**params, name: params[name] + "0"})) != after_auth


def test_api_key_value_is_looked_up(aws: Any) -> None:
    cfn, apigw = Stubber(aws.client("cloudformation")), Stubber(aws.client("apigateway"))
    cfn.add_response(
        "describe_stacks",
        {
            "Stacks": [
                {
                    "StackName": "textclf-api",
                    "CreationTime": "2026-01-01T00:00:00Z",
                    "StackStatus": "CREATE_COMPLETE",
                    "Outputs": [{"OutputKey": "ApiKeyId", "OutputValue": "k1"}],
                }
            ]
        },
        {"StackName": "textclf-api"},
    )
    apigw.add_response("get_api_key", {"id": "k1", "value": "the-key"}, {"apiKey": "k1", "includeValue": True})
    with cfn, apigw:
        assert api.api_key(aws) == "the-key"


class _Recorder(QuietHandler):
    seen: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.append(({k.lower(): v for k, v in self.headers.items()}, body))
        status = 403 if "x-api-key" in self.headers and self.headers["x-api-key"] == "wrong" else 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Amzn-SageMaker-Custom-Attributes", "trace=1")
        self.end_headers()
        self.wfile.write(b'[{"label": "pos"}]' if status == 200 else b'{"message": "Forbidden"}')


@pytest.fixture
def local_api() -> Iterator[str]:
    """A stand-in for API Gateway on the loopback interface."""
    _Recorder.seen = []
    with loopback.serve(_Recorder) as url:
        yield f"{url}/v1/invocations"


def test_call_with_an_api_key(aws: Any, local_api: str) -> None:
    aws.cfg.api.auth = "API_KEY"  # the opt-in for clients that cannot sign
    request = build_request(["great"], custom_attributes="threshold=0.7")
    status, headers, body = api.call(aws, request, endpoint_url=local_api, key="k-123")
    assert (status, json.loads(body)) == (200, [{"label": "pos"}])
    assert headers["X-Amzn-SageMaker-Custom-Attributes"] == "trace=1"
    sent, sent_body = _Recorder.seen[0]
    assert sent["x-api-key"] == "k-123" and "authorization" not in sent
    assert sent["x-amzn-sagemaker-custom-attributes"] == "threshold=0.7"
    assert json.loads(sent_body) == {"inputs": ["great"]}
    assert api.call(aws, request, endpoint_url=local_api, key="wrong")[0] == 403


def test_call_signed_with_sigv4_under_iam_auth(aws: Any, local_api: str) -> None:
    assert aws.cfg.api.auth == "AWS_IAM"  # the default
    status, _, _ = api.call(aws, build_request(["x"]), endpoint_url=local_api)
    sent, _ = _Recorder.seen[0]
    assert status == 200
    assert sent["authorization"].startswith("AWS4-HMAC-SHA256 Credential=")
    assert "SignedHeaders=accept;content-type;host;x-amz-date" in sent["authorization"]
    assert "/eu-west-1/execute-api/aws4_request" in sent["authorization"]
    assert "x-api-key" not in sent


def test_missing_stack_is_explained(aws: Any) -> None:
    from ops.aws import OpsError

    with pytest.raises(OpsError, match="api deploy"):
        api.url(aws)
    assert not api.delete(aws)


def test_parameters_cover_the_template(aws: Any, tmp_path: Path) -> None:
    assert set(api.parameters(aws, "k.zip")) == TEMPLATE_PARAMETERS
