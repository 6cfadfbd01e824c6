"""The ``[security]`` settings, turned into the fields of each request and into the bucket's protection.

Defaults are the hardened choice; each one is switchable in ``[security]`` (README, "Security on AWS"):

- **KMS** (``kms_key_id``; empty: AWS-managed keys): the training job's output and volume, the tuning
  job's trials, the endpoint config's volume, the transform job's output and volume, ops' own uploads
  (SSE-KMS) and the bucket's default encryption. A volume key is not sent for an instance type with
  NVMe instance storage: AWS refuses ``VolumeKmsKeyId`` there ("You can't request a VolumeKmsKeyId when
  using an instance type with local storage", botocore ``ResourceConfig`` / ``TransformResources``), the
  storage being encrypted by the instance's hardware; nor an endpoint config's ``KmsKeyId`` (the same rule
  in earlier API references, and it "does not encrypt instance local storage" in the current one), nor
  for a serverless endpoint (no instance volume).
- **Network isolation** of the training container (``training_network_isolation``) and of the model
  container (``model_network_isolation``, endpoints and transform jobs): neither needs the network. A
  training job that would download its encoder from the Hugging Face hub is refused before it starts.
  Serverless endpoints support neither network isolation nor a VPC (serverless-endpoints.html, "Feature
  exclusions"): the first is left off with a note, a configured VPC is refused.
- **VPC** (``subnets`` + ``security_group_ids``): ``VpcConfig`` of training and tuning jobs and models.
- **Inter-container traffic encryption** (``inter_container_encryption``) for multi-host training.
- **Bucket**: a TLS-only bucket policy, versioning with non-current versions expiring, default
  encryption (``ensure_bucket``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

from botocore.exceptions import ClientError

from ops.aws import Aws, OpsError
from ops.config import ConfigError

PRETRAINED_CHANNEL = "pretrained"  # textclf.train.pretrained.PRETRAINED_CHANNEL (not imported: it needs torch)

# Instance families with NVMe instance storage and no "d" in their name (c5d, m5d, r5d, g4dn, p3dn, p4d,
# p4de, c6id ... have one): SageMaker attaches no EBS volume to them (model-train-storage-tips-considerations:
# "ML instance families with the NVMe-type instance storage include ml.p4d, ml.g4dn, and ml.g5").
NVME_FAMILIES = frozenset({"g5", "g6", "g6e", "gr6", "p5", "p5e", "p5en", "p6-b200", "p6e-gb200", "trn1", "trn1n"})
_FAMILY = re.compile(r"^ml\.(?P<family>[a-z]+\d+(?P<attributes>[a-z]*)(?:-[a-z0-9]+)?)\.")

TLS_ONLY_SID = "DenyInsecureTransport"
NONCURRENT_RULE_ID = "textclf-expire-noncurrent-versions"


def has_instance_storage(instance_type: str) -> bool:
    """Whether a SageMaker instance type stores on NVMe instance storage rather than an EBS volume."""
    match = _FAMILY.match(instance_type)
    if match is None:
        return False
    return match["family"] in NVME_FAMILIES or "d" in match["attributes"]


def kms_key(aws: Aws) -> str | None:
    """The configured KMS key as given (SageMaker takes an id, an ARN, an alias or an alias ARN); None:
    AWS-managed keys. Local mode has no KMS."""
    return None if aws.local else aws.cfg.security.kms_key_id or None


def kms_key_arn(aws: Aws) -> str | None:
    """The configured key's ARN (S3 and IAM policies name keys by ARN), asked of KMS; None without a key."""
    key = kms_key(aws)
    if key is None:
        return None
    try:
        return str(aws.client("kms").describe_key(KeyId=key)["KeyMetadata"]["Arn"])
    except ClientError as exc:
        raise OpsError(
            f"security.kms_key_id {key!r}: KMS cannot describe it ({exc.response['Error']['Code']}); "
            "give a key id, key ARN, alias/<name> or alias ARN of this account and region"
        ) from None


def volume_kms_key(aws: Aws, instance_type: str, what: str) -> str | None:
    """The key for an instance's storage volume, or None where AWS refuses one (NVMe instance storage)."""
    key = kms_key(aws)
    if key is not None and has_instance_storage(instance_type):
        print(
            f"{what}: {instance_type} has NVMe instance storage, encrypted by the instance's hardware; AWS takes "
            "no volume KMS key there, so none is sent (security.kms_key_id still encrypts what goes to S3)"
        )
        return None
    return key


def vpc_config(aws: Aws) -> dict[str, list[str]] | None:
    s = aws.cfg.security
    if aws.local or not s.subnets:
        return None
    return {"SecurityGroupIds": list(s.security_group_ids), "Subnets": list(s.subnets)}


# --- training and tuning ------------------------------------------------------------------------------


def inter_container_encryption(aws: Aws) -> bool:
    """Encrypt the traffic between the hosts of a multi-host job (a single host has none)."""
    return aws.cfg.security.inter_container_encryption and aws.cfg.training.instance_count > 1


def training_networking(aws: Aws) -> Any:
    """The SDK's ``Networking`` for the trainer: isolation, VPC, inter-container encryption; None if none."""
    from sagemaker.core.training.configs import Networking

    if aws.local:
        return None
    s = aws.cfg.security
    vpc = vpc_config(aws)
    fields: dict[str, Any] = {}
    if s.training_network_isolation:
        fields["enable_network_isolation"] = True
    if inter_container_encryption(aws):
        fields["enable_inter_container_traffic_encryption"] = True
    if vpc is not None:
        fields["subnets"], fields["security_group_ids"] = vpc["Subnets"], vpc["SecurityGroupIds"]
    return Networking(**fields) if fields else None


def looks_like_hub_id(model_name_or_path: str) -> bool:
    """What ``textclf.train.pretrained.resolve`` takes for a hub id: no absolute path, no ``.`` or ``~``."""
    return not model_name_or_path.startswith(("/", ".", "~"))


def check_encoder_reachable(aws: Aws, channels: list[str], candidates: list[str]) -> None:
    """Refuse, before any job starts, a network-isolated training job that would download its encoder.

    ``candidates``: every ``model_name_or_path`` the job (or a tuning job's trials) may use. The
    ``pretrained`` channel takes precedence over all of them in the container.
    """
    if aws.local or not aws.cfg.security.training_network_isolation or PRETRAINED_CHANNEL in channels:
        return
    hub_ids = [c for c in candidates if looks_like_hub_id(c)]
    if not hub_ids:
        return
    name = hub_ids[0]
    raise ConfigError(
        f"security.training_network_isolation is on (the default), so the training container has no network "
        f"and cannot download model_name_or_path {name!r} from the Hugging Face hub. Give it the encoder "
        f"instead: download it once (e.g. `hf download {name} --local-dir enc/`) and upload it as "
        "the `pretrained` channel (`python -m ops upload --channel pretrained=enc/`), or set model_name_or_path "
        "to a path inside the image; or let training reach the network with security.training_network_isolation "
        "= false (TEXTCLF_SECURITY_TRAINING_NETWORK_ISOLATION=false)"
    )


# --- models, endpoint configs, transform jobs ---------------------------------------------------------


def refuse_serverless_vpc(aws: Aws) -> None:
    """A configured VPC is a promise about where the model runs; a serverless endpoint cannot keep it."""
    if vpc_config(aws) is not None:
        raise ConfigError(
            "security.subnets / security.security_group_ids: a serverless endpoint cannot run in a VPC "
            "(serverless-endpoints.html, Feature exclusions); deploy on instances, or deploy the serverless "
            "endpoint with a configuration that has no VPC"
        )


def model_fields(aws: Aws, serverless: bool) -> dict[str, Any]:
    """``CreateModel``'s security fields. A serverless endpoint takes neither a VPC nor network isolation."""
    if aws.local:
        return {}
    s = aws.cfg.security
    vpc = vpc_config(aws)
    if serverless:
        refuse_serverless_vpc(aws)
        if s.model_network_isolation:
            print("serverless: no network isolation (serverless endpoints do not support it)")
        return {}
    fields: dict[str, Any] = {}
    if s.model_network_isolation:
        fields["EnableNetworkIsolation"] = True
    if vpc is not None:
        fields["VpcConfig"] = vpc
    return fields


def endpoint_config_kms(aws: Aws) -> dict[str, str]:
    """``CreateEndpointConfig.KmsKeyId`` for the endpoint's instance volume, where there is one."""
    e = aws.cfg.endpoint
    key = kms_key(aws)
    if key is None:
        return {}
    if e.serverless.enabled:
        print("serverless: no KmsKeyId on the endpoint config (a serverless endpoint has no instance volume)")
        return {}
    key = volume_kms_key(aws, e.instance_type, "endpoint")
    return {"KmsKeyId": key} if key else {}


# --- S3 -----------------------------------------------------------------------------------------------


def upload_arguments(key_arn: str | None) -> dict[str, str]:
    """``ExtraArgs`` / ``PutObject`` fields for ops' own uploads: SSE-KMS with the key, else the bucket's default."""
    return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key_arn} if key_arn else {}


def tls_only_statement(aws: Aws) -> dict[str, Any]:
    bucket = f"arn:{aws.partition}:s3:::{aws.bucket}"
    return {
        "Sid": TLS_ONLY_SID,
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [bucket, f"{bucket}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _refused(aws: Aws, what: str, permission: str, switch: str, exc: ClientError) -> OpsError:
    return OpsError(
        f"bucket {aws.bucket}: could not {what} ({_code(exc)}); it needs s3:{permission}, or set "
        f"security.{switch} = false to leave the bucket as it is"
    )


_Setting = TypeVar("_Setting")


def _current(
    aws: Aws, read: Callable[[], _Setting], absent: tuple[str, _Setting], what: str, permission: str, switch: str
) -> _Setting:
    """A bucket setting as S3 has it now, or ``absent[1]`` when S3 answers ``absent[0]`` (none set yet);
    any other error is a refusal naming the permission and the switch."""
    try:
        return read()
    except ClientError as exc:
        if _code(exc) != absent[0]:
            raise _refused(aws, what, permission, switch, exc) from None
        return absent[1]


def _encryption(aws: Aws, key_arn: str | None) -> None:
    s3 = aws.client("s3")
    rules: list[dict[str, Any]] = _current(
        aws,
        lambda: s3.get_bucket_encryption(Bucket=aws.bucket)["ServerSideEncryptionConfiguration"]["Rules"],
        ("ServerSideEncryptionConfigurationNotFoundError", []),
        "read its default encryption", "GetEncryptionConfiguration", "bucket_encryption",
    )  # fmt: skip
    defaults = [r.get("ApplyServerSideEncryptionByDefault", {}) for r in rules]
    if key_arn is None and defaults:
        return  # any default encryption will do without a key of our own (S3 gives every new bucket SSE-S3)
    if key_arn is not None and any(d.get("KMSMasterKeyID") == key_arn for d in defaults):
        return
    default: dict[str, str] = {"SSEAlgorithm": "AES256"}
    if key_arn is not None:
        default = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn}
    try:
        s3.put_bucket_encryption(
            Bucket=aws.bucket,
            ServerSideEncryptionConfiguration={
                # an S3 Bucket Key: one data key per bucket for a while, not one KMS call per object
                "Rules": [{"ApplyServerSideEncryptionByDefault": default, "BucketKeyEnabled": key_arn is not None}]
            },
        )
    except ClientError as exc:
        raise _refused(
            aws, "set its default encryption", "PutEncryptionConfiguration", "bucket_encryption", exc
        ) from None
    print(f"bucket {aws.bucket}: default encryption {'SSE-KMS with ' + key_arn if key_arn else 'SSE-S3'}")


def _versioning(aws: Aws) -> None:
    s3 = aws.client("s3")
    try:
        if s3.get_bucket_versioning(Bucket=aws.bucket).get("Status") == "Enabled":
            return
        s3.put_bucket_versioning(Bucket=aws.bucket, VersioningConfiguration={"Status": "Enabled"})
    except ClientError as exc:
        raise _refused(aws, "enable versioning", "PutBucketVersioning", "bucket_versioning", exc) from None
    print(f"bucket {aws.bucket}: versioning enabled")


def _noncurrent_expiry(aws: Aws, days: int) -> None:
    """Non-current versions (overwritten or deleted objects, e.g. the checkpoints a job prunes) expire
    after ``days``; the bucket's other lifecycle rules are kept."""
    s3 = aws.client("s3")
    prefix = aws.cfg.aws.prefix.strip("/")
    rule = {
        "ID": NONCURRENT_RULE_ID,
        "Filter": {"Prefix": f"{prefix}/" if prefix else ""},
        "Status": "Enabled",
        "NoncurrentVersionExpiration": {"NoncurrentDays": days},
    }
    rules: list[dict[str, Any]] = _current(
        aws,
        lambda: s3.get_bucket_lifecycle_configuration(Bucket=aws.bucket)["Rules"],
        ("NoSuchLifecycleConfiguration", []),
        "read its lifecycle rules", "GetLifecycleConfiguration", "bucket_versioning",
    )  # fmt: skip
    if any(_same_rule(r, rule) for r in rules):
        return
    others = [r for r in rules if r.get("ID") != NONCURRENT_RULE_ID]
    try:
        s3.put_bucket_lifecycle_configuration(Bucket=aws.bucket, LifecycleConfiguration={"Rules": [*others, rule]})
    except ClientError as exc:
        raise _refused(aws, "set a lifecycle rule", "PutLifecycleConfiguration", "bucket_versioning", exc) from None
    print(f"bucket {aws.bucket}: non-current versions under {rule['Filter']['Prefix'] or '/'} expire after {days} days")


def _same_rule(found: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """``found`` (as S3 returns it, maybe with fields of its own) says what ``wanted`` says."""
    return all(found.get(k) == v for k, v in wanted.items())


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _same_statement(found: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """The policy statement S3 returns means ``wanted`` (S3 may give a one-item list as a string, or reorder)."""
    return all(
        sorted(map(str, _listed(found.get(k)))) == sorted(map(str, _listed(v)))
        if isinstance(v, list | str)
        else found.get(k) == v
        for k, v in wanted.items()
    )


def _tls_only(aws: Aws) -> None:
    s3 = aws.client("s3")
    document: str = _current(
        aws,
        lambda: s3.get_bucket_policy(Bucket=aws.bucket)["Policy"],
        ("NoSuchBucketPolicy", '{"Version": "2012-10-17", "Statement": []}'),
        "read its bucket policy", "GetBucketPolicy", "bucket_tls_only",
    )  # fmt: skip
    policy: dict[str, Any] = json.loads(document)
    statements = policy.get("Statement", [])
    statements = [statements] if isinstance(statements, dict) else list(statements)
    wanted = tls_only_statement(aws)
    if any(_same_statement(s, wanted) for s in statements):
        return
    policy["Statement"] = [s for s in statements if s.get("Sid") != TLS_ONLY_SID] + [wanted]
    try:
        s3.put_bucket_policy(Bucket=aws.bucket, Policy=json.dumps(policy))
    except ClientError as exc:
        raise _refused(aws, "set its bucket policy", "PutBucketPolicy", "bucket_tls_only", exc) from None
    print(f"bucket {aws.bucket}: requests without TLS are denied (bucket policy {TLS_ONLY_SID})")


def secure_bucket(aws: Aws, key_arn: str | None) -> None:
    """Bring the bucket to the configured protection; what is already there is kept (other policy
    statements, other lifecycle rules, a default encryption at least as strong)."""
    s = aws.cfg.security
    if s.bucket_encryption:
        _encryption(aws, key_arn)
    if s.bucket_versioning:
        _versioning(aws)
        if s.bucket_noncurrent_version_days:
            _noncurrent_expiry(aws, s.bucket_noncurrent_version_days)
    if s.bucket_tls_only:
        _tls_only(aws)
