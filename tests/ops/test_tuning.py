"""Tuning jobs through the SDK v3 HyperparameterTuner, checked at the CreateHyperParameterTuningJob request."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber

from ops import tuning
from ops.config import ConfigError
from support.aws import Calls, pinned_image
from textclf.contract.metrics import METRIC_DEFINITIONS, OBJECTIVES, format_metric


def test_request_sent_to_sagemaker(aws: Any, calls: Calls, uploaded: dict[str, str]) -> None:
    name = tuning.start(aws)
    req = calls.one("CreateHyperParameterTuningJob")
    assert req["HyperParameterTuningJobName"] == name and len(name) <= 32

    config = req["HyperParameterTuningJobConfig"]
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Maximize", "MetricName": "validation_macro_f1"}
    assert config["HyperParameterTuningJobObjective"]["Type"] == OBJECTIVES["validation_macro_f1"]
    assert config["Strategy"] == "Bayesian"
    assert config["TrainingJobEarlyStoppingType"] == "Auto"
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 6, "MaxParallelTrainingJobs": 2}
    ranges = config["ParameterRanges"]
    assert ranges["ContinuousParameterRanges"] == [
        {"Name": "learning_rate", "MinValue": "1e-05", "MaxValue": "0.0001", "ScalingType": "Logarithmic"}
    ]
    assert ranges["CategoricalParameterRanges"] == [{"Name": "batch_size", "Values": ["16", "32"]}]
    assert ranges["IntegerParameterRanges"] == [
        {"Name": "epochs", "MinValue": "2", "MaxValue": "4", "ScalingType": "Auto"}
    ]

    definition = req["TrainingJobDefinition"]
    algo = definition["AlgorithmSpecification"]
    assert algo["TrainingImage"] == pinned_image(aws, "t1-gpu")  # ml.g5, by digest
    assert algo["MetricDefinitions"] == METRIC_DEFINITIONS
    objective_regex = {d["Name"]: d["Regex"] for d in algo["MetricDefinitions"]}["validation_macro_f1"]
    assert re.search(objective_regex, format_metric("validation_macro_f1", 0.8125)).group(1) == "0.8125"

    static = definition["StaticHyperParameters"]
    assert all(isinstance(v, str) for v in static.values())
    # train prints validation_<eval_metric> last; it must be the objective the tuner reads
    assert static["eval_metric"] == "macro_f1"
    assert "learning_rate" not in static and "epochs" not in static  # tuned, so not static
    assert static["labels"] == '["neg", "pos"]'

    # spot + checkpoints survive the tuner (sagemaker-train >= 1.27 propagates CheckpointConfig)
    assert definition["EnableManagedSpotTraining"] is True
    assert definition["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    assert definition["CheckpointConfig"] == {
        "S3Uri": f"s3://textclf-test-bucket/textclf/checkpoints/{name}/",
        "LocalPath": "/opt/ml/checkpoints",
    }
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in definition["InputDataConfig"]}
    assert channels == uploaded


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_ranges_from_their_own_file(
    aws: Any, calls: Calls, uploaded: dict[str, str], tmp_path: Path, suffix: str
) -> None:
    spec = {"ranges": {"warmup_ratio": {"type": "continuous", "min": 0.0, "max": 0.2}}}
    path = tmp_path / f"ranges{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(spec), encoding="utf-8")
    else:
        path.write_text("[ranges.warmup_ratio]\ntype='continuous'\nmin=0.0\nmax=0.2\n", encoding="utf-8")
    tuning.start(aws, ranges_file=str(path))
    ranges = calls.one("CreateHyperParameterTuningJob")["HyperParameterTuningJobConfig"]["ParameterRanges"]
    assert [r["Name"] for r in ranges["ContinuousParameterRanges"]] == ["warmup_ratio"]
    assert not ranges.get("CategoricalParameterRanges") and not ranges.get("IntegerParameterRanges")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: setattr(c.tuning, "objective", "validation_f1"), "is not one of"),
        (lambda c: c.training.hyperparameters.update(eval_metric="accuracy"), "contradicts tuning.objective"),
        (lambda c: c.tuning.ranges.update(batch_size={"type": "categorical", "values": [0, 8]}), "batch_size"),
        (
            lambda c: c.tuning.ranges.update(
                learning_rate={"type": "continuous", "min": 0, "max": 1e-4, "scaling": "Logarithmic"}
            ),
            "learning_rate",
        ),
        (lambda c: c.tuning.ranges.update(epochs={"type": "integer", "min": 4, "max": 2}), "min < max"),
        (lambda c: c.tuning.ranges.update(eval_metric={"type": "categorical", "values": ["loss"]}), "cannot be tuned"),
        (lambda c: c.tuning.ranges.update(epoch={"type": "integer", "min": 1, "max": 2}), "unknown hyperparameter"),
        (lambda c: setattr(c.tuning, "max_parallel_jobs", 9), "max_parallel_jobs <= max_jobs"),
        (lambda c: c.tuning.ranges.clear(), "no tuning ranges"),
        (lambda c: setattr(c.tuning, "strategy", "Hyperband"), "Hyperband stops trials itself"),
        (lambda c: setattr(c.tuning, "strategy", "Grid"), "'Grid' searches categorical ranges only"),
    ],
)
def test_bad_tuning_settings_fail_before_any_job(
    aws: Any, calls: Calls, uploaded: dict[str, str], change: Any, message: str
) -> None:
    change(aws.cfg)
    with pytest.raises(ConfigError, match=re.escape(message)):
        tuning.start(aws)
    assert calls.of("CreateHyperParameterTuningJob") == []


def test_report_names_the_best_job_and_the_top_ones(aws: Any) -> None:
    sm = aws.client("sagemaker")
    stub = Stubber(sm)
    objective = {"Type": "Minimize", "MetricName": "validation_loss"}
    stub.add_response(
        "describe_hyper_parameter_tuning_job",
        {
            "HyperParameterTuningJobName": "hpo-1",
            "HyperParameterTuningJobArn": "arn:aws:sagemaker:eu-west-1:000000000000:hyper-parameter-tuning-job/hpo-1",
            "HyperParameterTuningJobStatus": "Completed",
            "HyperParameterTuningJobConfig": {
                "Strategy": "Bayesian",
                "HyperParameterTuningJobObjective": objective,
                "ResourceLimits": {"MaxNumberOfTrainingJobs": 2, "MaxParallelTrainingJobs": 1},
            },
            "CreationTime": "2026-01-01T00:00:00Z",
            "TrainingJobStatusCounters": {"Completed": 2},
            "ObjectiveStatusCounters": {"Succeeded": 2},
            "BestTrainingJob": {
                "TrainingJobName": "hpo-1-002-b",
                "TrainingJobArn": "arn:aws:sagemaker:eu-west-1:000000000000:training-job/hpo-1-002-b",
                "CreationTime": "2026-01-01T00:00:00Z",
                "TrainingJobStatus": "Completed",
                "TunedHyperParameters": {"learning_rate": "3e-05"},
                "FinalHyperParameterTuningJobObjectiveMetric": {"MetricName": "validation_loss", "Value": 0.21},
            },
        },
        {"HyperParameterTuningJobName": "hpo-1"},
    )
    stub.add_response(
        "describe_training_job",
        {
            "TrainingJobName": "hpo-1-002-b",
            "TrainingJobArn": "arn:aws:sagemaker:eu-west-1:000000000000:training-job/hpo-1-002-b",
            "TrainingJobStatus": "Completed",
            "SecondaryStatus": "Completed",
            "ModelArtifacts": {"S3ModelArtifacts": "s3://b/output/hpo-1-002-b/output/model.tar.gz"},
            "AlgorithmSpecification": {"TrainingInputMode": "File"},
            "ResourceConfig": {"InstanceType": "ml.g5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50},
            "StoppingCondition": {"MaxRuntimeInSeconds": 60},
            "CreationTime": "2026-01-01T00:00:00Z",
            "BillableTimeInSeconds": 300,
        },
        {"TrainingJobName": "hpo-1-002-b"},
    )
    summary = {
        "TrainingJobArn": "arn:aws:sagemaker:eu-west-1:000000000000:training-job/x",
        "CreationTime": "2026-01-01T00:00:00Z",
        "TrainingJobStatus": "Completed",
    }
    stub.add_response(
        "list_training_jobs_for_hyper_parameter_tuning_job",
        {
            "TrainingJobSummaries": [
                {
                    **summary,
                    "TrainingJobName": "hpo-1-002-b",
                    "TunedHyperParameters": {"learning_rate": "3e-05"},
                    "FinalHyperParameterTuningJobObjectiveMetric": {"MetricName": "validation_loss", "Value": 0.21},
                },
                {
                    **summary,
                    "TrainingJobName": "hpo-1-001-a",
                    "TunedHyperParameters": {"learning_rate": "1e-04"},
                    "FinalHyperParameterTuningJobObjectiveMetric": {"MetricName": "validation_loss", "Value": 0.35},
                },
            ]
        },
        {
            "HyperParameterTuningJobName": "hpo-1",
            "SortBy": "FinalObjectiveMetricValue",
            "SortOrder": "Ascending",  # a loss: lower is better
            "MaxResults": 2,
        },
    )
    with stub:
        result = tuning.report(aws, "hpo-1", top=2)
    stub.assert_no_pending_responses()
    assert result["best"] == {
        "training_job": "hpo-1-002-b",
        "objective_value": 0.21,
        "hyperparameters": {"learning_rate": "3e-05"},
        "model_data": "s3://b/output/hpo-1-002-b/output/model.tar.gz",
        "billable_seconds": 300,
    }
    assert [t["training_job"] for t in result["top"]] == ["hpo-1-002-b", "hpo-1-001-a"]
    assert result["status"] == "Completed" and result["objective"] == objective
