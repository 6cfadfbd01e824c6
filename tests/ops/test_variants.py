"""Which image variant each job runs: from the instance type, checked at the AWS request."""

from __future__ import annotations

from typing import Any

import pytest

from ops import endpoint, training, tuning, variants
from ops.config import ConfigError
from support.aws import Calls, pinned_image


@pytest.mark.parametrize(
    ("instance_type", "variant"),
    [
        ("ml.g4dn.xlarge", "gpu"),
        ("ml.g5.xlarge", "gpu"),
        ("ml.g6.2xlarge", "gpu"),
        ("ml.g6e.12xlarge", "gpu"),
        ("ml.p4d.24xlarge", "gpu"),
        ("ml.p4de.24xlarge", "gpu"),
        ("ml.p5.48xlarge", "gpu"),
        ("ml.p5e.48xlarge", "gpu"),
        ("ml.c6i.xlarge", "cpu"),
        ("ml.c5.2xlarge", "cpu"),
        ("ml.m6i.4xlarge", "cpu"),
        ("ml.r5.large", "cpu"),
        ("ml.t3.medium", "cpu"),
        ("local", "cpu"),
        ("local_gpu", "gpu"),
    ],
)
def test_training_variant_from_the_instance_type(instance_type: str, variant: str) -> None:
    assert variants.training_variant(instance_type).name == variant


@pytest.mark.parametrize(
    ("instance_type", "reason"),
    [
        ("ml.trn1.2xlarge", "AWS Trainium (Neuron) has no CUDA"),
        ("ml.trn1n.32xlarge", "AWS Trainium (Neuron) has no CUDA"),
        ("ml.trn2.48xlarge", "AWS Trainium (Neuron) has no CUDA"),
        ("ml.inf2.xlarge", "AWS Inferentia (Neuron) has no CUDA"),
        ("ml.g4ad.xlarge", "AMD GPUs need a ROCm build of torch"),
        ("ml.p3.2xlarge", "V100 GPUs (compute capability 7.0) are older"),
        ("ml.p3dn.24xlarge", "V100 GPUs (compute capability 7.0) are older"),
        ("ml.p2.xlarge", "K80 GPUs (compute capability 3.7) are older"),
        ("g5.xlarge", "expected ml.<family>.<size>"),
    ],
)
def test_instances_torch_cannot_use_are_refused(instance_type: str, reason: str) -> None:
    with pytest.raises(ConfigError) as refused:
        variants.training_variant(instance_type)
    assert str(refused.value).startswith(f"training.instance_type {instance_type}") and reason in str(refused.value)


def test_tags_and_docker_arguments() -> None:
    assert {name: v.tag("v3") for name, v in variants.VARIANTS.items()} == {
        "serve": "v3-serve",
        "cpu": "v3",
        "gpu": "v3-gpu",
    }
    assert variants.GPU.docker_args() == ["--target", "full", "--build-arg", "TORCH_VARIANT=cuda"]
    assert variants.CPU.docker_args() == ["--target", "full", "--build-arg", "TORCH_VARIANT=cpu"]
    assert variants.SERVE.docker_args() == ["--target", "serve"]
    assert variants.serving_variant("ml.g5.xlarge") is variants.SERVE  # serving is onnxruntime on the CPU


def test_what_ops_image_builds_by_default(aws: Any) -> None:
    assert [v.name for v in variants.needed(aws.cfg)] == ["serve", "gpu"]  # ml.g5 training, ml.c5 serving
    aws.cfg.training.instance_type = "ml.m5.xlarge"
    assert [v.name for v in variants.needed(aws.cfg)] == ["serve", "cpu"]
    assert [v.name for v in variants.chosen(["gpu", "cpu"], aws.cfg)] == ["cpu", "gpu"]
    assert [v.name for v in variants.chosen(["all"], aws.cfg)] == ["serve", "cpu", "gpu"]
    with pytest.raises(ConfigError, match="unknown image variant"):
        variants.chosen(["rocm"], aws.cfg)


def test_gpu_training_job_runs_the_gpu_image(aws: Any, calls: Calls, uploaded: dict[str, str]) -> None:
    training.start(aws)  # the test config trains on ml.g5.xlarge
    assert calls.one("CreateTrainingJob")["AlgorithmSpecification"]["TrainingImage"] == pinned_image(aws, "t1-gpu")


def test_cpu_training_job_runs_the_cpu_image(aws: Any, calls: Calls, uploaded: dict[str, str]) -> None:
    aws.cfg.training.instance_type = "ml.c6i.4xlarge"
    training.start(aws)
    request = calls.one("CreateTrainingJob")
    assert request["AlgorithmSpecification"]["TrainingImage"] == pinned_image(aws, "t1")
    assert request["ResourceConfig"]["InstanceType"] == "ml.c6i.4xlarge"


def test_neuron_training_and_tuning_are_refused_before_any_job(
    aws: Any, calls: Calls, uploaded: dict[str, str]
) -> None:
    aws.cfg.training.instance_type = "ml.trn1.32xlarge"
    with pytest.raises(ConfigError, match="Trainium"):
        training.start(aws)
    with pytest.raises(ConfigError, match="Trainium"):
        tuning.start(aws)
    assert calls.of("CreateTrainingJob") == calls.of("CreateHyperParameterTuningJob") == []


def test_endpoint_runs_the_serve_image_whatever_the_training_instance(aws: Any, calls: Calls) -> None:
    aws.cfg.training.instance_type = "ml.p4d.24xlarge"
    endpoint.deploy(aws, "s3://textclf-test-bucket/m/model.tar.gz", autoscale=False)
    assert calls.one("CreateModel")["PrimaryContainer"]["Image"] == pinned_image(aws, "t1-serve")


def test_an_image_uri_stands_for_every_job(aws: Any) -> None:
    aws.cfg.image.uri = "registry.example.com/textclf:mine"
    assert aws.training_image == aws.serving_image == "registry.example.com/textclf:mine"
