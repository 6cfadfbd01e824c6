"""Which device and precision a training job uses, decided once, before any process starts.

A GPU host whose GPUs torch cannot use (the CPU build of torch, an NVIDIA driver too old for the
build's CUDA) would otherwise train on the CPU while the GPUs are billed; ``choose`` refuses that
unless the user asked for ``device=cpu``. Mixed precision follows the hardware: bf16 only where the
GPU computes it natively (Ampere and newer); T4 (g4dn) and V100 (p3) get fp16 with a GradScaler.

Everything torch reports is read through ``Probe``, so the decision is a pure function that tests
can feed any host.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from textclf.errors import ConfigError
from textclf.train.hyperparameters import Device, MixedPrecision

# NVIDIA_VISIBLE_DEVICES values that name no particular GPU: CUDA base images set "all" even on hosts
# without one, so only device files or explicit GPU ids count as "this host has GPUs".
_NO_GPU_IDS = frozenset({"", "all", "none", "void"})


@dataclass(frozen=True)
class Probe:
    """What the host and torch say about GPUs."""

    torch_version: str
    cuda_version: str | None  # torch.version.cuda: None for a CPU build
    device_files: tuple[str, ...]  # /dev/nvidia0, /dev/nvidia1, ...
    visible_devices: str  # NVIDIA_VISIBLE_DEVICES
    cuda_available: bool
    gpu_count: int
    gpu_name: str = ""
    compute_capability: tuple[int, int] = (0, 0)
    native_bf16: bool = False

    @classmethod
    def of_this_host(cls) -> Probe:
        files = tuple(sorted(str(p) for p in Path("/dev").glob("nvidia*") if re.fullmatch(r"nvidia\d+", p.name)))
        available = torch.cuda.is_available()
        count = torch.cuda.device_count() if available else 0
        return cls(
            torch_version=torch.__version__,
            cuda_version=torch.version.cuda,
            device_files=files,
            visible_devices=os.environ.get("NVIDIA_VISIBLE_DEVICES", "").strip(),
            cuda_available=available,
            gpu_count=count,
            gpu_name=torch.cuda.get_device_name(0) if count else "",
            compute_capability=torch.cuda.get_device_capability(0) if count else (0, 0),
            native_bf16=bool(count) and torch.cuda.is_bf16_supported(including_emulation=False),
        )

    @property
    def host_has_gpus(self) -> bool:
        return bool(self.device_files) or self.visible_devices.lower() not in _NO_GPU_IDS

    def why_unusable(self) -> str:
        """Why torch cannot use this host's GPUs, and what to do about it."""
        seen = ", ".join(self.device_files) or f"NVIDIA_VISIBLE_DEVICES={self.visible_devices}"
        if self.cuda_version is None:
            return (
                f"this host has GPUs ({seen}) but torch {self.torch_version} is a CPU build: use the GPU image "
                "variant (python -m ops image --variant gpu), or set the hyperparameter device=cpu to train on the CPU"
            )
        return (
            f"this host has GPUs ({seen}) but torch {self.torch_version} (CUDA {self.cuda_version}) cannot use them: "
            "the NVIDIA driver is missing or too old for this CUDA, or the GPUs are not passed to the container; "
            "use an instance whose driver supports it, or set the hyperparameter device=cpu to train on the CPU"
        )


@dataclass(frozen=True)
class Plan:
    """The device and precision every process of the job uses."""

    use_cuda: bool
    gpu_count: int
    amp: Literal["no", "fp16", "bf16"]  # autocast dtype on the GPU; always "no" on the CPU
    tf32: bool  # TF32 matmuls for what stays in FP32 (Ampere and newer)

    def describe(self, probe: Probe) -> str:
        cuda = f"CUDA {probe.cuda_version}" if probe.cuda_version else "CPU build"
        if not self.use_cuda:
            return f"device: cpu; torch {probe.torch_version} ({cuda}); precision fp32"
        major, minor = probe.compute_capability
        precision = {"no": "fp32", "fp16": "fp16 autocast + GradScaler", "bf16": "bf16 autocast"}[self.amp]
        return (
            f"device: cuda x {self.gpu_count} ({probe.gpu_name}, compute capability {major}.{minor}); "
            f"torch {probe.torch_version} ({cuda}); precision {precision}{', TF32 matmuls' if self.tf32 else ''}"
        )


def choose(device: Device, mixed_precision: MixedPrecision, probe: Probe) -> Plan:
    """The job's device and precision for the ``device`` and ``mixed_precision`` hyperparameters."""
    if device == "cuda" and not probe.cuda_available:
        if probe.host_has_gpus:
            raise ConfigError(f"device=cuda: {probe.why_unusable()}")
        raise ConfigError(f"device=cuda: this host has no GPU (torch {probe.torch_version} sees none)")
    if device == "auto" and not probe.cuda_available and probe.host_has_gpus:
        raise ConfigError(probe.why_unusable())
    if device == "cpu" or not probe.cuda_available:
        return Plan(use_cuda=False, gpu_count=0, amp="no", tf32=False)
    ampere = probe.compute_capability >= (8, 0)
    if mixed_precision == "bf16" and not probe.native_bf16:
        major, minor = probe.compute_capability
        raise ConfigError(
            f"mixed_precision=bf16: {probe.gpu_name} (compute capability {major}.{minor}) has no native bf16; "
            "use fp16 or auto"
        )
    if mixed_precision == "auto":
        amp: Literal["no", "fp16", "bf16"] = "bf16" if probe.native_bf16 else "fp16"
    else:
        amp = mixed_precision
    return Plan(use_cuda=True, gpu_count=probe.gpu_count, amp=amp, tf32=ampere)
