"""Hyperparameter tuning with the SDK v3 ``HyperparameterTuner``, and a report of the best job.

The objective comes from ``textclf.contract.metrics.OBJECTIVES`` (name and direction), and the
static hyperparameter ``eval_metric`` is set to match it: ``train`` prints the best epoch's
``validation_<eval_metric>`` last, and the tuner keeps the last value it reads.

Spot and checkpoints: sagemaker-train 1.27 copies the trainer's ``CheckpointConfig`` into the
tuning job's training-job definition (older v3 releases dropped it; the tests assert it is sent).
A tuning job has one definition for all its training jobs (botocore's service model:
``HyperParameterTrainingJobDefinition`` holds a single ``CheckpointConfig``, documented only as
"the S3 path where you want SageMaker to store checkpoints", with no per-job suffix), so its trials
share one checkpoint S3 prefix, ``<prefix>/checkpoints/<tuning-job>/``, each tuning job its own. The
container keeps each trial's checkpoints apart inside it (by the run's identity, e.g.
``TRAINING_JOB_NAME``), so that a trial restarted after a spot interruption resumes its own.

Without spot no CheckpointConfig is sent: nothing restarts an on-demand trial, and the shared prefix
would only be copied into every trial at its start. (``ops train`` keeps checkpoints on demand too:
one job, its own prefix, and ``--resume-from`` continues from it.)

Security: the trials inherit the trainer's settings (``ops.training``: training role, KMS key, VPC,
network isolation, inter-container encryption). sagemaker-train 1.27's tuner copies the trainer's
``OutputDataConfig`` (its KMS key) and ``VpcConfig`` into the definition, but builds ``ResourceConfig`` from
instance type, count and volume size alone and leaves out ``EnableNetworkIsolation`` and
``EnableInterContainerTrafficEncryption``; ops adds those three from the trainer's public fields to the
``CreateHyperParameterTuningJob`` request (a botocore event handler on the SDK's client for this session,
registered for the one call), so that the trials run exactly as ``ops train`` would. The tests assert
they are sent.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

from ops.aws import Aws, OpsError, unique_name
from ops.config import ConfigError, check_tuning, load_ranges_file
from ops.training import (
    check_inputs,
    encoder_sources,
    hyperparameters,
    input_data,
    metric_definitions,
    model_trainer,
    to_hyperparameter_string,
)
from textclf.contract.metrics import OBJECTIVES

MAX_TUNING_JOB_NAME = 32
MAX_RANGES = 30
MAX_CATEGORICAL_VALUES = 30
SCALING_TYPES = ("Auto", "Linear", "Logarithmic", "ReverseLogarithmic")


def _check_value(name: str, value: Any) -> str:
    """One candidate value, as a string the container's parser accepts."""
    text = to_hyperparameter_string(value)
    try:
        hyperparameters({name: text})
    except ConfigError as exc:
        raise ConfigError(f"tuning range {name}: {exc}") from None
    return text


def parameter_ranges(ranges: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Config ranges -> SDK parameter objects, each bound checked against the container's parser."""
    from sagemaker.core.parameter import CategoricalParameter, ContinuousParameter, IntegerParameter

    if not ranges:
        raise ConfigError("no tuning ranges: add [tuning.ranges.<hyperparameter>] tables or --ranges FILE")
    if len(ranges) > MAX_RANGES:
        raise ConfigError(f"{len(ranges)} tuning ranges; SageMaker takes at most {MAX_RANGES}")
    result: dict[str, Any] = {}
    for name, spec in ranges.items():
        kind = spec.get("type", "")
        if kind == "categorical":
            values = spec.get("values") or []
            if not values or len(values) > MAX_CATEGORICAL_VALUES:
                raise ConfigError(f"tuning range {name}: 1..{MAX_CATEGORICAL_VALUES} values needed")
            result[name] = CategoricalParameter([_check_value(name, v) for v in values])
            continue
        if kind not in ("continuous", "integer"):
            raise ConfigError(f"tuning range {name}: type must be continuous, integer or categorical")
        low, high = spec.get("min"), spec.get("max")
        scaling = spec.get("scaling", "Auto")
        if not isinstance(low, int | float) or not isinstance(high, int | float) or not low < high:
            raise ConfigError(f"tuning range {name}: needs numbers min < max")
        if kind == "integer" and not (isinstance(low, int) and isinstance(high, int)):
            raise ConfigError(f"tuning range {name}: integer bounds must be integers")
        if scaling not in SCALING_TYPES:
            raise ConfigError(f"tuning range {name}: scaling must be one of {', '.join(SCALING_TYPES)}")
        if scaling == "Logarithmic" and low <= 0:
            raise ConfigError(f"tuning range {name}: logarithmic scaling needs min > 0")
        _check_value(name, low)
        _check_value(name, high)
        cls = ContinuousParameter if kind == "continuous" else IntegerParameter
        result[name] = cls(low, high, scaling_type=scaling)
    return result


CREATE_EVENT = "provide-client-params.sagemaker.CreateHyperParameterTuningJob"


def inherited_fields(trainer: Any) -> dict[str, Any]:
    """The trainer's settings the SDK's tuner leaves out of the training-job definition (module docstring)."""
    fields: dict[str, Any] = {}
    networking = trainer.networking
    if networking is not None and networking.enable_network_isolation:
        fields["EnableNetworkIsolation"] = True
    if networking is not None and networking.enable_inter_container_traffic_encryption:
        fields["EnableInterContainerTrafficEncryption"] = True
    if trainer.compute.volume_kms_key_id:
        fields["ResourceConfig"] = {"VolumeKmsKeyId": trainer.compute.volume_kms_key_id}
    return fields


@contextlib.contextmanager
def definition_inherits(aws: Aws, trainer: Any) -> Iterator[None]:
    """While it is open, the CreateHyperParameterTuningJob request carries ``inherited_fields(trainer)``."""
    from sagemaker.core.utils.utils import SageMakerClient

    fields = inherited_fields(trainer)
    if not fields:
        yield
        return

    completed: list[str] = []

    def complete(params: dict[str, Any], **_: Any) -> None:
        definition = params["TrainingJobDefinition"]
        for key, value in fields.items():
            if isinstance(value, dict):
                definition.setdefault(key, {}).update(value)
            else:
                definition[key] = value
        completed.append(str(params.get("HyperParameterTuningJobName")))

    # The client the SDK's HyperParameterTuningJob.create uses for this session (one per session and region).
    events = SageMakerClient(session=aws.session, region_name=aws.region).sagemaker_client.meta.events
    events.register(CREATE_EVENT, complete)
    try:
        yield
    finally:
        events.unregister(CREATE_EVENT, complete)
    if not completed:  # the SDK sent its request through another client: say so rather than run unprotected
        missing = ", ".join(fields)
        raise OpsError(
            f"the SageMaker SDK created the tuning job without the trainer's {missing} (it did not use the client "
            "ops completes its request on): stop it (`aws sagemaker stop-hyper-parameter-tuning-job`) and run "
            "`python -m ops train` instead, or switch those [security] settings off for tuning"
        )


def objective(aws: Aws) -> tuple[str, str, str]:
    """(metric name, Maximize|Minimize, the eval_metric hyperparameter that makes train print it last)."""
    name = aws.cfg.tuning.objective
    if name not in OBJECTIVES:
        raise ConfigError(f"tuning.objective {name!r} is not one of {', '.join(OBJECTIVES)}")
    return name, OBJECTIVES[name], name.removeprefix("validation_")


def start(
    aws: Aws,
    channels: dict[str, str] | None = None,
    ranges_file: str | None = None,
    wait: bool = False,
) -> str:
    """Start a tuning job; returns its name."""
    from sagemaker.train.tuner import HyperparameterTuner

    t = aws.cfg.tuning
    ranges_path = ranges_file or t.ranges_file
    raw_ranges = load_ranges_file(ranges_path) if ranges_path else t.ranges
    ranges = parameter_ranges(raw_ranges)
    metric, direction, eval_metric = objective(aws)
    static = dict(aws.cfg.training.hyperparameters)
    if "eval_metric" in ranges:
        raise ConfigError("eval_metric cannot be tuned: it decides which metric train prints last")
    if static.get("eval_metric", eval_metric) != eval_metric:
        raise ConfigError(
            f"training.hyperparameters.eval_metric={static['eval_metric']!r} contradicts tuning.objective "
            f"{metric!r}: train prints validation_<eval_metric> last and the tuner reads the last value"
        )
    static["eval_metric"] = eval_metric
    if not 1 <= t.max_parallel_jobs <= t.max_jobs:
        raise ConfigError("tuning needs 1 <= max_parallel_jobs <= max_jobs")
    check_tuning(t)
    if t.strategy == "Grid" and any(spec.get("type") != "categorical" for spec in raw_ranges.values()):
        raise ConfigError("tuning.strategy 'Grid' searches categorical ranges only: make every range categorical")

    static_hps = hyperparameters(static)
    inputs = input_data(aws, channels)
    encoders = encoder_sources(static_hps)
    if "model_name_or_path" in raw_ranges:  # a categorical range of encoders: each trial may take any of them
        encoders += [str(v) for v in raw_ranges["model_name_or_path"].get("values", [])]
    check_inputs(aws, inputs, encoders)

    name = unique_name(t.base_job_name, MAX_TUNING_JOB_NAME)
    spot = aws.cfg.training.spot
    trainer = model_trainer(aws, static_hps, aws.s3_uri("checkpoints", name) if spot else None, checkpoints=spot)
    tuner = HyperparameterTuner(
        model_trainer=trainer,
        objective_metric_name=metric,
        objective_type=direction,
        metric_definitions=metric_definitions(),
        hyperparameter_ranges=ranges,
        strategy=t.strategy,
        max_jobs=t.max_jobs,
        max_parallel_jobs=t.max_parallel_jobs,
        early_stopping_type=t.early_stopping,
    )
    with definition_inherits(aws, trainer):
        tuner.tune(inputs=inputs, job_name=name, wait=wait)
    print(f"tuning job {name} started ({t.max_jobs} jobs, {t.max_parallel_jobs} at a time, {direction} {metric})")
    return name


def report(aws: Aws, name: str, top: int = 5) -> dict[str, Any]:
    """The tuning job's state, its best training job (objective, hyperparameters, model) and the top N."""
    sm = aws.client("sagemaker")
    job = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    result: dict[str, Any] = {
        "tuning_job": name,
        "status": job["HyperParameterTuningJobStatus"],
        "objective": job["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"],
        "training_jobs": job.get("TrainingJobStatusCounters", {}),
        "best": None,
        "top": [],
    }
    best = job.get("BestTrainingJob")
    if best:
        detail = sm.describe_training_job(TrainingJobName=best["TrainingJobName"])
        result["best"] = {
            "training_job": best["TrainingJobName"],
            "objective_value": best.get("FinalHyperParameterTuningJobObjectiveMetric", {}).get("Value"),
            "hyperparameters": best.get("TunedHyperParameters", {}),
            "model_data": detail.get("ModelArtifacts", {}).get("S3ModelArtifacts"),
            "billable_seconds": detail.get("BillableTimeInSeconds"),
        }
    if top:
        listed = sm.list_training_jobs_for_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=name,
            SortBy="FinalObjectiveMetricValue",
            SortOrder="Ascending" if result["objective"]["Type"] == "Minimize" else "Descending",
            MaxResults=min(top, 100),
        )
        result["top"] = [
            {
                "training_job": s["TrainingJobName"],
                "status": s["TrainingJobStatus"],
                "objective_value": s.get("FinalHyperParameterTuningJobObjectiveMetric", {}).get("Value"),
                "hyperparameters": s.get("TunedHyperParameters", {}),
            }
            for s in listed["TrainingJobSummaries"]
        ]
    return result


def best_training_job(aws: Aws, name: str) -> str:
    best = (
        aws.client("sagemaker")
        .describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
        .get("BestTrainingJob")
    )
    if not best:
        raise OpsError(f"tuning job {name} has no best training job yet")
    return str(best["TrainingJobName"])


def print_report(result: dict[str, Any]) -> None:
    print(json.dumps(result, indent=2, default=str))
