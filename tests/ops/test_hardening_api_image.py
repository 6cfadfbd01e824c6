"""Issue 14: immutable image tags and jobs run by digest; IAM (SigV4) as the API's default, the key an
opt-in; no account-wide resource taken over by default. Every request made here goes through the
recorded session and is checked against botocore's service model (``Calls.invalid``). The Lambda's
scrubbing of account details is tested in test_lambda_handler.py (Stubber) and test_lambda_runtime.py
(botocore's own parsing)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import boto3
import pytest
from cfnlint.decode import decode

from ops import api, batch, endpoint, image, training, variants
from ops.aws import NO_IMAGE_TAG, OpsError
from ops.config import ApiSection, ConfigError, ImageSection, OpsConfig, load
from ops.invoke import build_request
from support import loopback
from support.aws import IMAGE_TAGS, REGION, Calls, image_manifest, pinned_image, set_api_gateway_log_role
from support.loopback import QuietHandler

OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def _ecr() -> Any:
    """moto's ECR through a client of its own: what it holds, unrecorded."""
    return boto3.client("ecr", region_name=REGION)


# -- image: the tag made per build ---------------------------------------------------------------------------
def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        check=True,
        capture_output=True,
    )


def test_a_new_tag_is_the_commit_and_the_time(tmp_path: Path) -> None:
    now = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert image.new_tag(tmp_path, now) == "build-20260304T050607Z"  # not a git checkout
    _git(tmp_path, "init", "-q")
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    _git(tmp_path, "add", "Dockerfile")
    _git(tmp_path, "commit", "-q", "-m", "one")
    commit = subprocess.run(
        ["git", "-C", str(tmp_path), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert image.new_tag(tmp_path, now) == f"{commit}-20260304T050607Z"
    (tmp_path / "Dockerfile").write_text("FROM scratch\nLABEL x=1\n")  # not committed
    assert image.new_tag(tmp_path, now) == f"{commit}-dirty-20260304T050607Z"
    later = datetime(2026, 3, 4, 5, 6, 8, tzinfo=UTC)
    assert image.new_tag(tmp_path, later) != image.new_tag(tmp_path, now)  # a rebuild is a new tag
    for tag in (image.new_tag(tmp_path, now), "build-20260304T050607Z"):
        OpsConfig(image=ImageSection(tag=tag)).validate()  # a tag the configuration (and Docker) takes


def test_the_defaults_are_immutable_tags_and_no_fixed_tag() -> None:
    section = ImageSection()
    assert (section.tag, section.immutable_tags, section.uri) == ("", True, "")


@pytest.mark.parametrize("tag", ["latest!", "-x", "a" * 123, "v1/2"])
def test_a_tag_docker_would_refuse_is_refused_when_read(tmp_path: Path, tag: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"[image]\ntag = {json.dumps(tag)}\n")
    with pytest.raises(ConfigError, match=r"image\.tag .*: a Docker tag is letters, digits"):
        load(path, env={"AWS_DEFAULT_REGION": REGION})


def test_a_bad_tag_option_is_refused_before_anything(aws: Any, calls: Calls, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    aws.cfg.image.context = str(tmp_path)
    with pytest.raises(ConfigError, match=r"^--tag 'v1/2': a Docker tag is letters, digits"):
        image.build_and_push(aws, tag="v1/2")
    assert calls.operations() == []


# -- image: repositories with immutable tags ------------------------------------------------------------------
@pytest.fixture
def no_repository(aws: Any) -> None:
    _ecr().delete_repository(repositoryName="textclf", force=True)


@pytest.mark.parametrize(("immutable", "setting"), [(True, "IMMUTABLE"), (False, "MUTABLE")])
def test_the_repository_is_created_with_immutable_tags_unless_switched_off(
    aws: Any, calls: Calls, no_repository: None, immutable: bool, setting: str
) -> None:
    aws.cfg.image.immutable_tags = immutable
    image.ensure_repository(aws)
    assert calls.one("CreateRepository")["imageTagMutability"] == setting
    assert _ecr().describe_repositories()["repositories"][0]["imageTagMutability"] == setting
    assert calls.invalid() == []


def test_an_existing_repository_with_movable_tags_is_made_immutable(
    aws: Any, calls: Calls, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _ecr().describe_repositories()["repositories"][0]["imageTagMutability"] == "MUTABLE"  # as made
    image.ensure_repository(aws)
    assert calls.one("PutImageTagMutability") == {"repositoryName": "textclf", "imageTagMutability": "IMMUTABLE"}
    assert _ecr().describe_repositories()["repositories"][0]["imageTagMutability"] == "IMMUTABLE"
    assert "tags made immutable (was MUTABLE" in capsys.readouterr().out
    image.ensure_repository(aws)  # already immutable: left alone
    assert len(calls.of("PutImageTagMutability")) == 1
    assert calls.invalid() == []


def test_immutable_tags_off_leaves_a_repository_as_it_is(aws: Any, calls: Calls) -> None:
    aws.cfg.image.immutable_tags = False
    image.ensure_repository(aws)
    assert calls.of("PutImageTagMutability") == calls.of("CreateRepository") == []


def test_a_repository_with_immutable_tags_and_exclusions_is_left_to_its_owner(
    aws: Any, calls: Calls, no_repository: None
) -> None:
    _ecr().create_repository(
        repositoryName="textclf",
        imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "dev-*"}],
    )
    image.ensure_repository(aws)
    assert calls.of("PutImageTagMutability") == []


def test_a_tag_ecr_holds_is_refused_before_any_build(aws: Any, calls: Calls, tmp_path: Path) -> None:
    """`latest` (or any tag) cannot be pushed twice to an immutable repository: say so before the build."""
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    aws.cfg.image.context = str(tmp_path)
    with pytest.raises(OpsError) as refused:
        image.build_and_push(aws, tag="t1")  # the aws fixture's images: t1, t1-gpu, t1-serve
    digest = _ecr().describe_images(repositoryName="textclf", imageIds=[{"imageTag": "t1-serve"}])
    assert str(refused.value) == (
        f"ECR already holds {aws.registry}/textclf:t1-serve ({digest['imageDetails'][0]['imageDigest']}) and its "
        "tags are immutable: a tag names one image for good. Leave image.tag empty (and no --tag) for a new "
        "tag, or choose another; jobs already run that image by its digest"
    )
    assert calls.of("GetAuthorizationToken") == []  # no login, no build, no push
    assert calls.invalid() == []


def test_refuse_existing_tags_says_when_a_mutable_tag_moves(aws: Any, capsys: pytest.CaptureFixture[str]) -> None:
    aws.cfg.image.immutable_tags = False
    image.refuse_existing_tags(aws, [f"{aws.registry}/textclf:t1-gpu", f"{aws.registry}/textclf:v9-gpu"])
    out = capsys.readouterr().out
    assert f"{aws.registry}/textclf:t1-gpu names sha256:" in out and "this push moves the tag" in out
    assert "v9-gpu" not in out


# -- image: jobs run by digest -------------------------------------------------------------------------------
def test_jobs_run_the_digest_ecr_holds_under_the_tag(
    aws: Any, calls: Calls, uploaded: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    training.start(aws)
    batch.start(aws, "s3://textclf-test-bucket/in/", model_data="s3://textclf-test-bucket/m/model.tar.gz")
    endpoint.deploy(aws, "s3://textclf-test-bucket/m/model.tar.gz", autoscale=False)
    gpu, serve = pinned_image(aws, "t1-gpu"), pinned_image(aws, "t1-serve")
    assert re.fullmatch(rf"{re.escape(aws.registry)}/textclf@sha256:[0-9a-f]{{64}}", gpu)
    assert calls.one("CreateTrainingJob")["AlgorithmSpecification"]["TrainingImage"] == gpu
    assert [m["PrimaryContainer"]["Image"] for m in calls.of("CreateModel")] == [serve, serve]
    # each tag looked up once per command (the Aws object), by tag, in the configured repository
    assert calls.of("DescribeImages") == [
        {"repositoryName": "textclf", "imageIds": [{"imageTag": "t1-gpu"}]},
        {"repositoryName": "textclf", "imageIds": [{"imageTag": "t1-serve"}]},
    ]
    assert calls.invalid() == []
    out = capsys.readouterr().out
    assert f"image {aws.registry}/textclf:t1-gpu is textclf@{gpu.rpartition('@')[2]}\n" in out


def test_a_tag_moved_after_the_lookup_does_not_change_what_this_command_runs(aws: Any) -> None:
    before = aws.serving_image
    _ecr().put_image(repositoryName="textclf", imageTag="t1-serve", imageManifest=image_manifest("other"))
    assert aws.serving_image == before  # one lookup per command: every job of it runs the same image
    assert pinned_image(aws, "t1-serve") != before


@pytest.mark.parametrize("what", ["tag", "repository"])
def test_a_tag_ecr_does_not_hold_is_refused_before_any_job(
    aws: Any, calls: Calls, uploaded: dict[str, str], what: str
) -> None:
    if what == "tag":
        aws.cfg.image.tag = "never-pushed"
        code, shown = "ImageNotFoundException", "never-pushed-gpu"
    else:
        _ecr().delete_repository(repositoryName="textclf", force=True)
        code, shown = "RepositoryNotFoundException", "t1-gpu"
    with pytest.raises(OpsError) as refused:
        training.start(aws)
    assert str(refused.value) == (
        f"image {aws.registry}/textclf:{shown} is not in ECR ({code}): jobs run the image a tag names in ECR, "
        "by its digest. Push it with `python -m ops image` (with image.tag empty it makes a new tag and prints "
        "it), or set image.tag (TEXTCLF_IMAGE_TAG) to a tag it pushed"
    )
    assert calls.of("CreateTrainingJob") == []
    assert calls.invalid() == []


def test_jobs_need_an_image_tag(aws: Any, calls: Calls) -> None:
    aws.cfg.image.tag = ""
    for job in (lambda: aws.training_image, lambda: aws.serving_image):
        with pytest.raises(ConfigError) as refused:
            job()
        assert str(refused.value) == NO_IMAGE_TAG
    assert "TEXTCLF_IMAGE_TAG" in NO_IMAGE_TAG and "image.uri" in NO_IMAGE_TAG
    assert calls.of("DescribeImages") == []


def test_an_image_index_under_the_tag_is_refused_at_use(aws: Any) -> None:
    """What SageMaker would refuse ("Unsupported manifest media type"), said before a job is created."""
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})
    _ecr().put_image(
        repositoryName="textclf", imageTag="t1-serve", imageManifest=index, imageManifestMediaType=OCI_INDEX
    )
    with pytest.raises(OpsError, match=rf"textclf:t1-serve is stored as {re.escape(OCI_INDEX)} \(sha256:"):
        aws.serving_image  # noqa: B018 (the property looks the digest up)


def test_an_image_uri_is_used_as_given(aws: Any, calls: Calls) -> None:
    aws.cfg.image.uri = "registry.example.com/textclf@sha256:" + "b" * 64
    assert aws.training_image == aws.serving_image == aws.cfg.image.uri
    assert calls.of("DescribeImages") == []


def test_the_variants_tags_are_looked_up(aws: Any) -> None:
    """Each variant by its own tag: the cpu one (no suffix) too."""
    digests = {tag: pinned_image(aws, tag) for tag in IMAGE_TAGS}
    assert {v.name: aws.image_uri(v) for v in variants.VARIANTS.values()} == {
        "cpu": digests["t1"],
        "gpu": digests["t1-gpu"],
        "serve": digests["t1-serve"],
    }


# -- API: IAM by default, the key an opt-in, no account-wide role taken over ------------------------------------
TEMPLATE = decode(str(api.TEMPLATE))[0]


def test_api_defaults_are_iam_auth_and_no_account_role() -> None:
    section = ApiSection()
    assert (section.auth, section.create_account_log_role, section.access_logs) == ("AWS_IAM", False, True)
    params = TEMPLATE["Parameters"]
    assert params["AuthType"]["Default"] == "AWS_IAM"
    assert params["CreateApiGatewayAccountRole"]["Default"] == "false"
    assert params["AccessLogging"]["Default"] == "true"


def test_the_template_takes_over_nothing_account_wide_unless_asked() -> None:
    resources = TEMPLATE["Resources"]
    unconditional = {r["Type"] for r in resources.values() if "Condition" not in r}
    assert "AWS::ApiGateway::Account" not in unconditional
    assert resources["ApiGatewayAccount"]["Condition"] == resources["ApiGatewayCloudWatchRole"]["Condition"]
    assert TEMPLATE["Conditions"]["CreateAccountRole"] == {
        "Fn::Equals": [{"Ref": "CreateApiGatewayAccountRole"}, "true"]
    }
    # the key, its usage plan and their link only where auth is API_KEY
    for name in ("UsagePlan", "ApiKey", "UsagePlanKey"):
        assert resources[name]["Condition"] == "UseApiKey"
    method = resources["InvocationsPost"]["Properties"]
    assert method["AuthorizationType"] == {"Fn::If": ["UseApiKey", "NONE", "AWS_IAM"]}
    # the access log only where asked for, in a log group that exists only then
    stage = resources["Stage"]["Properties"]
    assert stage["AccessLogSetting"]["Fn::If"][0] == "LogAccess"
    assert stage["AccessLogSetting"]["Fn::If"][2] == {"Ref": "AWS::NoValue"}
    assert resources["AccessLogGroup"]["Condition"] == "LogAccess"
    assert TEMPLATE["Outputs"]["InvokeResourceArn"]["Value"] == {
        "Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${Api}/${StageName}"
        "/POST/invocations"
    }


def _stack_parameters(calls: Calls) -> dict[str, str]:
    return {p["ParameterKey"]: p["ParameterValue"] for p in calls.one("CreateStack")["Parameters"]}


NO_ROLE = (
    "API Gateway has no CloudWatch Logs role in eu-west-1 (its account setting cloudwatchRoleArn is empty), and "
    "the stage's access log (api.access_logs) needs one. It is one setting for every API of the account in the "
    "region, so ops does not take it over unless asked. Either set it once: a role that apigateway.amazonaws.com "
    "may assume, with the managed policy AmazonAPIGatewayPushToCloudWatchLogs, then `aws apigateway "
    "update-account --patch-operations op=replace,path=/cloudwatchRoleArn,value=<role ARN>`; or set "
    "api.create_account_log_role = true to let this stack set it (deleting the stack deletes that role); or "
    "api.access_logs = false to deploy without an access log"
)


def test_no_logging_role_in_the_region_is_refused_before_anything_is_created(aws: Any, calls: Calls) -> None:
    with pytest.raises(OpsError) as refused:
        api.deploy(aws)
    assert str(refused.value) == NO_ROLE
    assert calls.operations() == ["GetAccount"]
    assert calls.invalid() == []


@pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")
def test_with_the_regions_logging_role_the_stack_uses_it_and_sets_nothing(
    aws: Any, calls: Calls, capsys: pytest.CaptureFixture[str]
) -> None:
    role = set_api_gateway_log_role()
    outputs = api.deploy(aws)
    params = _stack_parameters(calls)
    assert (params["AuthType"], params["AccessLogging"], params["CreateApiGatewayAccountRole"]) == (
        "AWS_IAM",
        "true",
        "false",
    )
    out = capsys.readouterr().out
    arn = outputs["InvokeResourceArn"]
    assert re.fullmatch(rf"arn:aws:execute-api:eu-west-1:{aws.account_id}:\w+/v1/POST/invocations", arn)
    assert f"callers sign with SigV4 (service execute-api) and need execute-api:Invoke on {arn}\n" in out
    assert "API key" not in out and "ApiKeyId" not in outputs
    client = boto3.client("apigateway", region_name=REGION)
    assert client.get_account()["cloudwatchRoleArn"] == role  # untouched
    assert calls.invalid() == []


@pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")
@pytest.mark.parametrize("role_set", [False, True], ids=["none-set", "one-set"])
def test_the_stack_sets_the_role_only_when_asked_and_says_what_it_replaces(
    aws: Any, calls: Calls, capsys: pytest.CaptureFixture[str], role_set: bool
) -> None:
    aws.cfg.api.create_account_log_role = True
    role = set_api_gateway_log_role() if role_set else None
    api.deploy(aws)
    assert _stack_parameters(calls)["CreateApiGatewayAccountRole"] == "true"
    replaced = f"the stack replaces API Gateway's CloudWatch role in eu-west-1 ({role}), for every API"
    assert (replaced in capsys.readouterr().out) is role_set
    assert calls.invalid() == []


@pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")
def test_without_access_logs_no_role_is_needed(aws: Any, calls: Calls) -> None:
    aws.cfg.api.access_logs = False
    api.deploy(aws)
    assert calls.of("GetAccount") == []
    assert _stack_parameters(calls)["AccessLogging"] == "false"
    assert calls.invalid() == []


@pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")
def test_the_api_key_is_an_opt_in_with_its_usage_plan(
    aws: Any, calls: Calls, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.cfg.api.auth = "API_KEY"
    set_api_gateway_log_role()
    api.deploy(aws)  # (moto's CloudFormation makes no API key: the request is what this checks)
    params = _stack_parameters(calls)
    assert (params["AuthType"], params["ThrottleRateLimit"], params["ThrottleBurstLimit"]) == ("API_KEY", "10", "20")
    out = capsys.readouterr().out
    assert "API key: python -m ops api key (it identifies a caller for the usage plan; it is no authentication)" in out
    assert "SigV4" not in out
    assert calls.invalid() == []


# -- API: `ops api invoke` signs with SigV4 ----------------------------------------------------------------------
def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def verify_sigv4(
    method: str, path: str, headers: dict[str, str], body: bytes, secret: str, region: str, service: str
) -> bool:
    """AWS Signature Version 4, checked as the receiving service would, written here from the published
    algorithm (docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html) without
    botocore: the canonical request from what arrived, the string to sign, the derived key, the HMAC."""
    found = re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)"
        r"/aws4_request, "
        r"SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})",
        headers["authorization"],
    )
    assert found, headers["authorization"]
    assert (found["region"], found["service"]) == (region, service)
    signed = found["signed"].split(";")
    canonical_headers = "".join(f"{name}:{' '.join(headers[name].split())}\n" for name in signed)
    canonical_request = "\n".join(
        [method, path, "", canonical_headers, found["signed"], hashlib.sha256(body).hexdigest()]
    )
    scope = f"{found['date']}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", headers["x-amz-date"], scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    key = _hmac(("AWS4" + secret).encode(), found["date"])
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return hmac.compare_digest(hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest(), found["signature"])


class _Gateway(QuietHandler):
    """A stand-in for API Gateway under IAM auth: 403 unless the SigV4 signature verifies."""

    seen: ClassVar[list[tuple[str, dict[str, str], bytes]]] = []
    secret = ""  # the session's secret key, set by the test

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        headers = {k.lower(): v for k, v in self.headers.items()}
        type(self).seen.append((self.path, headers, body))
        ok = "authorization" in headers and verify_sigv4(
            "POST", self.path, headers, body, self.secret, REGION, "execute-api"
        )
        self.send_response(200 if ok else 403)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'[{"label": "pos"}]' if ok else b'{"message": "Missing Authentication Token"}')


@pytest.fixture
def gateway() -> Iterator[str]:
    _Gateway.seen = []
    with loopback.serve(_Gateway) as url:
        yield f"{url}/v1/invocations"


@pytest.mark.parametrize("session_token", [None, "a-session-token"], ids=["keys", "temporary-credentials"])
def test_api_invoke_signs_with_sigv4_by_default(
    aws: Any, gateway: str, monkeypatch: pytest.MonkeyPatch, session_token: str | None
) -> None:
    if session_token:
        monkeypatch.setenv("AWS_SESSION_TOKEN", session_token)
        aws.session = boto3.Session(region_name=REGION)  # credentials are read when the session is made
    credentials = aws.session.get_credentials()
    _Gateway.secret = credentials.secret_key  # what moto's mock_aws puts in the environment
    request = build_request(["I was charged twice"], custom_attributes="threshold=0.7")
    status, _, body = api.call(aws, request, endpoint_url=gateway)
    assert (status, json.loads(body)) == (200, [{"label": "pos"}])  # the stand-in verified the signature
    [(path, sent, sent_body)] = _Gateway.seen
    assert path == "/v1/invocations" and sent_body == request.body
    key = credentials.access_key
    assert sent["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={key}/{sent['x-amz-date'][:8]}/")
    signed = re.search(r"SignedHeaders=([^,]+)", sent["authorization"])
    assert signed is not None
    expected = {"accept", "content-type", "host", "x-amz-date", "x-amzn-sagemaker-custom-attributes"}
    if session_token:
        expected.add("x-amz-security-token")
        assert sent["x-amz-security-token"] == session_token
    assert set(signed.group(1).split(";")) == expected
    assert re.fullmatch(r"\d{8}T\d{6}Z", sent["x-amz-date"])
    assert "x-api-key" not in sent
    # the check is a real one: the same request with another body or secret does not verify
    assert not verify_sigv4("POST", path, sent, sent_body + b" ", _Gateway.secret, REGION, "execute-api")
    assert not verify_sigv4("POST", path, sent, sent_body, "other-secret", REGION, "execute-api")


def test_the_signature_is_botocores_own(aws: Any) -> None:
    """`api.sign` adds what botocore's SigV4Auth computes for service execute-api, nothing else."""
    headers = api.sign(aws, "https://abc.execute-api.eu-west-1.amazonaws.com/v1/invocations", b"{}", {"Accept": "x"})
    assert set(headers) == {"Accept", "X-Amz-Date", "Authorization"}
    assert (
        "/eu-west-1/execute-api/aws4_request, SignedHeaders=accept;host;x-amz-date, Signature="
        in (headers["Authorization"])
    )
    lowered = {k.lower(): v for k, v in headers.items()} | {"host": "abc.execute-api.eu-west-1.amazonaws.com"}
    secret = aws.session.get_credentials().secret_key
    assert verify_sigv4("POST", "/v1/invocations", lowered, b"{}", secret, REGION, "execute-api")


def test_signing_without_credentials_is_refused(aws: Any, gateway: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aws.session, "get_credentials", lambda: None)
    with pytest.raises(OpsError, match=r"api\.auth is AWS_IAM and this session has no AWS credentials to sign"):
        api.call(aws, build_request(["x"]), endpoint_url=gateway)
    assert _Gateway.seen == []
