"""`python -m ops role` (the execution-role stack, least privilege) and `python -m ops teardown`
(what is deleted, and what is left standing), against moto; Stubber where moto cannot set the scene."""

from __future__ import annotations

import ast
import json
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from cfnlint.decode import decode

from ops import api, cli, endpoint, image, role, teardown
from ops.aws import Aws, OpsError, stack_outputs
from ops.config import ConfigError, load
from support.aws import SERVING_INSTANCE, Calls

ROLE_TEMPLATE = Path(__file__).resolve().parents[2] / "ops" / "role.yaml"
ROLE_STACK = "textclf-sagemaker-role"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
ARN = "arn:aws:sagemaker:eu-west-1:123456789012"
# a stack moto can create and delete: the API stack's own resources are not the point here
PLACEHOLDER_TEMPLATE = json.dumps({"Resources": {"Placeholder": {"Type": "AWS::SNS::Topic"}}})


@pytest.fixture
def plain_aws(moto: None, config_path: Path, session: boto3.Session) -> Aws:
    """An Aws with no role configured: the role must come from the role stack."""
    return Aws(load(config_path), session=session)


def _role_policy(aws: Aws, role_arn: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A role moto built from the template: its trust policy and the statements of its one inline policy."""
    iam = aws.client("iam")
    name = role_arn.rsplit("/", 1)[1]
    trust = iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"]
    (policy_name,) = iam.list_role_policies(RoleName=name)["PolicyNames"]
    assert iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"] == []
    document = iam.get_role_policy(RoleName=name, PolicyName=policy_name)["PolicyDocument"]
    # moto 5.2 leaves a statement whose Fn::If chose AWS::NoValue as null; CloudFormation drops it
    return _document(trust), [s for s in _document(document)["Statement"] if s is not None]


def _document(value: Any) -> Any:
    """A policy document as a dict. moto 5.2 keeps a CloudFormation inline policy as Python's repr
    of the dict, which then reaches the client as a string that is not JSON."""
    if not isinstance(value, str):
        return value
    text = urllib.parse.unquote(value)
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return ast.literal_eval(text)


# --- role ---------------------------------------------------------------------------------------

ROLE_PARAMETERS = [
    {"ParameterKey": "BucketName", "ParameterValue": "textclf-test-bucket"},
    {"ParameterKey": "KeyPrefix", "ParameterValue": "textclf/"},
    {"ParameterKey": "KmsKeyArn", "ParameterValue": ""},
    {"ParameterKey": "RepositoryName", "ParameterValue": "textclf"},
    {"ParameterKey": "UseVpc", "ParameterValue": "false"},
]


def _trusts_only_sagemaker_of_this_account(trust: dict[str, Any], account: str) -> None:
    assert trust["Statement"] == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "sagemaker.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {
                "StringEquals": {"aws:SourceAccount": account},
                "ArnLike": {"aws:SourceArn": f"arn:aws:sagemaker:eu-west-1:{account}:*"},
            },
        }
    ]


def test_role_creates_the_stack_and_its_roles_become_the_execution_roles(
    plain_aws: Aws, calls: Calls, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["role"], aws=plain_aws) == 0
    request = calls.one("CreateStack")
    assert request == {
        "StackName": ROLE_STACK,
        "TemplateBody": ROLE_TEMPLATE.read_text(encoding="utf-8"),
        "Parameters": ROLE_PARAMETERS,
        "Capabilities": ["CAPABILITY_IAM"],
        "Tags": [{"Key": "project", "Value": "textclf"}],
        "OnFailure": "ROLLBACK",
    }
    printed = capsys.readouterr().out
    account = plain_aws.account_id
    arns = {kind: role.arn(plain_aws, kind) for kind in role.KINDS}  # no role configured: the stack's outputs
    assert len(set(arns.values())) == 3  # three roles
    for kind, arn in arns.items():
        assert f"{kind} role {arn}\n" in printed
        assert arn.startswith(f"arn:aws:iam::{account}:role/")
    assert plain_aws.role_arn == arns["serving"]  # the stack's RoleArn: the serving role, as before the split

    # the roles moto built from the template: only SageMaker acting for this account may assume them
    bucket, logs = "arn:aws:s3:::textclf-test-bucket", f"arn:aws:logs:eu-west-1:{account}:log-group:/aws/sagemaker"
    policies = {kind: _role_policy(plain_aws, arn) for kind, arn in arns.items()}
    for trust, _ in policies.values():
        _trusts_only_sagemaker_of_this_account(trust, account)
    resources = {kind: {s["Sid"]: s["Resource"] for s in statements} for kind, (_, statements) in policies.items()}
    assert resources["training"]["ReadData"] == f"{bucket}/textclf/data/*"
    assert resources["training"]["WriteArtifacts"] == [f"{bucket}/textclf/output/*", f"{bucket}/textclf/checkpoints/*"]
    assert resources["serving"]["ReadModels"] == f"{bucket}/textclf/output/*"
    assert resources["batch"]["Transform"] == f"{bucket}/textclf/batch/*"
    assert resources["training"]["Logs"] == f"{logs}/TrainingJobs*"
    assert resources["serving"]["Logs"] == f"{logs}/Endpoints/*"
    assert resources["batch"]["Logs"] == f"{logs}/TransformJobs*"
    for kind in role.KINDS:
        assert resources[kind]["Pull"] == f"arn:aws:ecr:eu-west-1:{account}:repository/textclf"
        assert not {"Kms", "KmsVolumeGrant", "Vpc"} & set(resources[kind])  # no key, no VPC configured


def test_role_again_updates_the_stack_in_place(
    plain_aws: Aws, calls: Calls, capsys: pytest.CaptureFixture[str]
) -> None:
    first = role.deploy(plain_aws)
    assert cli.main(["role"], aws=plain_aws) == 0
    assert len(calls.of("CreateStack")) == 1  # never a second stack
    assert calls.one("UpdateStack")["StackName"] == ROLE_STACK
    assert "is up to date" in capsys.readouterr().out
    assert {kind: role.arn(plain_aws, kind) for kind in role.KINDS} == first


def test_role_follows_the_configured_repository_and_the_default_bucket(plain_aws: Aws, calls: Calls) -> None:
    plain_aws.cfg.aws.bucket = ""  # default: textclf-<account>-<region>
    plain_aws.cfg.image.repository = "textclf-gpu"
    plain_aws.cfg.aws.prefix = "/team/textclf/"
    arns = role.deploy(plain_aws)
    bucket = f"textclf-{plain_aws.account_id}-eu-west-1"
    parameters = {p["ParameterKey"]: p["ParameterValue"] for p in calls.one("CreateStack")["Parameters"]}
    assert parameters["BucketName"] == bucket
    assert parameters["RepositoryName"] == "textclf-gpu"
    assert parameters["KeyPrefix"] == "team/textclf/"
    resources = {s["Sid"]: s["Resource"] for s in _role_policy(plain_aws, arns["serving"])[1]}
    assert resources["ReadModels"] == f"arn:aws:s3:::{bucket}/team/textclf/output/*"
    assert resources["Pull"].endswith(":repository/textclf-gpu")


def test_a_configured_role_wins_over_the_stack_and_role_arn_stands_for_every_kind(plain_aws: Aws) -> None:
    role.deploy(plain_aws)
    mine = "arn:aws:iam::123456789012:role/mine"
    plain_aws.cfg.aws.role_arn = mine
    assert {kind: role.arn(plain_aws, kind) for kind in role.KINDS} == dict.fromkeys(role.KINDS, mine)
    plain_aws.cfg.aws.training_role_arn = "arn:aws:iam::123456789012:role/trainer"
    assert role.arn(plain_aws, "training") == "arn:aws:iam::123456789012:role/trainer"
    assert role.arn(plain_aws, "serving") == mine


def test_a_role_stack_from_before_the_split_serves_every_kind_until_updated(
    plain_aws: Aws, capsys: pytest.CaptureFixture[str]
) -> None:
    old = {
        "Resources": {"Role": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {}}}},
        "Outputs": {"RoleArn": {"Value": {"Fn::GetAtt": ["Role", "Arn"]}}},
    }
    plain_aws.client("cloudformation").create_stack(StackName=ROLE_STACK, TemplateBody=json.dumps(old))
    single = stack_outputs(plain_aws, ROLE_STACK)["RoleArn"]
    assert role.arn(plain_aws, "training") == single
    assert "predates separate roles" in capsys.readouterr().out
    arns = role.deploy(plain_aws)  # the update keeps the logical id Role: the serving role keeps its ARN
    assert arns["serving"] == single and arns["training"] != single


def test_no_role_at_all_is_refused_with_the_fix(plain_aws: Aws) -> None:
    with pytest.raises(ConfigError, match=r"no SageMaker execution role for batch: set aws.batch_role_arn .*ops role"):
        role.arn(plain_aws, "batch")


def test_role_policies_are_least_privilege() -> None:
    template, problems = decode(str(ROLE_TEMPLATE))
    assert not problems
    resources = template["Resources"]
    assert {k: r["Type"] for k, r in resources.items()} == dict.fromkeys(
        ("TrainingRole", "Role", "BatchRole"), "AWS::IAM::Role"
    )  # no managed policies, no users; "Role" is the serving role (the logical id of the earlier single role)
    assert set(template["Outputs"]) == {"TrainingRoleArn", "ServingRoleArn", "BatchRoleArn", "RoleArn"}
    statements: dict[str, dict[str, Any]] = {}
    for name, resource in resources.items():
        props = resource["Properties"]
        assert set(props) == {"Description", "AssumeRolePolicyDocument", "Policies"}
        assert props["AssumeRolePolicyDocument"]["Statement"] == [
            {
                "Effect": "Allow",
                "Principal": {"Service": "sagemaker.amazonaws.com"},
                "Action": "sts:AssumeRole",
                "Condition": {
                    "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
                    "ArnLike": {
                        "aws:SourceArn": {
                            "Fn::Sub": "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:*"
                        }
                    },
                },
            }
        ]
        assert len(props["Policies"]) == 1
        listed = props["Policies"][0]["PolicyDocument"]["Statement"]
        # a statement under a condition (a KMS key, a VPC) is {"Fn::If": [condition, statement, AWS::NoValue]}
        plain = [s["Fn::If"][1] if "Fn::If" in s else s for s in listed]
        for s in plain:
            assert s["Effect"] == "Allow" and set(s) <= {"Sid", "Effect", "Action", "Resource", "Condition"}
            actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
            assert all("*" not in a for a in actions), s  # no wildcard actions
            assert not any(a.startswith("iam:") for a in actions)  # cannot pass or change roles
        statements[name] = {s["Sid"]: s for s in plain}

    def actions(role_name: str) -> set[str]:
        return {
            a
            for s in statements[role_name].values()
            for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
        }

    # serving reads its models and nothing else from S3: no writes, no deletes, no listing
    assert {a for a in actions("Role") if a.startswith("s3:")} == {"s3:GetObject"}
    assert statements["Role"]["ReadModels"]["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:s3:::${BucketName}/${KeyPrefix}output/*"
    }
    assert {a for a in actions("BatchRole") if a.startswith("s3:")} == {
        "s3:ListBucket",
        "s3:GetBucketLocation",
        "s3:GetObject",
        "s3:PutObject",
        "s3:AbortMultipartUpload",
    }  # writes its outputs, deletes nothing
    # training reads the data and writes only models and checkpoints
    training = statements["TrainingRole"]
    assert training["ReadData"]["Action"] == "s3:GetObject"
    assert training["WriteArtifacts"]["Resource"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:s3:::${BucketName}/${KeyPrefix}output/*"},
        {"Fn::Sub": "arn:${AWS::Partition}:s3:::${BucketName}/${KeyPrefix}checkpoints/*"},
    ]
    for name in resources:
        by_sid = statements[name]
        # "*" only where the action has no resource-level permissions, and the metrics scoped by namespace
        assert {sid for sid, s in by_sid.items() if s["Resource"] == "*"} == {"RegistryLogin", "Metrics", "Vpc"}
        assert by_sid["RegistryLogin"]["Action"] == "ecr:GetAuthorizationToken"
        assert by_sid["Metrics"]["Condition"] == {"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}}
        # pulling only: nothing that could push to or delete from the repository
        assert set(by_sid["Pull"]["Action"]) == {
            "ecr:BatchGetImage",
            "ecr:GetDownloadUrlForLayer",
            "ecr:BatchCheckLayerAvailability",
        }
        assert by_sid["Kms"]["Resource"] == by_sid["KmsVolumeGrant"]["Resource"] == {"Ref": "KmsKeyArn"}
        assert by_sid["KmsVolumeGrant"]["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}
    assert statements["Role"]["Kms"]["Action"] == "kms:Decrypt"  # serving only reads


# --- teardown -----------------------------------------------------------------------------------


def _model(aws: Aws, name: str) -> None:
    aws.client("sagemaker").create_model(
        ModelName=name,
        ExecutionRoleArn=aws.role_arn,
        PrimaryContainer={"Image": aws.serving_image, "ModelDataUrl": "s3://textclf-test-bucket/m/model.tar.gz"},
    )


def _config(aws: Aws, name: str, model: str) -> None:
    aws.client("sagemaker").create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": model,
                "InitialInstanceCount": 1,
                "InstanceType": SERVING_INSTANCE,
            }
        ],
    )


def _names(aws: Aws) -> tuple[set[str], set[str], set[str]]:
    sm = aws.client("sagemaker")
    return (
        {e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]},
        {c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]},
        {m["ModelName"] for m in sm.list_models()["Models"]},
    )


@pytest.fixture
def scene(aws: Aws) -> dict[str, str]:
    """The project's endpoint (autoscaled) and API stack, plus resources teardown must tell apart."""
    deployed = endpoint.deploy(aws, "s3://textclf-test-bucket/m/model.tar.gz")
    config = deployed["EndpointConfigName"]
    model = aws.client("sagemaker").describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"][0]
    aws.client("cloudformation").create_stack(StackName="textclf-api", TemplateBody=PLACEHOLDER_TEMPLATE)
    # another endpoint still serves from a config (and model) with the project's prefix: both stay
    _model(aws, "textclf-test-shared-model")
    _config(aws, "textclf-test-shared", "textclf-test-shared-model")
    aws.client("sagemaker").create_endpoint(EndpointName="textclf-prod", EndpointConfigName="textclf-test-shared")
    # leftovers with the project's prefixes: deleted
    _model(aws, "textclf-batch-20260101-000000")
    _config(aws, "textclf-test-stale", "textclf-batch-20260101-000000")
    # someone else's: left alone even though unused
    _model(aws, "someone-else")
    _config(aws, "someone-else-config", "someone-else")
    return {"config": config, "model": model["ModelName"]}


def _json_tail(text: str) -> Any:
    """The JSON summary a command prints after its progress lines."""
    return json.loads(text[text.index("{\n") :])


def test_teardown_deletes_the_endpoint_and_the_projects_unused_configs_and_models(
    aws: Aws, calls: Calls, scene: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    calls.items.clear()
    assert cli.main(["teardown"], aws=aws) == 0
    summary = _json_tail(capsys.readouterr().out)
    summary = {k: sorted(v) if isinstance(v, list) else v for k, v in summary.items()}
    assert summary == {
        "api_stack": True,
        "endpoint": True,
        "endpoint_configs": sorted([scene["config"], "textclf-test-stale"]),
        "models": sorted([scene["model"], "textclf-batch-20260101-000000"]),
    }
    # the requests: autoscaling off first, then the endpoint, then exactly the unused project resources
    assert calls.one("DeleteStack") == {"StackName": "textclf-api"}
    assert calls.one("DeregisterScalableTarget") == {
        "ServiceNamespace": "sagemaker",
        "ResourceId": "endpoint/textclf-test/variant/AllTraffic",
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
    }
    assert calls.one("DeleteEndpoint") == {"EndpointName": "textclf-test"}
    ops = calls.operations()
    assert ops.index("DeregisterScalableTarget") < ops.index("DeleteEndpoint") < ops.index("DeleteEndpointConfig")
    assert sorted(c["EndpointConfigName"] for c in calls.of("DeleteEndpointConfig")) == summary["endpoint_configs"]
    assert sorted(c["ModelName"] for c in calls.of("DeleteModel")) == summary["models"]
    # what is left: the other endpoint with what it uses, and what is not the project's
    assert _names(aws) == (
        {"textclf-prod"},
        {"textclf-test-shared", "someone-else-config"},
        {"textclf-test-shared-model", "someone-else"},
    )
    assert (
        aws.client("application-autoscaling").describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
        == []
    )
    # the default keeps the role, the repository and the data
    for operation in ("StopTrainingJob", "DeleteRepository", "DeleteObjects", "DeleteBucket"):
        assert calls.of(operation) == [], operation
    assert [s["StackName"] for s in aws.client("cloudformation").describe_stacks()["Stacks"]] == []


def test_teardown_with_nothing_deployed_deletes_nothing(aws: Aws, calls: Calls) -> None:
    assert teardown.teardown(aws) == {"api_stack": False, "endpoint": False, "endpoint_configs": [], "models": []}
    assert [op for op in calls.operations() if op.startswith(("Delete", "Deregister", "Stop"))] == []


@pytest.fixture
def storage_scene(aws: Aws, uploaded: dict[str, str]) -> None:
    """The role stack, the ECR repository, and uploaded channels plus a Lambda zip under the prefix."""
    role.deploy(aws)
    image.ensure_repository(aws)
    api.upload_code(aws)


def _keys(aws: Aws) -> list[str]:
    return sorted(o["Key"] for o in aws.client("s3").list_objects_v2(Bucket="textclf-test-bucket").get("Contents", []))


def test_teardown_all_deletes_role_repository_and_the_prefix_but_not_other_data(
    aws: Aws, calls: Calls, storage_scene: None, scene: dict[str, str]
) -> None:
    s3 = aws.client("s3")
    s3.put_object(Bucket="textclf-test-bucket", Key="shared/keep.csv", Body=b"x")
    s3.put_object(Bucket="textclf-test-bucket", Key="textclf-old/keep.csv", Body=b"x")  # not under "textclf/"
    under_prefix = [k for k in _keys(aws) if k.startswith("textclf/")]
    assert len(under_prefix) >= 3
    calls.items.clear()

    summary = teardown.teardown(aws, everything=True)
    assert summary["role_stack"] is True and summary["stopped_jobs"] == []
    assert calls.one("DeleteRepository") == {"repositoryName": "textclf", "force": True}
    assert aws.client("ecr").describe_repositories()["repositories"] == []
    deleted = [o["Key"] for o in calls.one("DeleteObjects")["Delete"]["Objects"]]
    assert sorted(deleted) == under_prefix
    assert _keys(aws) == ["shared/keep.csv", "textclf-old/keep.csv"]
    assert calls.of("DeleteBucket") == []  # other data: the bucket stays
    assert [c["StackName"] for c in calls.of("DeleteStack")] == ["textclf-api", ROLE_STACK]  # API first
    assert aws.client("cloudformation").describe_stacks()["Stacks"] == []
    assert _names(aws)[0] == {"textclf-prod"}


def test_teardown_all_deletes_the_bucket_it_emptied(aws: Aws, calls: Calls, storage_scene: None) -> None:
    teardown.teardown(aws, everything=True)
    assert calls.one("DeleteBucket") == {"Bucket": "textclf-test-bucket"}
    assert "textclf-test-bucket" not in [b["Name"] for b in aws.client("s3").list_buckets()["Buckets"]]
    teardown.teardown(aws, everything=True)  # a second run finds nothing and does not fail


def test_teardown_all_reports_objects_s3_refused_to_delete(aws: Aws, bucket: str) -> None:
    # moto always deletes; Stubber plays S3 answering 200 with per-key errors, as DeleteObjects does
    s3 = aws.client("s3")
    with Stubber(s3) as stub:
        stub.add_response(
            "list_object_versions",
            {
                "Versions": [
                    {"Key": "textclf/data/train/a.csv", "VersionId": "v1"},
                    {"Key": "textclf/output/model.tar.gz", "VersionId": "v2"},
                ],
                "IsTruncated": False,
            },
            {"Bucket": "textclf-test-bucket", "Prefix": "textclf/"},
        )
        stub.add_response(
            "delete_objects",
            {
                "Deleted": [{"Key": "textclf/data/train/a.csv", "VersionId": "v1"}],
                "Errors": [
                    {
                        "Key": "textclf/output/model.tar.gz",
                        "VersionId": "v2",
                        "Code": "AccessDenied",
                        "Message": "Access Denied",
                    }
                ],
            },
            {
                "Bucket": "textclf-test-bucket",
                "Delete": {
                    "Objects": [
                        {"Key": "textclf/data/train/a.csv", "VersionId": "v1"},
                        {"Key": "textclf/output/model.tar.gz", "VersionId": "v2"},
                    ]
                },
            },
        )
        with pytest.raises(OpsError, match=r"1 object\(s\) .* textclf/output/model\.tar\.gz: AccessDenied"):
            teardown.storage(aws)
        stub.assert_no_pending_responses()  # and no DeleteBucket after the failure


def test_teardown_all_stops_only_the_projects_running_jobs(aws: Aws) -> None:
    # moto completes jobs at once, so nothing is ever InProgress there: Stubber plays running jobs
    sm = aws.client("sagemaker")
    running = {"StatusEquals": "InProgress"}
    counters: dict[str, Any] = {"TrainingJobStatusCounters": {}, "ObjectiveStatusCounters": {}}
    with Stubber(sm) as stub:
        stub.add_response(
            "list_hyper_parameter_tuning_jobs",
            {
                "HyperParameterTuningJobSummaries": [
                    {
                        "HyperParameterTuningJobName": name,
                        "HyperParameterTuningJobArn": f"{ARN}:hyper-parameter-tuning-job/{name}",
                        "HyperParameterTuningJobStatus": "InProgress",
                        "Strategy": "Bayesian",
                        "CreationTime": NOW,
                        **counters,
                    }
                    for name in ("textclf-hpo-260101-0000", "fraud-hpo-1")
                ]
            },
            running,
        )
        stub.add_response(
            "stop_hyper_parameter_tuning_job", {}, {"HyperParameterTuningJobName": "textclf-hpo-260101-0000"}
        )
        stub.add_response(
            "list_training_jobs",
            {
                "TrainingJobSummaries": [
                    {
                        "TrainingJobName": name,
                        "TrainingJobArn": f"{ARN}:training-job/{name}",
                        "CreationTime": NOW,
                        "TrainingJobStatus": "InProgress",
                    }
                    for name in ("textclf-20260101-000000", "textclf", "other-textclf-1")
                ]
            },
            running,
        )
        stub.add_response("stop_training_job", {}, {"TrainingJobName": "textclf-20260101-000000"})
        stub.add_response(
            "list_transform_jobs",
            {
                "TransformJobSummaries": [
                    {
                        "TransformJobName": "textclf-batch-20260101-000000",
                        "TransformJobArn": f"{ARN}:transform-job/textclf-batch-20260101-000000",
                        "CreationTime": NOW,
                        "TransformJobStatus": "InProgress",
                    }
                ]
            },
            running,
        )
        stub.add_response("stop_transform_job", {}, {"TransformJobName": "textclf-batch-20260101-000000"})
        assert teardown.stop_jobs(aws) == [
            "textclf-hpo-260101-0000",
            "textclf-20260101-000000",
            "textclf-batch-20260101-000000",
        ]
        stub.assert_no_pending_responses()


def _endpoint_listing(name: str) -> dict[str, Any]:
    return {
        "EndpointName": name,
        "EndpointArn": f"{ARN}:endpoint/{name}",
        "CreationTime": NOW,
        "LastModifiedTime": NOW,
        "EndpointStatus": "Updating",
    }


def _described_config(name: str, variants: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "EndpointConfigName": name,
        "EndpointConfigArn": f"{ARN}:endpoint-config/{name}",
        "ProductionVariants": variants,
        "CreationTime": NOW,
    }


def test_an_endpoint_mid_update_keeps_the_config_it_is_switching_to(aws: Aws) -> None:
    # moto has no UpdateEndpoint, so no PendingDeploymentSummary: Stubber plays an endpoint mid-update,
    # and a second one whose variants serve inference components (no ModelName)
    sm = aws.client("sagemaker")
    with Stubber(sm) as stub:
        stub.add_response(
            "list_endpoints", {"Endpoints": [_endpoint_listing("textclf-prod"), _endpoint_listing("llm")]}, {}
        )
        stub.add_response(
            "describe_endpoint",
            {
                **_endpoint_listing("textclf-prod"),
                "EndpointConfigName": "textclf-prod-old",
                "PendingDeploymentSummary": {"EndpointConfigName": "textclf-prod-new"},
            },
            {"EndpointName": "textclf-prod"},
        )
        stub.add_response(
            "describe_endpoint", {**_endpoint_listing("llm"), "EndpointConfigName": "llm-ic"}, {"EndpointName": "llm"}
        )
        for config, variants in (
            ("llm-ic", [{"VariantName": "AllTraffic"}]),
            ("textclf-prod-new", [{"VariantName": "AllTraffic", "ModelName": "textclf-prod-m2"}]),
            ("textclf-prod-old", [{"VariantName": "AllTraffic", "ModelName": "textclf-prod-m1"}]),
        ):
            stub.add_response(
                "describe_endpoint_config", _described_config(config, variants), {"EndpointConfigName": config}
            )
        stub.add_response(
            "list_endpoint_configs",
            {
                "EndpointConfigs": [
                    {"EndpointConfigName": n, "EndpointConfigArn": f"{ARN}:endpoint-config/{n}", "CreationTime": NOW}
                    for n in ("textclf-prod-old", "textclf-prod-new", "textclf-test-stale")
                ]
            },
            {},
        )
        stub.add_response("delete_endpoint_config", {}, {"EndpointConfigName": "textclf-test-stale"})
        stub.add_response(
            "list_models",
            {
                "Models": [
                    {"ModelName": n, "ModelArn": f"{ARN}:model/{n}", "CreationTime": NOW}
                    for n in ("textclf-prod-m1", "textclf-prod-m2", "textclf-test-m0")
                ]
            },
            {},
        )
        stub.add_response("delete_model", {}, {"ModelName": "textclf-test-m0"})
        assert teardown.endpoint_resources(aws) == {
            "endpoint_configs": ["textclf-test-stale"],
            "models": ["textclf-test-m0"],
        }
        stub.assert_no_pending_responses()
