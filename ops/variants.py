"""The image variants, how each is built, and which one a SageMaker job runs.

| variant | Dockerfile target, build argument | tag | for |
|---|---|---|---|
| ``cpu`` | ``full``, ``TORCH_VARIANT=cpu`` (the default) | ``<tag>`` | training on CPU instances |
| ``gpu`` | ``full``, ``TORCH_VARIANT=cuda`` (PyPI's CUDA torch) | ``<tag>-gpu`` | training on NVIDIA GPUs |
| ``serve`` | ``serve`` (onnxruntime on the CPU, no torch) | ``<tag>-serve`` | endpoints, Batch Transform |

Training and tuning jobs take ``gpu`` on instance families with NVIDIA GPUs and ``cpu`` on the
others; instances torch's CUDA build cannot use (Trainium and Inferentia, whose AWS Neuron
accelerators need torch-neuronx; AMD GPUs) are refused before anything is built or started.
Endpoints and transform jobs take ``serve`` whatever their instance type: serving runs on the CPU.
Every variant serves, and both full variants train on the CPU where no GPU is present.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ops.config import ConfigError, OpsConfig

# SageMaker local mode (the SDK runs the job on this machine's Docker) names these instance types.
LOCAL_CPU, LOCAL_GPU = "local", "local_gpu"
_INSTANCE_TYPE = re.compile(r"^ml\.([a-z0-9-]+)\.[a-z0-9-]+$")
# EC2/SageMaker naming: g* are graphics families, p* accelerated computing, all NVIDIA but g4ad.
_NVIDIA_FAMILY = re.compile(r"^(gr?|p)\d")
_REFUSED = {
    "inf": "AWS Inferentia (Neuron) has no CUDA; it needs torch-neuronx, which no variant has",
    "trn": "AWS Trainium (Neuron) has no CUDA; it needs torch-neuronx, which no variant has",
    "g4ad": "its AMD GPUs need a ROCm build of torch, which no variant has",
    # PyPI's torch 2.13.0 is built for CUDA 13.0 with kernels for compute capability 7.5 and newer
    # (`torch._C._cuda_getArchFlags()` in the gpu image: sm_75 ... sm_120; bench/results/image-gpu.md).
    "p2": "its K80 GPUs (compute capability 3.7) are older than the gpu image's CUDA 13 torch supports (7.5+)",
    "p3": "its V100 GPUs (compute capability 7.0) are older than the gpu image's CUDA 13 torch supports (7.5+)",
}


@dataclass(frozen=True)
class Variant:
    name: str
    tag_suffix: str
    target: str  # the Dockerfile stage
    build_args: tuple[tuple[str, str], ...]
    summary: str

    def tag(self, base: str) -> str:
        return f"{base}{self.tag_suffix}"

    def docker_args(self) -> list[str]:
        """What ``docker build`` needs, besides the file, tag and context, to build this variant."""
        args = ["--target", self.target]
        for key, value in self.build_args:
            args += ["--build-arg", f"{key}={value}"]
        return args


SERVE = Variant("serve", "-serve", "serve", (), "serve only: onnxruntime on the CPU, no torch")
CPU = Variant("cpu", "", "full", (("TORCH_VARIANT", "cpu"),), "train on CPU + serve: CPU torch")
GPU = Variant("gpu", "-gpu", "full", (("TORCH_VARIANT", "cuda"),), "train on NVIDIA GPUs (or CPU) + serve: CUDA torch")
VARIANTS = {v.name: v for v in (SERVE, CPU, GPU)}  # in build order: serve's layers are the others' first ones
VARIANT_ARGS = {key for v in VARIANTS.values() for key, _ in v.build_args}


def instance_family(instance_type: str, setting: str) -> str:
    """``ml.g5.xlarge`` -> ``g5``; ``setting`` names the configuration entry in errors."""
    match = _INSTANCE_TYPE.match(instance_type)
    if match is None:
        raise ConfigError(f"{setting} {instance_type}: expected ml.<family>.<size>, e.g. ml.g5.xlarge")
    return match.group(1)


def training_variant(instance_type: str, setting: str = "training.instance_type") -> Variant:
    """The variant a training job on ``instance_type`` runs: gpu on NVIDIA GPUs, cpu otherwise."""
    if instance_type in (LOCAL_CPU, LOCAL_GPU):
        return GPU if instance_type == LOCAL_GPU else CPU
    family = instance_family(instance_type, setting)
    for prefix, reason in _REFUSED.items():
        if family.startswith(prefix):
            raise ConfigError(
                f"{setting} {instance_type}: {reason}. Train on an NVIDIA GPU instance "
                "(ml.g4dn, ml.g5, ml.g6, ml.g6e, ml.p4d, ml.p5, ...) or a CPU one (ml.c6i, ml.m6i, ...)"
            )
    return GPU if _NVIDIA_FAMILY.match(family) else CPU


def serving_variant(instance_type: str, setting: str = "endpoint.instance_type") -> Variant:
    """The variant an endpoint or transform job runs: always serve (onnxruntime on the CPU)."""
    if instance_type not in (LOCAL_CPU, LOCAL_GPU):
        instance_family(instance_type, setting)
    return SERVE


def needed(cfg: OpsConfig) -> list[Variant]:
    """The variants this configuration's jobs run, in build order: what ``ops image`` builds by default."""
    wanted = {
        training_variant(cfg.training.instance_type),
        serving_variant(cfg.endpoint.instance_type),
        serving_variant(cfg.batch.instance_type, "batch.instance_type"),
    }
    return [v for v in VARIANTS.values() if v in wanted]


def chosen(names: list[str] | None, cfg: OpsConfig) -> list[Variant]:
    """``--variant`` values (``all`` for every variant) in build order; none given: :func:`needed`."""
    if not names:
        return needed(cfg)
    if "all" in names:
        return list(VARIANTS.values())
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        raise ConfigError(f"unknown image variant(s) {', '.join(unknown)}: choose from {', '.join(VARIANTS)}, all")
    return [v for v in VARIANTS.values() if v.name in names]
