"""Start a training job with the SageMaker SDK v3 ``ModelTrainer`` (no ``source_code``: the image's
own ``train`` runs), managed spot with checkpoints, and the metric regexes ``train`` prints through.
The image is the variant for the instance type (``ops.variants``): CUDA torch on NVIDIA GPU
instances, CPU torch elsewhere; an instance type no variant can use is refused before the job.

Hyperparameters are turned into strings here, checked against the container's own
``textclf.train.hyperparameters`` before any money is spent, and sent as those strings.

Security (``[security]``, ``ops.security``): the job runs as the training role (``ops.role``), network
isolated, with the configured KMS key on its output and volume, in the configured VPC, and with its
inter-host traffic encrypted when it has several hosts. A network-isolated job that would download its
encoder from the Hugging Face hub is refused before it starts, and so is, with the role stack's training
role, a channel or checkpoint outside the prefixes that role reaches. Each job's checkpoints go to
``<prefix>/checkpoints/<base_job_name>-<UTC time>/`` (printed), where the training role may write.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ops import role, security
from ops.aws import Aws, OpsError, unique_name
from ops.config import ConfigError
from textclf.contract.metrics import METRIC_DEFINITIONS

if TYPE_CHECKING:
    from sagemaker.train import ModelTrainer

# CreateTrainingJob limits (botocore): 100 hyperparameters; 256 characters per key and value is the
# safe reading of the API docs. Tuning jobs: plan for at most 20 metric definitions.
MAX_HYPERPARAMETERS = 100
MAX_HYPERPARAMETER_CHARS = 256
MAX_METRICS = 20


def to_hyperparameter_string(value: Any) -> str:
    """SageMaker's wire form: strings as they are, booleans lower-case, everything else JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def hyperparameters(raw: dict[str, Any]) -> dict[str, str]:
    """``raw`` as SageMaker hyperparameters (all strings), validated against the container's parser."""
    from textclf.errors import ConfigError as ContainerConfigError
    from textclf.train.hyperparameters import parse

    strings = {str(k): to_hyperparameter_string(v) for k, v in raw.items()}
    if len(strings) > MAX_HYPERPARAMETERS:
        raise ConfigError(f"{len(strings)} hyperparameters; SageMaker takes at most {MAX_HYPERPARAMETERS}")
    for key, value in strings.items():
        if len(key) > MAX_HYPERPARAMETER_CHARS or len(value) > MAX_HYPERPARAMETER_CHARS:
            raise ConfigError(f"hyperparameter {key!r}: keys and values must be at most 256 characters")
    try:
        parse(strings)
    except ContainerConfigError as exc:
        raise ConfigError(str(exc)) from None
    return strings


def encoder_sources(hps: dict[str, str]) -> list[str]:
    """The ``model_name_or_path`` the job will use (the container's default when not given)."""
    from textclf.train.hyperparameters import parse

    return [parse(hps).model_name_or_path]


def metric_definitions() -> list[dict[str, str]]:
    """The regexes for the lines ``train`` prints (``textclf.contract.metrics``), within API limits."""
    definitions = [dict(d) for d in METRIC_DEFINITIONS]
    if len(definitions) > MAX_METRICS:
        raise OpsError(f"{len(definitions)} metric definitions; tuning jobs take at most {MAX_METRICS}")
    for d in definitions:
        if not (1 <= len(d["Name"]) <= 255 and 1 <= len(d["Regex"]) <= 500):
            raise OpsError(f"metric definition {d['Name']!r} exceeds the API's length limits")
    return definitions


def model_trainer(
    aws: Aws,
    hps: dict[str, str],
    checkpoint_s3_uri: str | None = None,
    checkpoints: bool = True,
    local_root: Path | None = None,
) -> ModelTrainer:
    """The trainer both training and tuning start from. ``checkpoint_s3_uri`` None lets the SDK put
    checkpoints under ``<prefix>/<base_job_name>/<job-name>/checkpoints``: one folder per job, so a
    new job never resumes another job's checkpoints. ``checkpoints`` False sends no CheckpointConfig
    (the tuner copies the trainer's as it is, and one without ``S3Uri`` is an invalid request).
    ``local_root``: the same trainer in the SDK's local mode (``Mode.LOCAL_CONTAINER``, instance type
    ``local``, no spot, none of the ``[security]`` settings: they are AWS's), staging the job in that
    folder (``ops.local``)."""
    from sagemaker.core.shapes import MetricDefinition
    from sagemaker.core.training.configs import CheckpointConfig, Compute, OutputDataConfig, StoppingCondition
    from sagemaker.train import ModelTrainer
    from sagemaker.train.model_trainer import Mode

    t = aws.cfg.training
    spot = t.spot and local_root is None
    stopping = StoppingCondition(max_runtime_in_seconds=t.max_run_s)
    if spot:
        stopping.max_wait_time_in_seconds = t.max_wait_s
    local: dict[str, Any] = {}
    if local_root is not None:
        local = {"training_mode": Mode.LOCAL_CONTAINER, "local_container_root": str(local_root)}
    trainer = ModelTrainer(
        sagemaker_session=aws.sdk_session(),
        role=role.arn(aws, "training"),
        training_image=aws.training_image,
        base_job_name=t.base_job_name,
        compute=Compute(
            instance_type="local" if local_root is not None else t.instance_type,
            instance_count=t.instance_count,
            volume_size_in_gb=t.volume_size_gb,
            volume_kms_key_id=security.volume_kms_key(aws, t.instance_type, "training"),
            enable_managed_spot_training=spot,
        ),
        stopping_condition=stopping,
        checkpoint_config=(
            CheckpointConfig(s3_uri=checkpoint_s3_uri, local_path=t.checkpoint_local_path) if checkpoints else None
        ),
        output_data_config=OutputDataConfig(s3_output_path=aws.s3_uri("output"), kms_key_id=security.kms_key(aws)),
        networking=security.training_networking(aws),
        training_input_mode=t.input_mode,
        hyperparameters=hps,
        environment=dict(t.environment),
        **local,
    )
    return trainer.with_metric_definitions(
        [MetricDefinition(name=d["Name"], regex=d["Regex"]) for d in metric_definitions()]
    )


def input_data(aws: Aws, channels: dict[str, str] | None) -> list[Any]:
    from sagemaker.core.training.configs import InputData

    from ops.channels import existing_channels

    channels = channels or existing_channels(aws)
    if "train" not in channels:
        raise OpsError("no `train` channel: upload one with `python -m ops upload --channel train=PATH`")
    for name, uri in channels.items():
        if not uri.startswith("s3://"):
            raise OpsError(f"channel {name}: {uri} is not an s3:// URI")
    return [InputData(channel_name=name, data_source=uri) for name, uri in sorted(channels.items())]


def check_inputs(aws: Aws, inputs: list[Any], encoders: list[str]) -> None:
    """What would fail a training (or tuning) job only once it runs: a channel the stack's training role
    cannot read, an encoder a network-isolated container cannot download."""
    for channel in inputs:
        role.check_reach(aws, "training", f"channel {channel.channel_name}", str(channel.data_source), "data")
    security.check_encoder_reachable(aws, [str(c.channel_name) for c in inputs], encoders)


def checkpoint_of(aws: Aws, job_name: str) -> str:
    """The checkpoint S3 URI of an earlier job, to continue from it (e.g. after MaxWait ran out)."""
    described = aws.client("sagemaker").describe_training_job(TrainingJobName=job_name)
    uri = (described.get("CheckpointConfig") or {}).get("S3Uri")
    if not uri:
        raise OpsError(f"training job {job_name} had no checkpoint configuration")
    return str(uri)


def start(
    aws: Aws,
    channels: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
    resume_from: str | None = None,
    wait: bool = False,
) -> str:
    """Start a training job; returns its name."""
    hps = hyperparameters({**aws.cfg.training.hyperparameters, **(overrides or {})})
    inputs = input_data(aws, channels)
    check_inputs(aws, inputs, encoder_sources(hps))
    if resume_from:
        checkpoint = checkpoint_of(aws, resume_from)
        role.check_reach(aws, "training", f"the checkpoints of {resume_from}", checkpoint, "checkpoints")
    else:  # a folder of its own, where the training role may write (not the SDK's <base_job_name>/<job>/)
        checkpoint = aws.s3_uri("checkpoints", unique_name(aws.cfg.training.base_job_name))
    trainer = model_trainer(aws, hps, checkpoint)
    before = len(aws.created_training_jobs)
    trainer.train(input_data_config=inputs, wait=wait, logs=wait)
    # ModelTrainer has no public accessor for the job it created (train() returns None): the name is
    # read from the CreateTrainingJob request itself (ops.aws.Aws records it).
    created = aws.created_training_jobs[before:]
    if len(created) != 1:
        raise OpsError(f"expected one CreateTrainingJob request, saw {len(created)}")
    name = created[0]
    print(f"training job {name} started (checkpoints: {checkpoint})")
    if wait:
        status = aws.client("sagemaker").describe_training_job(TrainingJobName=name)
        if status["TrainingJobStatus"] != "Completed":
            raise OpsError(f"training job {name} {status['TrainingJobStatus']}: {status.get('FailureReason', '')}")
    return name


def model_data(aws: Aws, job_name: str) -> str:
    """The ``model.tar.gz`` of a completed training job."""
    described = aws.client("sagemaker").describe_training_job(TrainingJobName=job_name)
    if described["TrainingJobStatus"] != "Completed":
        raise OpsError(
            f"training job {job_name} is {described['TrainingJobStatus']}, not Completed"
            + (f": {described['FailureReason']}" if described.get("FailureReason") else "")
        )
    return str(described["ModelArtifacts"]["S3ModelArtifacts"])
