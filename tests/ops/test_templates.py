"""The CloudFormation templates: cfn-lint clean, least privilege, logs with retention, coherent timeouts."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

from ops import api

OPS = Path(__file__).resolve().parents[2] / "ops"
TEMPLATES = [OPS / "apigw" / "template.yaml", OPS / "role.yaml"]


def _load(path: Path) -> Any:
    template, problems = decode(str(path))
    assert not problems, problems
    return template


def _cfn_lint(path: Path) -> subprocess.CompletedProcess[str]:
    # the console script installed with cfn-lint (requirements-ops.txt), beside this interpreter
    exe = shutil.which("cfn-lint", path=str(Path(sys.executable).parent)) or shutil.which("cfn-lint")
    assert exe, "cfn-lint is not installed: pip install -r requirements-ops.txt"
    return subprocess.run([exe, "--format", "parseable", str(path)], capture_output=True, text=True, check=False)


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_cfn_lint_passes(path: Path) -> None:
    result = _cfn_lint(path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("auth", "role", "logs"), [("AWS_IAM", "false", "true"), ("API_KEY", "true", "false")], ids=["defaults", "others"]
)
def test_cfn_lint_passes_on_the_api_template_as_sent(tmp_path: Path, auth: str, role: str, logs: str) -> None:
    """What `ops api deploy` sends (the Deployment renamed by the settings' hash) is linted too. cfn-lint
    checks every branch of the template's conditions either way; the settings change only the hash."""
    params = {"EndpointName": "textclf", "CodeBucket": "b", "CodeKey": "k.zip", "AuthType": auth}
    params |= {"CreateApiGatewayAccountRole": role, "AccessLogging": logs}
    sent = tmp_path / "api.yaml"
    sent.write_text(api.template_body(params), encoding="utf-8")
    assert "\n  Deployment:\n" not in sent.read_text(encoding="utf-8")
    result = _cfn_lint(sent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_would_catch_a_broken_template(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    text = TEMPLATES[0].read_text(encoding="utf-8").replace("Runtime: python3.13", "Runtime: python2.6")
    broken.write_text(text, encoding="utf-8")
    assert _cfn_lint(broken).returncode != 0


def test_lambda_may_only_invoke_the_one_endpoint() -> None:
    resources = _load(TEMPLATES[0])["Resources"]
    statements = resources["FunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    invoke = [s for s in statements if "sagemaker" in str(s["Action"])]
    assert len(invoke) == 1
    assert invoke[0]["Action"] == "sagemaker:InvokeEndpoint"
    assert invoke[0]["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:endpoint/${EndpointName}"
    }
    others = [s for s in statements if s is not invoke[0]]
    assert all(str(s["Action"]).startswith("['logs:") and "*" not in str(s["Resource"]) for s in others)
    roles = [r for r in resources.values() if r["Type"] == "AWS::IAM::Role"]
    assert all("ManagedPolicyArns" not in r["Properties"] or "APIGateway" in str(r["Properties"]) for r in roles)


def test_log_groups_have_retention_and_are_used() -> None:
    resources = _load(TEMPLATES[0])["Resources"]
    groups = {k: v for k, v in resources.items() if v["Type"] == "AWS::Logs::LogGroup"}
    assert set(groups) == {"FunctionLogGroup", "AccessLogGroup"}
    assert all(g["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"} for g in groups.values())
    assert resources["Function"]["Properties"]["LoggingConfig"]["LogGroup"] == {"Ref": "FunctionLogGroup"}
    stage = resources["Stage"]["Properties"]
    condition, access_log, otherwise = stage["AccessLogSetting"]["Fn::If"]  # api.access_logs (default on)
    assert (condition, otherwise) == ("LogAccess", {"Ref": "AWS::NoValue"})
    assert access_log["DestinationArn"] == {"Fn::GetAtt": ["AccessLogGroup", "Arn"]}
    assert groups["AccessLogGroup"]["Condition"] == "LogAccess"  # no unused log group without it


def test_api_key_usage_plan_and_throttling() -> None:
    template = _load(TEMPLATES[0])
    resources = template["Resources"]
    method = resources["InvocationsPost"]["Properties"]
    assert method["HttpMethod"] == "POST" and method["Integration"]["Type"] == "AWS_PROXY"
    assert method["ApiKeyRequired"] == {"Fn::If": ["UseApiKey", True, False]}
    assert method["AuthorizationType"] == {"Fn::If": ["UseApiKey", "NONE", "AWS_IAM"]}
    plan = resources["UsagePlan"]["Properties"]
    assert plan["Throttle"] == {"RateLimit": {"Ref": "ThrottleRateLimit"}, "BurstLimit": {"Ref": "ThrottleBurstLimit"}}
    assert resources["UsagePlanKey"]["Properties"]["UsagePlanId"] == {"Ref": "UsagePlan"}
    assert method["Integration"]["TimeoutInMillis"] == {"Ref": "IntegrationTimeoutMs"}
    env = resources["Function"]["Properties"]["Environment"]["Variables"]
    assert env["SAGEMAKER_READ_TIMEOUT_S"] == {"Ref": "SageMakerReadTimeoutSeconds"}
    assert resources["Function"]["Properties"]["Timeout"] == {"Ref": "LambdaTimeoutSeconds"}


@pytest.mark.parametrize("api_timeout", [5, 29, 74, 75, 120, 300])
def test_each_hop_gives_up_before_the_one_in_front(api_timeout: int) -> None:
    t = api.timeouts(api_timeout)
    assert t.read_s < t.lambda_s < t.integration_ms / 1000
    assert t.read_s == min(70, api_timeout - 4)  # 70 s (AWS's advice) once the API allows it


def test_default_budget_matches_the_template_defaults() -> None:
    params = _load(TEMPLATES[0])["Parameters"]
    t = api.timeouts(29)
    assert (
        params["IntegrationTimeoutMs"]["Default"],
        params["LambdaTimeoutSeconds"]["Default"],
        params["SageMakerReadTimeoutSeconds"]["Default"],
    ) == (t.integration_ms, t.lambda_s, t.read_s)


def test_handler_needs_only_stdlib_and_boto3() -> None:
    tree = ast.parse((OPS / "apigw" / "handler.py").read_text(encoding="utf-8"))
    roots = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert roots - sys.stdlib_module_names <= {"boto3", "botocore"}


def test_roles_reach_one_bucket_prefix_and_pull_one_repository() -> None:
    """Training, serving ("Role", the logical id of the earlier single role) and batch: S3 only under the
    project's prefix, one repository, "*" only where IAM has no resource-level permissions."""
    resources = _load(TEMPLATES[1])["Resources"]
    assert set(resources) == {"TrainingRole", "Role", "BatchRole"}
    for name, resource in resources.items():
        listed = resource["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        by_sid = {s["Sid"]: s for s in (s["Fn::If"][1] if "Fn::If" in s else s for s in listed)}
        objects = [
            r["Fn::Sub"]
            for s in by_sid.values()
            if str(s["Action"]).startswith(("s3:", "['s3:")) and s["Sid"] != "Bucket"
            for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
        ]
        assert objects and all(o.startswith("arn:${AWS::Partition}:s3:::${BucketName}/${KeyPrefix}") for o in objects)
        assert "${RepositoryName}" in by_sid["Pull"]["Resource"]["Fn::Sub"], name
        wildcard = {sid for sid, s in by_sid.items() if s["Resource"] == "*"}
        # none of these actions supports resource-level permissions; Vpc only with [security] subnets
        assert wildcard == {"RegistryLogin", "Metrics", "Vpc"}, name
