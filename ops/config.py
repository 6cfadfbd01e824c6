"""The one configuration of ``ops/``: a TOML file, then ``TEXTCLF_*`` environment overrides.

Precedence (last wins): the defaults below, the file (``--config``, else ``$TEXTCLF_OPS_CONFIG``,
else ``ops/config.toml`` when present), then ``TEXTCLF_<SECTION>_<FIELD>`` variables, e.g.
``TEXTCLF_AWS_ROLE_ARN`` or ``TEXTCLF_TRAINING_INSTANCE_TYPE``. Nothing here names an account:
the image URI and the default bucket are derived from the caller's account at run time, and the
role comes from the file, the environment or the role stack (``python -m ops role``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

DEFAULT_PATH = Path(__file__).resolve().parent / "config.toml"
ENV_PREFIX = "TEXTCLF_"
ENV_CONFIG = "TEXTCLF_OPS_CONFIG"
# SageMaker lower-cases names inside ARNs, and the API stack's IAM policy names the endpoint ARN:
# a lower-case name keeps the two identical.
_NAME = re.compile(r"^[a-z0-9](-*[a-z0-9]){0,62}$")
# A Docker tag is at most 128 characters; the longest variant suffix (-serve) takes 6 of them.
IMAGE_TAG_MAX = 122
_IMAGE_TAG = re.compile(rf"^[A-Za-z0-9_][A-Za-z0-9_.-]{{0,{IMAGE_TAG_MAX - 1}}}$")


INPUT_MODES = ("File", "FastFile")  # not Pipe: the container reads files
STRATEGIES = ("Bayesian", "Random", "Hyperband", "Grid")


class ConfigError(ValueError):
    """The configuration is incomplete or inconsistent; the message names the setting."""


@dataclass
class AwsSection:
    region: str = ""  # empty: AWS_REGION / AWS_DEFAULT_REGION / the profile's region
    profile: str = ""
    role_arn: str = ""  # SageMaker execution role for every job and model; empty: the role stack's roles
    # One kind of work each (ops.role); empty: aws.role_arn, else the role stack's TrainingRoleArn,
    # ServingRoleArn, BatchRoleArn outputs.
    training_role_arn: str = ""  # training and tuning jobs
    serving_role_arn: str = ""  # the models of endpoints
    batch_role_arn: str = ""  # the models of transform jobs
    bucket: str = ""  # empty: textclf-<account>-<region>
    prefix: str = "textclf"  # key prefix inside the bucket


@dataclass
class ImageSection:
    repository: str = "textclf"
    # The cpu variant's tag; gpu and serve add -gpu and -serve (ops.variants). Empty: `ops image` makes a
    # new one per build (<commit>-<UTC time>, ops.image.new_tag) and prints it; train, tune, deploy and batch
    # need it set, and run the digest ECR holds under it (ops.aws.Aws.image_uri), never the tag itself.
    tag: str = ""
    immutable_tags: bool = True  # ECR imageTagMutability IMMUTABLE: a pushed tag can never name another image
    uri: str = ""  # full override for every job, e.g. an image in another registry, used as given (pin it by digest)
    dockerfile: str = "Dockerfile"
    context: str = "."
    platform: str = "linux/amd64"
    build_args: dict[str, str] = field(default_factory=dict)


@dataclass
class TrainingSection:
    base_job_name: str = "textclf"
    instance_type: str = "ml.g5.xlarge"
    instance_count: int = 1
    volume_size_gb: int = 50
    input_mode: str = "File"
    spot: bool = True
    max_run_s: int = 3 * 3600
    max_wait_s: int = 6 * 3600  # spot only: waiting for capacity + running; must be >= max_run_s
    checkpoint_local_path: str = "/opt/ml/checkpoints"
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)


@dataclass
class TuningSection:
    base_job_name: str = "textclf-hpo"
    objective: str = "validation_accuracy"
    strategy: str = "Bayesian"
    max_jobs: int = 12
    max_parallel_jobs: int = 3
    early_stopping: str = "Auto"
    ranges_file: str = ""  # a TOML/JSON file with [ranges.<name>]; empty: the ranges below
    ranges: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class AutoscalingSection:
    enabled: bool = True
    min_instances: int = 1
    max_instances: int = 4
    invocations_per_instance: float = 600.0  # per minute (SageMakerVariantInvocationsPerInstance)
    scale_in_cooldown_s: int = 300
    scale_out_cooldown_s: int = 60


# ProductionVariantServerlessConfig (botocore; docs.aws.amazon.com/sagemaker/latest/dg/serverless-endpoints.html):
# memory in 1 GB steps from 1 to 6 GB; at most 200 concurrent invocations per endpoint. botocore's own
# validator checks only minimums, so without these checks a bad value would reach CreateEndpointConfig.
SERVERLESS_MEMORY_SIZES_MB = (1024, 2048, 3072, 4096, 5120, 6144)
SERVERLESS_MAX_CONCURRENCY = 200


@dataclass
class ServerlessSection:
    """A Serverless Inference endpoint instead of instances (``ops deploy --serverless``)."""

    enabled: bool = False  # the mode every `deploy` uses; --serverless turns it on for one run
    memory_size_mb: int = 2048  # MemorySizeInMB: one of SERVERLESS_MEMORY_SIZES_MB; vCPUs grow with it
    max_concurrency: int = 5  # MaxConcurrency: 1..200 per endpoint (the account's regional pool is 500 or 1000)
    provisioned_concurrency: int = 0  # ProvisionedConcurrency (kept warm, billed while provisioned); 0: none


@dataclass
class EndpointSection:
    name: str = "textclf"
    variant: str = "AllTraffic"
    instance_type: str = "ml.c6i.xlarge"
    instance_count: int = 1
    startup_health_check_timeout_s: int = 600  # ContainerStartupHealthCheckTimeoutInSeconds (60-3600)
    model_download_timeout_s: int = 600  # ModelDataDownloadTimeoutInSeconds (60-3600)
    environment: dict[str, str] = field(default_factory=dict)
    rollback_alarms: list[str] = field(default_factory=list)  # CloudWatch alarms that roll an update back
    bake_s: int = 0  # blue/green: keep the old fleet this long after the switch (alarms can still roll back)
    keep_previous: bool = False  # after a successful update, keep the old endpoint config and model
    wait_delay_s: int = 30
    wait_max_attempts: int = 80
    autoscaling: AutoscalingSection = field(default_factory=AutoscalingSection)
    serverless: ServerlessSection = field(default_factory=ServerlessSection)


@dataclass
class BatchSection:
    instance_type: str = "ml.c6i.xlarge"
    instance_count: int = 1
    max_payload_mb: int = 6
    max_concurrent_transforms: int = 0  # 0: let the container's /execution-parameters decide
    invocation_timeout_s: int = 600
    invocation_max_retries: int = 1
    environment: dict[str, str] = field(default_factory=dict)


@dataclass
class ApiSection:
    stack_name: str = "textclf-api"
    stage: str = "v1"
    # AWS_IAM: callers sign with SigV4 and need execute-api:Invoke. API_KEY: for clients that cannot sign; a
    # key identifies a caller for the usage plan's throttling and quota, it does not authenticate anyone.
    auth: str = "AWS_IAM"
    timeout_s: int = 29  # API Gateway's integration timeout; above 29 needs a quota raise (regional REST)
    throttle_rate: float = 10.0  # requests per second, steady
    throttle_burst: int = 20
    quota_per_day: int = 0  # 0: no daily quota
    log_retention_days: int = 30
    allowed_content_types: str = "application/json,application/jsonlines,text/csv,text/plain"
    access_logs: bool = True  # the stage's access log; needs API Gateway's CloudWatch role set in the region
    # true: the stack sets API Gateway's CloudWatch role, one setting for every API of the account in the
    # region, replacing whatever was set (and deleting the stack deletes the role it set). Off by default.
    create_account_log_role: bool = False


# VpcConfig (botocore): 1..16 subnets, 1..5 security groups; ids as the EC2 console shows them.
_SUBNET = re.compile(r"^subnet-[0-9a-f]{8}([0-9a-f]{9})?$")
_SECURITY_GROUP = re.compile(r"^sg-[0-9a-f]{8}([0-9a-f]{9})?$")
MAX_SUBNETS, MAX_SECURITY_GROUPS = 16, 5
# A KMS key as SageMaker and S3 take it: key id, key ARN, alias name or alias ARN.
_KMS_KEY = re.compile(
    r"^((arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/)?(mrk-[0-9a-f]{32}|[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12})"
    r"|(arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:)?alias/[A-Za-z0-9/_-]{1,250})$"
)


@dataclass
class SecuritySection:
    """How jobs, models and the bucket are protected (ops.security; README "Security on AWS")."""

    kms_key_id: str = ""  # customer managed KMS key for volumes, outputs and the bucket; empty: AWS-managed keys
    training_network_isolation: bool = True  # the training container gets no network (needs the `pretrained` channel)
    model_network_isolation: bool = True  # nor do the endpoint's and the transform job's model containers
    inter_container_encryption: bool = True  # multi-host training: encrypt the traffic between the hosts
    # The VPC of jobs and models: its subnets and security groups, both or neither (file only, no environment)
    subnets: list[str] = field(default_factory=list)
    security_group_ids: list[str] = field(default_factory=list)
    bucket_tls_only: bool = True  # bucket policy: deny every request without TLS
    bucket_versioning: bool = True  # keep overwritten and deleted objects as non-current versions
    bucket_noncurrent_version_days: int = 30  # ... for this many days (0: keep them)
    bucket_encryption: bool = True  # default encryption: SSE-KMS with kms_key_id, else SSE-S3


def check_security(s: SecuritySection) -> None:
    """What SageMaker, KMS or EC2 would refuse only once a job or model is created."""
    if bool(s.subnets) != bool(s.security_group_ids):
        raise ConfigError(
            "security.subnets and security.security_group_ids go together: a VPC needs both (or neither, for no VPC)"
        )
    for name, values, pattern, most, form in (
        ("subnets", s.subnets, _SUBNET, MAX_SUBNETS, "subnet-0123abcd"),
        ("security_group_ids", s.security_group_ids, _SECURITY_GROUP, MAX_SECURITY_GROUPS, "sg-0123abcd"),
    ):
        if len(values) > most:
            raise ConfigError(f"security.{name}: at most {most}, got {len(values)}")
        bad = [v for v in values if not pattern.match(v)]
        if bad:
            raise ConfigError(f"security.{name}: {bad[0]!r} is not an id like {form} (8 or 17 hexadecimal digits)")
        if len(set(values)) != len(values):
            raise ConfigError(f"security.{name}: an id is given twice")
    if s.kms_key_id and not _KMS_KEY.match(s.kms_key_id):
        raise ConfigError(
            f"security.kms_key_id {s.kms_key_id!r}: give a KMS key id, key ARN, alias/<name> or alias ARN "
            "(empty: AWS-managed keys)"
        )
    if s.bucket_noncurrent_version_days < 0:
        days = s.bucket_noncurrent_version_days
        raise ConfigError(f"security.bucket_noncurrent_version_days must be >= 0 (0: keep them), got {days}")


@dataclass
class RoleSection:
    stack_name: str = "textclf-sagemaker-role"


@dataclass
class LocalSection:
    """``python -m ops --local``: the SageMaker SDK's local mode on this machine's Docker (ops.local)."""

    root: str = ".textclf-local"  # training jobs, transform outputs and the SDK's staging folders
    serving_port: int = 8080  # where a local endpoint (or a local transform job's container) listens


@dataclass
class OpsConfig:
    project: str = "textclf"
    aws: AwsSection = field(default_factory=AwsSection)
    image: ImageSection = field(default_factory=ImageSection)
    training: TrainingSection = field(default_factory=TrainingSection)
    tuning: TuningSection = field(default_factory=TuningSection)
    endpoint: EndpointSection = field(default_factory=EndpointSection)
    batch: BatchSection = field(default_factory=BatchSection)
    api: ApiSection = field(default_factory=ApiSection)
    role: RoleSection = field(default_factory=RoleSection)
    local: LocalSection = field(default_factory=LocalSection)
    security: SecuritySection = field(default_factory=SecuritySection)

    def validate(self) -> OpsConfig:
        if not _NAME.match(self.endpoint.name):
            raise ConfigError(
                f"endpoint.name {self.endpoint.name!r}: use lower-case letters, digits and hyphens (at most 63)"
            )
        if self.training.spot and self.training.max_wait_s < self.training.max_run_s:
            raise ConfigError(
                f"training.max_wait_s ({self.training.max_wait_s}) must be >= training.max_run_s "
                f"({self.training.max_run_s}) for spot training"
            )
        for key in ("startup_health_check_timeout_s", "model_download_timeout_s"):
            value = getattr(self.endpoint, key)
            if not 60 <= value <= 3600:
                raise ConfigError(f"endpoint.{key} must be within 60..3600 seconds, got {value}")
        scaling = self.endpoint.autoscaling
        if scaling.enabled and not 1 <= scaling.min_instances <= scaling.max_instances:
            raise ConfigError("endpoint.autoscaling needs 1 <= min_instances <= max_instances")
        check_serverless_settings(self.endpoint.serverless)
        if self.api.auth not in ("API_KEY", "AWS_IAM"):
            raise ConfigError(f"api.auth must be API_KEY or AWS_IAM, got {self.api.auth!r}")
        if self.image.tag:
            check_image_tag(self.image.tag)
        if not 5 <= self.api.timeout_s <= 300:
            raise ConfigError(f"api.timeout_s must be within 5..300, got {self.api.timeout_s}")
        if self.training.input_mode not in INPUT_MODES:
            raise ConfigError(
                f"training.input_mode {self.training.input_mode!r}: the container reads its channels as files "
                f"under /opt/ml/input/data (no Pipe FIFOs); use {' or '.join(INPUT_MODES)}"
            )
        check_tuning(self.tuning)
        check_security(self.security)
        if not 1 <= self.local.serving_port <= 65535:
            raise ConfigError(f"local.serving_port must be a TCP port (1..65535), got {self.local.serving_port}")
        if not 0 <= self.batch.max_payload_mb <= 100:
            # 0 (any size, HTTP chunked) is served: the container then buffers up to 100 MB.
            raise ConfigError(f"batch.max_payload_mb must be within 0..100, got {self.batch.max_payload_mb}")
        if self.batch.max_concurrent_transforms * self.batch.max_payload_mb > 100:
            raise ConfigError("batch.max_concurrent_transforms x batch.max_payload_mb must be <= 100")
        return self


def check_image_tag(tag: str, setting: str = "image.tag") -> None:
    """Refuse a tag Docker would refuse once the variant's suffix is added (``setting`` names where it came from)."""
    if not _IMAGE_TAG.match(tag):
        raise ConfigError(
            f"{setting} {tag!r}: a Docker tag is letters, digits, '_', '.' and '-' (not first), "
            f"at most {IMAGE_TAG_MAX} characters here (the variants add -gpu and -serve)"
        )


def check_serverless_settings(s: ServerlessSection) -> None:
    """What CreateEndpointConfig would refuse for a serverless variant, checked whether or not it is enabled
    (the setting is wrong either way, and ``--serverless`` may enable it later); the CLI flags that set
    these values are named too."""
    if s.memory_size_mb not in SERVERLESS_MEMORY_SIZES_MB:
        sizes = ", ".join(str(m) for m in SERVERLESS_MEMORY_SIZES_MB)
        raise ConfigError(
            f"endpoint.serverless.memory_size_mb (--memory-size-mb) must be one of {sizes} (MB), got {s.memory_size_mb}"
        )
    if not 1 <= s.max_concurrency <= SERVERLESS_MAX_CONCURRENCY:
        raise ConfigError(
            f"endpoint.serverless.max_concurrency (--max-concurrency) must be within 1..{SERVERLESS_MAX_CONCURRENCY} "
            f"(SageMaker's limit per serverless endpoint; all serverless endpoints of the account share a "
            f"regional quota of 500 or 1000), got {s.max_concurrency}"
        )
    if not 0 <= s.provisioned_concurrency <= s.max_concurrency:
        raise ConfigError(
            "endpoint.serverless.provisioned_concurrency (--provisioned-concurrency) must be within "
            f"0..max_concurrency ({s.max_concurrency}; 0: none), got {s.provisioned_concurrency}"
        )


def check_tuning(t: TuningSection) -> None:
    """What CreateHyperParameterTuningJob would refuse (or botocore lets through and SageMaker refuses)."""
    if t.strategy not in STRATEGIES:
        raise ConfigError(f"tuning.strategy {t.strategy!r} must be one of {', '.join(STRATEGIES)}")
    if t.early_stopping not in ("Auto", "Off"):
        raise ConfigError(f"tuning.early_stopping must be Auto or Off, got {t.early_stopping!r}")
    if t.strategy == "Hyperband" and t.early_stopping != "Off":
        raise ConfigError(
            f"tuning.early_stopping {t.early_stopping!r} with tuning.strategy 'Hyperband': Hyperband stops "
            "trials itself and the API takes only TrainingJobEarlyStoppingType Off with it; set early_stopping = 'Off'"
        )


# Environment variables and build arguments are free-form: a token for a private model hub or a
# package index URL with a password in it may sit there. `python -m ops config` must not print them.
_SECRET_NAME = re.compile(r"secret|token|passw|credential|private|api_?key|auth", re.IGNORECASE)
_URL_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
REDACTED = "***"
FREE_FORM = (("image", "build_args"), *((section, "environment") for section in ("training", "endpoint", "batch")))


def _redact(entries: dict[str, Any]) -> dict[str, Any]:
    return {
        k: REDACTED if _SECRET_NAME.search(k) else _URL_USERINFO.sub(f"{REDACTED}@", str(v)) for k, v in entries.items()
    }


def redacted(cfg: OpsConfig) -> dict[str, Any]:
    """The configuration as a dict, with the values of secret-looking free-form entries masked."""
    data = dataclasses.asdict(cfg)
    for section, name in FREE_FORM:
        data[section][name] = _redact(data[section][name])
    return data


def _coerce(raw: str, annotation: Any, where: str) -> Any:
    if annotation is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{where}: expected a boolean, got {raw!r}")
    try:
        return annotation(raw)
    except ValueError:
        raise ConfigError(f"{where}: expected {annotation.__name__}, got {raw!r}") from None


def _apply(obj: Any, data: dict[str, Any], where: str, env: dict[str, str]) -> None:
    """Fill dataclass ``obj`` from ``data`` (the file), then from ``env`` (scalars only)."""
    hints = get_type_hints(type(obj))
    known = {f.name for f in dataclasses.fields(obj)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown setting(s) in [{where or 'top level'}]: {', '.join(unknown)}")
    for f in dataclasses.fields(obj):
        path = f"{where}.{f.name}" if where else f.name
        current = getattr(obj, f.name)
        if dataclasses.is_dataclass(current):
            sub = data.get(f.name, {})
            if not isinstance(sub, dict):
                raise ConfigError(f"[{path}] must be a table")
            _apply(current, sub, path, env)
            continue
        if f.name in data:
            value = data[f.name]
            hint = hints[f.name]
            if hint is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            expected = getattr(hint, "__origin__", None) or hint
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise ConfigError(f"{path}: expected {getattr(expected, '__name__', expected)}, got {value!r}")
            setattr(obj, f.name, value)
        env_name = ENV_PREFIX + path.replace(".", "_").upper()
        if env_name in env and not isinstance(current, dict | list):
            setattr(obj, f.name, _coerce(env[env_name], hints[f.name], env_name))


def load(path: str | Path | None = None, env: dict[str, str] | None = None) -> OpsConfig:
    """Load the configuration; ``path`` None means ``$TEXTCLF_OPS_CONFIG`` or ``ops/config.toml``."""
    env = dict(os.environ if env is None else env)
    chosen = Path(path) if path else Path(env[ENV_CONFIG]) if env.get(ENV_CONFIG) else None
    data: dict[str, Any] = {}
    if chosen is not None:
        if not chosen.is_file():
            raise ConfigError(f"config file {chosen} does not exist")
        data = tomllib.loads(chosen.read_text(encoding="utf-8"))
    elif DEFAULT_PATH.is_file():
        data = tomllib.loads(DEFAULT_PATH.read_text(encoding="utf-8"))
    cfg = OpsConfig()
    _apply(cfg, data, "", env)
    if not cfg.aws.region:
        cfg.aws.region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or ""
    return cfg.validate()


def load_ranges_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """Tuning ranges from their own file: TOML (``[ranges.<name>]``) or JSON (``{"ranges": {...}}``)."""
    import json

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"ranges file {p} does not exist")
    text = p.read_text(encoding="utf-8")
    data = json.loads(text) if p.suffix == ".json" else tomllib.loads(text)
    ranges = data.get("ranges", data)
    if not isinstance(ranges, dict) or not all(isinstance(v, dict) for v in ranges.values()):
        raise ConfigError(f"{p}: expected a table of ranges, one per hyperparameter")
    return ranges
