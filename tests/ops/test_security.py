"""``[security]``: each hardened default as it appears in the requests ops builds (validated by botocore's
service model under moto), each switch turning it off, and each refusal with its message.

Roles (which role each kind of work runs as, and what the stack's roles may reach), KMS keys, network
isolation, VPC, inter-container traffic encryption, and the bucket's TLS-only policy, versioning and
default encryption. The role template itself is in test_role_and_teardown.py and test_templates.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import boto3
import pytest

from ops import batch, channels, endpoint, role, security, teardown, training, tuning
from ops.aws import Aws, OpsError
from ops.config import ConfigError, OpsConfig, SecuritySection, load
from ops.local import LocalAws
from support.aws import Calls, completed_training_job, push_test_images

BUCKET = "textclf-test-bucket"
MODEL_DATA = f"s3://{BUCKET}/textclf/output/done/output/model.tar.gz"
SUBNETS = ["subnet-0123abcd", "subnet-0123456789abcdef0"]
GROUPS = ["sg-0123abcd"]
EBS_TRAINING, NVME_TRAINING = "ml.m5.xlarge", "ml.g5.xlarge"


@pytest.fixture
def key(aws: Aws) -> dict[str, str]:
    """A KMS key in moto, configured as security.kms_key_id; returns its id and ARN."""
    metadata = boto3.client("kms", region_name=aws.region).create_key(Description="textclf")["KeyMetadata"]
    aws.cfg.security.kms_key_id = metadata["KeyId"]
    return {"id": metadata["KeyId"], "arn": metadata["Arn"]}


@pytest.fixture
def vpc(aws: Aws) -> None:
    aws.cfg.security.subnets, aws.cfg.security.security_group_ids = list(SUBNETS), list(GROUPS)


@pytest.fixture
def stack_roles(moto: None, config_path: Path, session: boto3.Session) -> Aws:
    """An Aws with no role configured and the role stack deployed: every kind of work runs as the stack's role."""
    push_test_images()
    aws = Aws(load(config_path), session=session)
    role.deploy(aws)
    return aws


def _valid(calls: Calls) -> None:
    assert calls.invalid() == []


# --- configuration ------------------------------------------------------------------------------


def test_defaults_are_the_hardened_choice() -> None:
    s = SecuritySection()
    assert s.training_network_isolation and s.model_network_isolation and s.inter_container_encryption
    assert s.bucket_tls_only and s.bucket_versioning and s.bucket_encryption
    assert s.bucket_noncurrent_version_days == 30
    assert s.kms_key_id == "" and s.subnets == [] and s.security_group_ids == []  # AWS-managed keys, no VPC


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        (
            "[security]\nsubnets = ['subnet-0123abcd']\n",
            {},
            "security.subnets and security.security_group_ids go together",
        ),
        ("[security]\nsecurity_group_ids = ['sg-0123abcd']\n", {}, "go together: a VPC needs both"),
        (
            "[security]\nsubnets = ['subnet-xyz']\nsecurity_group_ids = ['sg-0123abcd']\n",
            {},
            "security.subnets: 'subnet-xyz' is not an id like subnet-0123abcd",
        ),
        (
            "[security]\nsubnets = ['subnet-0123abcd']\nsecurity_group_ids = ['0123abcd']\n",
            {},
            "security.security_group_ids: '0123abcd' is not an id like sg-0123abcd",
        ),
        (
            "[security]\nsubnets = ['subnet-0123abcd']\nsecurity_group_ids = ['sg-0123abcd', 'sg-0123abcd']\n",
            {},
            "security.security_group_ids: an id is given twice",
        ),
        (
            "[security]\nsubnets = ['subnet-0123abcd']\nsecurity_group_ids = "
            + str([f"sg-0000000{i}" for i in range(6)])
            + "\n",
            {},
            "security.security_group_ids: at most 5, got 6",
        ),
        ("", {"TEXTCLF_SECURITY_KMS_KEY_ID": "my key"}, "security.kms_key_id 'my key': give a KMS key id"),
        ("[security]\nkms_key_id = 'key/1234'\n", {}, "give a KMS key id, key ARN, alias/<name> or alias ARN"),
        ("[security]\nbucket_noncurrent_version_days = -1\n", {}, "bucket_noncurrent_version_days must be >= 0"),
        ("", {"TEXTCLF_SECURITY_TRAINING_NETWORK_ISOLATION": "maybe"}, "expected a boolean"),
    ],
)
def test_bad_security_settings_are_refused_when_read(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    path = tmp_path / "ops.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load(path, env={"AWS_DEFAULT_REGION": "eu-west-1", **env})


@pytest.mark.parametrize(
    "kms_key_id",
    [
        "1234abcd-12ab-34cd-56ef-1234567890ab",
        "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "mrk-1234abcd12ab34cd56ef1234567890ab",
        "alias/textclf",
        "arn:aws:kms:eu-west-1:111122223333:alias/textclf",
    ],
)
def test_every_form_of_kms_key_is_accepted(tmp_path: Path, kms_key_id: str) -> None:
    path = tmp_path / "ops.toml"
    path.write_text(f"[security]\nkms_key_id = '{kms_key_id}'\n", encoding="utf-8")
    assert load(path, env={"AWS_DEFAULT_REGION": "eu-west-1"}).security.kms_key_id == kms_key_id


def test_switches_come_from_the_environment_too(tmp_path: Path) -> None:
    path = tmp_path / "ops.toml"
    path.write_text("", encoding="utf-8")
    env = {
        "AWS_DEFAULT_REGION": "eu-west-1",
        "TEXTCLF_SECURITY_TRAINING_NETWORK_ISOLATION": "false",
        "TEXTCLF_SECURITY_BUCKET_VERSIONING": "off",
        "TEXTCLF_AWS_TRAINING_ROLE_ARN": "arn:aws:iam::111122223333:role/t",
    }
    cfg = load(path, env=env)
    assert cfg.security.training_network_isolation is False and cfg.security.bucket_versioning is False
    assert cfg.security.model_network_isolation is True
    assert cfg.aws.training_role_arn == "arn:aws:iam::111122223333:role/t"


@pytest.mark.parametrize(
    ("instance_type", "nvme"),
    [
        ("ml.g5.xlarge", True),
        ("ml.g4dn.xlarge", True),
        ("ml.p4d.24xlarge", True),
        ("ml.p4de.24xlarge", True),
        ("ml.p3dn.24xlarge", True),
        ("ml.c5d.2xlarge", True),
        ("ml.m6id.xlarge", True),
        ("ml.g6e.xlarge", True),
        ("ml.p5.48xlarge", True),
        ("ml.p6-b200.48xlarge", True),
        ("ml.c5.xlarge", False),
        ("ml.c6i.xlarge", False),
        ("ml.m5.xlarge", False),
        ("ml.c5n.2xlarge", False),
        ("ml.m6in.xlarge", False),
        ("ml.p3.2xlarge", False),
        ("local", False),
    ],
)
def test_which_instance_types_have_nvme_instance_storage(instance_type: str, nvme: bool) -> None:
    assert security.has_instance_storage(instance_type) is nvme


# --- training -----------------------------------------------------------------------------------


def test_training_defaults_isolate_the_container_and_use_aws_managed_keys(
    aws: Aws, calls: Calls, uploaded: dict[str, str]
) -> None:
    training.start(aws)
    _valid(calls)
    request = calls.one("CreateTrainingJob")
    assert request["EnableNetworkIsolation"] is True
    assert "EnableInterContainerTrafficEncryption" not in request  # one host: no traffic between hosts
    assert "VpcConfig" not in request
    assert "KmsKeyId" not in request["OutputDataConfig"]
    assert "VolumeKmsKeyId" not in request["ResourceConfig"]


def test_training_network_isolation_can_be_switched_off(aws: Aws, calls: Calls, uploaded: dict[str, str]) -> None:
    aws.cfg.security.training_network_isolation = False
    aws.cfg.training.hyperparameters.pop("model_name_or_path")  # the hub id is fine with the network
    training.start(aws)
    _valid(calls)
    assert calls.one("CreateTrainingJob").get("EnableNetworkIsolation") in (None, False)


@pytest.mark.parametrize("encrypt", [True, False], ids=["encrypted", "switched-off"])
def test_multi_host_training_encrypts_traffic_between_hosts(
    aws: Aws, calls: Calls, uploaded: dict[str, str], encrypt: bool
) -> None:
    aws.cfg.training.instance_count = 2
    aws.cfg.security.inter_container_encryption = encrypt
    training.start(aws)
    _valid(calls)
    request = calls.one("CreateTrainingJob")
    assert request.get("EnableInterContainerTrafficEncryption", False) is encrypt
    assert request["EnableNetworkIsolation"] is True  # hosts still reach each other (botocore's documentation)


def test_training_with_a_kms_key_encrypts_output_and_volume(
    aws: Aws, calls: Calls, uploaded: dict[str, str], key: dict[str, str]
) -> None:
    aws.cfg.training.instance_type = EBS_TRAINING
    training.start(aws)
    _valid(calls)
    request = calls.one("CreateTrainingJob")
    assert request["OutputDataConfig"]["KmsKeyId"] == key["id"]
    assert request["ResourceConfig"]["VolumeKmsKeyId"] == key["id"]


def test_no_volume_key_on_nvme_instance_storage(
    aws: Aws, calls: Calls, uploaded: dict[str, str], key: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """AWS refuses VolumeKmsKeyId for an instance type with local storage (ml.g5: NVMe, hardware-encrypted)."""
    aws.cfg.training.instance_type = NVME_TRAINING
    training.start(aws)
    _valid(calls)
    request = calls.one("CreateTrainingJob")
    assert "VolumeKmsKeyId" not in request["ResourceConfig"]
    assert request["OutputDataConfig"]["KmsKeyId"] == key["id"]  # S3 still gets the key
    assert "ml.g5.xlarge has NVMe instance storage" in capsys.readouterr().out


def test_training_runs_in_the_configured_vpc(aws: Aws, calls: Calls, uploaded: dict[str, str], vpc: None) -> None:
    training.start(aws)
    _valid(calls)
    assert calls.one("CreateTrainingJob")["VpcConfig"] == {"SecurityGroupIds": GROUPS, "Subnets": SUBNETS}


HUB_REFUSAL = r"training_network_isolation is on \(the default\).* cannot download model_name_or_path '{}'"


@pytest.mark.parametrize("hub_id", ["sentence-transformers/all-MiniLM-L6-v2", "bert-base-uncased"])
def test_an_isolated_job_that_would_download_its_encoder_is_refused(
    aws: Aws, calls: Calls, uploaded: dict[str, str], hub_id: str
) -> None:
    with pytest.raises(ConfigError, match=HUB_REFUSAL.format(re.escape(hub_id)) + r".*--channel pretrained="):
        training.start(aws, overrides={"model_name_or_path": hub_id})
    aws.cfg.training.hyperparameters.pop("model_name_or_path")  # the container's default is a hub id too
    with pytest.raises(ConfigError, match=HUB_REFUSAL.format("sentence-transformers/all-MiniLM-L6-v2")):
        training.start(aws)
    assert calls.of("CreateTrainingJob") == []


def test_a_pretrained_channel_makes_the_hub_id_irrelevant(aws: Aws, calls: Calls, uploaded: dict[str, str]) -> None:
    given = {**uploaded, "pretrained": f"s3://{BUCKET}/textclf/data/pretrained/v1/"}
    training.start(aws, channels=given, overrides={"model_name_or_path": "bert-base-uncased"})
    _valid(calls)
    assert calls.one("CreateTrainingJob")["EnableNetworkIsolation"] is True


def test_tuning_refuses_a_hub_id_among_the_encoders_it_may_try(
    aws: Aws, calls: Calls, uploaded: dict[str, str]
) -> None:
    aws.cfg.tuning.ranges["model_name_or_path"] = {"type": "categorical", "values": ["/opt/models/a", "roberta-base"]}
    with pytest.raises(ConfigError, match=HUB_REFUSAL.format("roberta-base")):
        tuning.start(aws)
    assert calls.of("CreateHyperParameterTuningJob") == []


def test_tuning_trials_inherit_every_setting_of_the_trainer(
    aws: Aws, calls: Calls, uploaded: dict[str, str], key: dict[str, str], vpc: None
) -> None:
    """sagemaker-train 1.27's tuner copies OutputDataConfig and VpcConfig; ops adds what it leaves out."""
    aws.cfg.training.instance_type, aws.cfg.training.instance_count = EBS_TRAINING, 2
    tuning.start(aws)
    _valid(calls)
    definition = calls.one("CreateHyperParameterTuningJob")["TrainingJobDefinition"]
    assert definition["EnableNetworkIsolation"] is True
    assert definition["EnableInterContainerTrafficEncryption"] is True
    assert definition["ResourceConfig"]["VolumeKmsKeyId"] == key["id"]
    assert definition["ResourceConfig"]["InstanceCount"] == 2  # the SDK's own fields are kept
    assert definition["OutputDataConfig"]["KmsKeyId"] == key["id"]
    assert definition["VpcConfig"] == {"SecurityGroupIds": GROUPS, "Subnets": SUBNETS}
    # the handler that adds them was for that one request
    training.start(aws)
    assert "EnableNetworkIsolation" in calls.one("CreateTrainingJob")


def test_tuning_sends_nothing_of_it_when_switched_off(aws: Aws, calls: Calls, uploaded: dict[str, str]) -> None:
    aws.cfg.security.training_network_isolation = False
    tuning.start(aws)
    _valid(calls)
    definition = calls.one("CreateHyperParameterTuningJob")["TrainingJobDefinition"]
    assert "EnableNetworkIsolation" not in definition
    assert "EnableInterContainerTrafficEncryption" not in definition
    assert "VolumeKmsKeyId" not in definition["ResourceConfig"]


# --- models, endpoints, transform jobs ------------------------------------------------------------


def test_endpoint_model_is_isolated_by_default_and_the_config_has_no_key(aws: Aws, calls: Calls) -> None:
    endpoint.deploy(aws, completed_training_job(aws), autoscale=False)
    _valid(calls)
    model = calls.one("CreateModel")
    assert model["EnableNetworkIsolation"] is True
    assert "VpcConfig" not in model
    assert "KmsKeyId" not in calls.one("CreateEndpointConfig")


def test_endpoint_model_isolation_can_be_switched_off(aws: Aws, calls: Calls) -> None:
    aws.cfg.security.model_network_isolation = False
    endpoint.deploy(aws, completed_training_job(aws), autoscale=False)
    _valid(calls)
    assert "EnableNetworkIsolation" not in calls.one("CreateModel")


def test_endpoint_with_key_and_vpc(aws: Aws, calls: Calls, key: dict[str, str], vpc: None) -> None:
    endpoint.deploy(aws, completed_training_job(aws), autoscale=False)  # ml.c5.xlarge: an EBS volume
    _valid(calls)
    assert calls.one("CreateModel")["VpcConfig"] == {"SecurityGroupIds": GROUPS, "Subnets": SUBNETS}
    assert calls.one("CreateEndpointConfig")["KmsKeyId"] == key["id"]


def test_endpoint_on_nvme_instance_storage_gets_no_volume_key(
    aws: Aws, calls: Calls, key: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    aws.cfg.endpoint.instance_type = "ml.g4dn.xlarge"
    endpoint.deploy(aws, completed_training_job(aws), autoscale=False)
    _valid(calls)
    assert "KmsKeyId" not in calls.one("CreateEndpointConfig")
    assert "ml.g4dn.xlarge has NVMe instance storage" in capsys.readouterr().out


def _serverless(aws: Aws) -> str:
    aws.cfg.endpoint.serverless.enabled = True
    channels.ensure_bucket(aws)
    aws.client("s3").put_object(Bucket=BUCKET, Key=MODEL_DATA.removeprefix(f"s3://{BUCKET}/"), Body=b"model")
    return MODEL_DATA


def test_serverless_model_has_no_isolation_and_its_config_no_key(
    aws: Aws, calls: Calls, key: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Serverless Inference supports neither network isolation nor a VPC, and has no instance volume."""
    endpoint.deploy(aws, _serverless(aws))
    _valid(calls)
    assert "EnableNetworkIsolation" not in calls.one("CreateModel")
    assert "KmsKeyId" not in calls.one("CreateEndpointConfig")
    out = capsys.readouterr().out
    assert "serverless: no network isolation" in out and "serverless: no KmsKeyId" in out


def test_a_configured_vpc_refuses_a_serverless_endpoint(aws: Aws, calls: Calls, vpc: None) -> None:
    model_data = _serverless(aws)
    calls.items.clear()
    with pytest.raises(ConfigError, match="a serverless endpoint cannot run in a VPC"):
        endpoint.deploy(aws, model_data)
    assert [op for op in calls.operations() if op.startswith(("Create", "Delete", "Update"))] == []


def test_transform_job_with_key_and_vpc(aws: Aws, calls: Calls, key: dict[str, str], vpc: None) -> None:
    batch.start(aws, f"s3://{BUCKET}/textclf/batch/in/", model_data=MODEL_DATA)  # ml.c5.xlarge: EBS
    _valid(calls)
    model = calls.one("CreateModel")
    assert model["EnableNetworkIsolation"] is True
    assert model["VpcConfig"] == {"SecurityGroupIds": GROUPS, "Subnets": SUBNETS}
    request = calls.one("CreateTransformJob")
    assert request["TransformOutput"]["KmsKeyId"] == key["id"]
    assert request["TransformResources"]["VolumeKmsKeyId"] == key["id"]


def test_transform_job_defaults_and_nvme(aws: Aws, calls: Calls, key: dict[str, str]) -> None:
    aws.cfg.batch.instance_type = "ml.g4dn.xlarge"
    batch.start(aws, f"s3://{BUCKET}/textclf/batch/in/", model_data=MODEL_DATA)
    _valid(calls)
    request = calls.one("CreateTransformJob")
    assert request["TransformOutput"]["KmsKeyId"] == key["id"]
    assert "VolumeKmsKeyId" not in request["TransformResources"]
    aws.cfg.security.kms_key_id = ""
    batch.start(aws, f"s3://{BUCKET}/textclf/batch/in/", model_data=MODEL_DATA)
    last = calls.of("CreateTransformJob")[-1]
    assert "KmsKeyId" not in last["TransformOutput"] and "VolumeKmsKeyId" not in last["TransformResources"]


# --- roles ----------------------------------------------------------------------------------------


def test_each_kind_of_work_runs_as_its_own_stack_role(stack_roles: Aws, calls: Calls, tmp_path: Path) -> None:
    aws = stack_roles
    arns = {kind: role.arn(aws, kind) for kind in role.KINDS}
    train = tmp_path / "train.csv"
    train.write_text("text,label\ngood,pos\nbad,neg\n", encoding="utf-8")
    channels.upload(aws, {"train": train})
    training.start(aws)
    tuning.start(aws)
    endpoint.deploy(aws, completed_training_job(aws), autoscale=False)
    batch.start(aws, f"s3://{BUCKET}/textclf/batch/in/", model_data=MODEL_DATA)
    _valid(calls)
    assert calls.of("CreateTrainingJob")[0]["RoleArn"] == arns["training"]  # (the second: the test's own)
    assert calls.one("CreateHyperParameterTuningJob")["TrainingJobDefinition"]["RoleArn"] == arns["training"]
    assert [m["ExecutionRoleArn"] for m in calls.of("CreateModel")] == [arns["serving"], arns["batch"]]


@pytest.mark.parametrize(
    ("start", "message"),
    [
        (
            lambda aws: training.start(aws, channels={"train": f"s3://{BUCKET}/elsewhere/train/"}),
            r"channel train s3://textclf-test-bucket/elsewhere/train/ is outside s3://textclf-test-bucket/textclf/data/:"
            r" the training role of `python -m ops role` reaches only",
        ),
        (
            lambda aws: endpoint.deploy(aws, f"s3://{BUCKET}/models/model.tar.gz"),
            r"model data s3://textclf-test-bucket/models/model.tar.gz is outside .*/textclf/output/: the serving role",
        ),
        (
            lambda aws: batch.start(aws, f"s3://{BUCKET}/in/", model_data=MODEL_DATA),
            r"--input s3://textclf-test-bucket/in/ is outside .*/textclf/batch/: the batch role .* aws.batch_role_arn",
        ),
        (
            lambda aws: batch.start(
                aws, f"s3://{BUCKET}/textclf/batch/in/", model_data=MODEL_DATA, output_uri=f"s3://{BUCKET}/out/"
            ),
            r"--output s3://textclf-test-bucket/out/ is outside",
        ),
    ],
    ids=["training-channel", "endpoint-model", "batch-input", "batch-output"],
)
def test_what_a_stack_role_cannot_reach_is_refused_before_anything_starts(
    stack_roles: Aws, calls: Calls, start: Any, message: str
) -> None:
    calls.items.clear()
    with pytest.raises(ConfigError, match=message):
        start(stack_roles)
    assert [op for op in calls.operations() if op.startswith(("Create", "Delete", "Update"))] == []


def test_role_stack_with_a_kms_key_and_a_vpc(plain_roles_aws: Aws, calls: Calls) -> None:
    aws = plain_roles_aws
    metadata = boto3.client("kms", region_name=aws.region).create_key()["KeyMetadata"]
    boto3.client("kms", region_name=aws.region).create_alias(AliasName="alias/textclf", TargetKeyId=metadata["KeyId"])
    aws.cfg.security.kms_key_id = "alias/textclf"  # an alias in the config; IAM needs the key's ARN
    aws.cfg.security.subnets, aws.cfg.security.security_group_ids = list(SUBNETS), list(GROUPS)
    arns = role.deploy(aws)
    _valid(calls)
    parameters = {p["ParameterKey"]: p["ParameterValue"] for p in calls.one("CreateStack")["Parameters"]}
    assert parameters["KmsKeyArn"] == metadata["Arn"] and parameters["UseVpc"] == "true"
    iam = aws.client("iam")
    for kind, arn in arns.items():
        name = arn.rsplit("/", 1)[1]
        (policy,) = iam.list_role_policies(RoleName=name)["PolicyNames"]
        document = iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"]
        statements = {s["Sid"]: s for s in _statements(document)}
        assert statements["Kms"]["Resource"] == statements["KmsVolumeGrant"]["Resource"] == metadata["Arn"], kind
        assert "ec2:CreateNetworkInterface" in statements["Vpc"]["Action"], kind
    # serving never writes to S3; it only decrypts what it reads
    serving = {s["Sid"]: s for s in _statements(_policy(aws, arns["serving"]))}
    assert serving["Kms"]["Action"] == "kms:Decrypt"
    s3_actions = {a for s in serving.values() for a in _listed(s["Action"]) if a.startswith("s3:")}
    assert s3_actions == {"s3:GetObject"}


@pytest.fixture
def plain_roles_aws(moto: None, config_path: Path, session: boto3.Session) -> Aws:
    return Aws(load(config_path), session=session)


def _policy(aws: Aws, arn: str) -> Any:
    iam = aws.client("iam")
    name = arn.rsplit("/", 1)[1]
    (policy,) = iam.list_role_policies(RoleName=name)["PolicyNames"]
    return iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"]


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statements(document: Any) -> list[dict[str, Any]]:
    """moto 5.2 returns a CloudFormation inline policy as Python's repr, URL-quoted, with AWS::NoValue as None."""
    import ast
    import urllib.parse

    if isinstance(document, str):
        text = urllib.parse.unquote(document)
        try:
            document = json.loads(text)
        except json.JSONDecodeError:
            document = ast.literal_eval(text)
    return [s for s in document["Statement"] if s is not None]


def test_an_unknown_kms_key_is_refused_with_the_setting(plain_roles_aws: Aws) -> None:
    plain_roles_aws.cfg.security.kms_key_id = "alias/nope"
    with pytest.raises(
        OpsError, match=r"security.kms_key_id 'alias/nope': KMS cannot describe it \(NotFoundException\)"
    ):
        role.deploy(plain_roles_aws)


# --- bucket ---------------------------------------------------------------------------------------


def _bucket_requests(calls: Calls) -> dict[str, dict[str, Any]]:
    puts = ("PutBucketPolicy", "PutBucketVersioning", "PutBucketEncryption", "PutBucketLifecycleConfiguration")
    return {op: calls.one(op) for op in puts if calls.of(op)}


def test_a_new_bucket_is_private_tls_only_versioned_and_encrypted(aws: Aws, calls: Calls) -> None:
    channels.ensure_bucket(aws)
    _valid(calls)
    sent = _bucket_requests(calls)
    assert set(sent) == {
        "PutBucketPolicy",
        "PutBucketVersioning",
        "PutBucketEncryption",
        "PutBucketLifecycleConfiguration",
    }
    assert calls.one("PutPublicAccessBlock")["PublicAccessBlockConfiguration"] == dict.fromkeys(
        ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True
    )
    assert json.loads(sent["PutBucketPolicy"]["Policy"])["Statement"] == [
        {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    ]
    assert sent["PutBucketVersioning"]["VersioningConfiguration"] == {"Status": "Enabled"}
    assert sent["PutBucketEncryption"]["ServerSideEncryptionConfiguration"]["Rules"] == [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": False}
    ]
    assert sent["PutBucketLifecycleConfiguration"]["LifecycleConfiguration"]["Rules"] == [
        {
            "ID": "textclf-expire-noncurrent-versions",
            "Filter": {"Prefix": "textclf/"},
            "Status": "Enabled",
            "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
        }
    ]
    # what S3 now holds
    s3 = aws.client("s3")
    assert s3.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"
    assert json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"])["Statement"][0]["Sid"] == "DenyInsecureTransport"
    calls.items.clear()
    channels.ensure_bucket(aws)  # already so: nothing is written again
    assert _bucket_requests(calls) == {}


def test_with_a_kms_key_the_bucket_and_the_uploads_use_it(
    aws: Aws, calls: Calls, key: dict[str, str], tmp_path: Path
) -> None:
    data = tmp_path / "train.csv"
    data.write_text("text,label\ngood,pos\n", encoding="utf-8")
    channels.upload(aws, {"train": data})
    _valid(calls)
    rules = calls.one("PutBucketEncryption")["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules == [
        {
            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key["arn"]},
            "BucketKeyEnabled": True,
        }
    ]
    puts = calls.of("PutObject")
    assert len(puts) == 2  # the file and the version's .complete marker
    assert all(p["ServerSideEncryption"] == "aws:kms" and p["SSEKMSKeyId"] == key["arn"] for p in puts)


@pytest.mark.parametrize(
    ("switch", "operation"),
    [
        ("bucket_tls_only", "PutBucketPolicy"),
        ("bucket_versioning", "PutBucketVersioning"),
        ("bucket_encryption", "PutBucketEncryption"),
        ("bucket_noncurrent_version_days", "PutBucketLifecycleConfiguration"),
    ],
)
def test_each_bucket_protection_can_be_switched_off(aws: Aws, calls: Calls, switch: str, operation: str) -> None:
    setattr(aws.cfg.security, switch, 0 if switch.endswith("_days") else False)
    channels.ensure_bucket(aws)
    _valid(calls)
    assert calls.of(operation) == []
    others = {"PutBucketPolicy", "PutBucketVersioning", "PutBucketEncryption", "PutBucketLifecycleConfiguration"}
    others -= {operation, *(["PutBucketLifecycleConfiguration"] if switch == "bucket_versioning" else [])}
    assert others <= set(_bucket_requests(calls))


def test_an_existing_bucket_keeps_its_own_policy_and_lifecycle_rules(aws: Aws, calls: Calls) -> None:
    s3 = boto3.client("s3", region_name=aws.region)  # not recorded: the bucket as someone else left it
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": aws.region})
    theirs = {
        "Sid": "TheirAuditRole",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::123456789012:role/audit"},
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{BUCKET}/*",
    }
    s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps({"Version": "2012-10-17", "Statement": [theirs]}))
    rule = {"ID": "logs", "Filter": {"Prefix": "logs/"}, "Status": "Enabled", "Expiration": {"Days": 7}}
    s3.put_bucket_lifecycle_configuration(Bucket=BUCKET, LifecycleConfiguration={"Rules": [rule]})
    channels.ensure_bucket(aws)
    _valid(calls)
    assert calls.of("CreateBucket") == []
    statements = json.loads(calls.one("PutBucketPolicy")["Policy"])["Statement"]
    assert [s["Sid"] for s in statements] == ["TheirAuditRole", "DenyInsecureTransport"]
    rules = calls.one("PutBucketLifecycleConfiguration")["LifecycleConfiguration"]["Rules"]
    assert [r["ID"] for r in rules] == ["logs", "textclf-expire-noncurrent-versions"]


def test_a_bucket_ops_may_not_change_is_refused_with_the_switch(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.exceptions import ClientError

    s3 = aws.client("s3")

    def denied(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "PutBucketPolicy")

    monkeypatch.setattr(s3, "put_bucket_policy", denied)
    with pytest.raises(
        OpsError, match=r"could not set its bucket policy \(AccessDenied\).*security.bucket_tls_only = false"
    ):
        channels.ensure_bucket(aws)


def test_teardown_all_deletes_every_version_under_the_prefix(aws: Aws, calls: Calls, bucket: str) -> None:
    s3 = aws.client("s3")
    for body in (b"one", b"two"):  # two versions of one key, then a delete marker
        s3.put_object(Bucket=BUCKET, Key="textclf/data/x.csv", Body=body)
    s3.delete_object(Bucket=BUCKET, Key="textclf/data/x.csv")
    teardown.storage(aws)
    _valid(calls)
    deleted = calls.one("DeleteObjects")["Delete"]["Objects"]
    assert len(deleted) == 3 and all(o["VersionId"] for o in deleted)
    assert calls.one("DeleteBucket") == {"Bucket": BUCKET}  # nothing was left behind


# --- local mode ------------------------------------------------------------------------------------


def test_local_mode_sends_none_of_it(tmp_path: Path) -> None:
    """Local mode runs on this machine's Docker: no KMS, VPC, isolation or AWS role."""
    cfg: OpsConfig = load(env={"TEXTCLF_LOCAL_ROOT": str(tmp_path), "AWS_DEFAULT_REGION": "eu-west-1"})
    cfg.security.kms_key_id, cfg.security.subnets, cfg.security.security_group_ids = "alias/x", SUBNETS, GROUPS
    local = LocalAws(cfg)
    assert security.model_fields(local, serverless=False) == {}
    assert security.training_networking(local) is None
    assert security.kms_key(local) is None and security.vpc_config(local) is None
    assert role.arn(local, "training") == local.role_arn


def test_tuning_says_so_when_the_sdk_sends_its_request_elsewhere(
    aws: Aws, calls: Calls, uploaded: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """If a later SDK creates the tuning job through a client ops did not complete the request on, the
    trials would run without isolation: ops stops with the fix instead of saying nothing."""
    from types import SimpleNamespace

    from botocore.hooks import HierarchicalEmitter

    elsewhere = SimpleNamespace(sagemaker_client=SimpleNamespace(meta=SimpleNamespace(events=HierarchicalEmitter())))
    monkeypatch.setattr("sagemaker.core.utils.utils.SageMakerClient", lambda **_: elsewhere)
    with pytest.raises(OpsError, match=r"created the tuning job without the trainer's EnableNetworkIsolation"):
        tuning.start(aws)
    assert "EnableNetworkIsolation" not in calls.one("CreateHyperParameterTuningJob")["TrainingJobDefinition"]
