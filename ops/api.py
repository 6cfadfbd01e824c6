"""The public API: package the Lambda, deploy the stack (``ops/apigw/template.yaml``), call it.

The chain's time budget, set here in one place: API Gateway's integration timeout (``api.timeout_s``,
29 s unless a quota raise allows more on a regional REST API) > the Lambda timeout (1 s less) >
SageMaker's read timeout in the Lambda (3 s less again, at most the 70 s AWS recommends). Each hop
therefore gives up before the one in front of it, and the caller gets the Lambda's JSON error
instead of a gateway timeout. The container itself must answer within 60 s (SageMaker's limit).

Who may call: ``api.auth = "AWS_IAM"`` (the default) makes API Gateway check a SigV4 signature and the
caller's ``execute-api:Invoke`` permission on the method (``ops api invoke`` signs with the session's
credentials); ``API_KEY`` is for clients that cannot sign: a key in a usage plan identifies a caller for
throttling and quotas and authenticates no one.

Logging: the stage's access log needs API Gateway's CloudWatch role, one setting per account and region
(``AWS::ApiGateway::Account``) shared by every API there. The stack does not set it unless
``api.create_account_log_role`` asks; ``deploy`` reads it first (``GetAccount``) and, where none is set
and access logs are on, refuses with the ways out before it creates anything.
"""

from __future__ import annotations

import hashlib
import io
import json
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ops import stacks
from ops.aws import RUNTIME_READ_TIMEOUT_S, Aws, OpsError, stack_outputs
from ops.channels import ensure_bucket
from ops.invoke import Request

HERE = Path(__file__).resolve().parent / "apigw"
TEMPLATE = HERE / "template.yaml"
HANDLER = HERE / "handler.py"


@dataclass(frozen=True)
class Timeouts:
    integration_ms: int
    lambda_s: int
    read_s: int


def timeouts(api_timeout_s: int) -> Timeouts:
    if api_timeout_s < 5:
        raise OpsError("api.timeout_s must be at least 5 seconds")
    return Timeouts(api_timeout_s * 1000, api_timeout_s - 1, min(RUNTIME_READ_TIMEOUT_S, api_timeout_s - 4))


def package() -> tuple[bytes, str]:
    """The Lambda zip (``handler.py`` alone, fixed timestamps so equal code gives equal bytes) and its sha256."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo("handler.py", date_time=(2020, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        archive.writestr(info, HANDLER.read_bytes())
    data = buffer.getvalue()
    return data, hashlib.sha256(data).hexdigest()


def upload_code(aws: Aws) -> str:
    """Upload the Lambda zip under a content-addressed key (a new key is what makes CloudFormation update the code)."""
    data, digest = package()
    key = f"{aws.cfg.aws.prefix.strip('/')}/lambda/handler-{digest[:16]}.zip"
    aws.client("s3").put_object(Bucket=aws.bucket, Key=key, Body=data)
    return key


def parameters(aws: Aws, code_key: str) -> dict[str, str]:
    a = aws.cfg.api
    t = timeouts(a.timeout_s)
    return {
        "EndpointName": aws.cfg.endpoint.name,
        "CodeBucket": aws.bucket,
        "CodeKey": code_key,
        "StageName": a.stage,
        "AuthType": a.auth,
        "IntegrationTimeoutMs": str(t.integration_ms),
        "LambdaTimeoutSeconds": str(t.lambda_s),
        "SageMakerReadTimeoutSeconds": str(t.read_s),
        "ThrottleRateLimit": f"{a.throttle_rate:g}",
        "ThrottleBurstLimit": str(a.throttle_burst),
        "QuotaPerDay": str(a.quota_per_day),
        "LogRetentionDays": str(a.log_retention_days),
        "AllowedContentTypes": a.allowed_content_types,
        "AccessLogging": "true" if a.access_logs else "false",
        "CreateApiGatewayAccountRole": "true" if a.create_account_log_role else "false",
    }


def check_log_role(aws: Aws) -> None:
    """Refuse, before anything is created, a stage with access logs in a region where API Gateway has no
    CloudWatch role and the stack is not to set one (the stage would fail with "CloudWatch Logs role ARN
    must be set in account settings to enable logging"); say when the stack is to replace one."""
    a = aws.cfg.api
    if not (a.access_logs or a.create_account_log_role):
        return
    role = aws.client("apigateway").get_account().get("cloudwatchRoleArn")
    if a.create_account_log_role:
        if role:
            print(
                f"api.create_account_log_role: the stack replaces API Gateway's CloudWatch role in {aws.region} "
                f"({role}), for every API of the account there"
            )
        return
    if not role:
        raise OpsError(
            f"API Gateway has no CloudWatch Logs role in {aws.region} (its account setting cloudwatchRoleArn is "
            "empty), and the stage's access log (api.access_logs) needs one. It is one setting for every API of "
            "the account in the region, so ops does not take it over unless asked. Either set it once: a role "
            "that apigateway.amazonaws.com may assume, with the managed policy AmazonAPIGatewayPushToCloudWatchLogs, "
            "then `aws apigateway update-account --patch-operations "
            "op=replace,path=/cloudwatchRoleArn,value=<role ARN>`; or set api.create_account_log_role = true to "
            "let this stack set it (deleting the stack deletes that role); or api.access_logs = false to deploy "
            "without an access log"
        )


# API Gateway serves a stage from a Deployment, a snapshot of the API taken when the Deployment is
# created; CloudFormation creates one only when the resource is new. The stack therefore gets the
# template with the Deployment's logical id suffixed by a hash of the template and every parameter:
# any change of settings (timeout, auth, ...) makes a new Deployment, the Stage moves to it and the
# old one is deleted; an unchanged deploy keeps the id, so it stays a no-op.
DEPLOYMENT = "Deployment"
_DEPLOYMENT_RESOURCE = f"\n  {DEPLOYMENT}:\n"
_DEPLOYMENT_REF = f"DeploymentId: !Ref {DEPLOYMENT}\n"


def deployment_id(template: str, params: dict[str, str]) -> str:
    digest = hashlib.sha256(json.dumps([template, sorted(params.items())]).encode()).hexdigest()
    return f"{DEPLOYMENT}{digest[:16]}"


def template_body(params: dict[str, str]) -> str:
    """The API template as sent: the Deployment's logical id carries the hash of the settings."""
    text = TEMPLATE.read_text(encoding="utf-8")
    if text.count(_DEPLOYMENT_RESOURCE) != 1 or text.count(_DEPLOYMENT_REF) != 1:
        raise OpsError(f"{TEMPLATE}: expected one {DEPLOYMENT} resource and one Stage reference to it")
    new_id = deployment_id(text, params)
    return text.replace(_DEPLOYMENT_RESOURCE, f"\n  {new_id}:\n").replace(
        _DEPLOYMENT_REF, f"DeploymentId: !Ref {new_id}\n"
    )


def deploy(aws: Aws) -> dict[str, str]:
    check_log_role(aws)
    ensure_bucket(aws)
    params = parameters(aws, upload_code(aws))
    outputs = stacks.deploy(aws, aws.cfg.api.stack_name, TEMPLATE, params, body=template_body(params))
    print(f"POST {outputs['InvokeUrl']}")
    if aws.cfg.api.auth == "API_KEY":
        print("API key: python -m ops api key (it identifies a caller for the usage plan; it is no authentication)")
    else:
        arn = outputs.get("InvokeResourceArn", "the stack's InvokeResourceArn")
        print(f"callers sign with SigV4 (service execute-api) and need execute-api:Invoke on {arn}")
    return outputs


def url(aws: Aws) -> str:
    outputs = stack_outputs(aws, aws.cfg.api.stack_name)
    if "InvokeUrl" not in outputs:
        raise OpsError(f"stack {aws.cfg.api.stack_name} not found: run `python -m ops api deploy`")
    return outputs["InvokeUrl"]


def api_key(aws: Aws) -> str:
    key_id = stack_outputs(aws, aws.cfg.api.stack_name).get("ApiKeyId")
    if not key_id:
        raise OpsError(f"stack {aws.cfg.api.stack_name} has no API key (auth is {aws.cfg.api.auth})")
    return str(aws.client("apigateway").get_api_key(apiKey=key_id, includeValue=True)["value"])


def sign(aws: Aws, target: str, body: bytes, headers: dict[str, str]) -> dict[str, str]:
    """``headers`` plus SigV4's (``Authorization``, ``X-Amz-Date``, and ``X-Amz-Security-Token`` for
    temporary credentials) for a POST of ``body`` to ``target``, signed by botocore for service
    ``execute-api`` in the session's region with the session's credentials."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    credentials = aws.session.get_credentials()
    if credentials is None:
        raise OpsError(
            "api.auth is AWS_IAM and this session has no AWS credentials to sign the request with (SigV4); "
            "configure credentials, or call with an API key where the API was deployed with api.auth = API_KEY"
        )
    signed = AWSRequest(method="POST", url=target, data=body, headers=headers)
    SigV4Auth(credentials, "execute-api", aws.region).add_auth(signed)
    return dict(signed.headers.items())


def call(
    aws: Aws, request: Request, endpoint_url: str | None = None, key: str | None = None, timeout_s: float = 35.0
) -> tuple[int, dict[str, str], bytes]:
    """POST through API Gateway as a client would: signed with SigV4 when auth is AWS_IAM (the default),
    with the API key header when it is API_KEY."""
    target = endpoint_url or url(aws)
    headers = {"Content-Type": request.content_type, "Accept": request.accept}
    if request.custom_attributes:
        headers["X-Amzn-SageMaker-Custom-Attributes"] = request.custom_attributes
    if aws.cfg.api.auth == "API_KEY":
        headers["x-api-key"] = key or api_key(aws)
    else:
        headers = sign(aws, target, request.body, headers)
    http_request = urllib.request.Request(target, data=request.body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(http_request, timeout=timeout_s) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers.items()), err.read()


def delete(aws: Aws) -> bool:
    return stacks.delete(aws, aws.cfg.api.stack_name)
