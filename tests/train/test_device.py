"""Device and precision: no silent CPU run on a GPU host, bf16 only where the GPU has it natively.

``textclf.train.device.choose`` is a pure function of what the host and torch report (a ``Probe``),
so every kind of host is tested here; this machine's own probe and a whole job on a host that
claims GPUs its torch cannot use are tested for real.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from support.training import SageMakerTree
from textclf import errors
from textclf.contract.opt_ml import ResourceConfig
from textclf.errors import ConfigError
from textclf.train import distributed
from textclf.train.device import Probe, choose

CPU_HOST = Probe("2.13.0+cpu", None, (), "", cuda_available=False, gpu_count=0)
CUDA = dict(torch_version="2.13.0", cuda_version="12.8", visible_devices="all", cuda_available=True)
A10G = Probe(**CUDA, device_files=("/dev/nvidia0",), gpu_count=1, gpu_name="NVIDIA A10G",
             compute_capability=(8, 6), native_bf16=True)  # fmt: skip
A100X8 = dataclasses.replace(A10G, gpu_count=8, gpu_name="NVIDIA A100-SXM4-40GB", compute_capability=(8, 0))
T4 = Probe(**CUDA, device_files=("/dev/nvidia0",), gpu_count=1, gpu_name="Tesla T4", compute_capability=(7, 5))
V100 = dataclasses.replace(T4, gpu_name="Tesla V100-SXM2-16GB", compute_capability=(7, 0))


def test_a_cpu_host_trains_in_fp32_whatever_mixed_precision_says() -> None:
    for precision in ("auto", "no", "fp16", "bf16"):
        plan = choose("auto", precision, CPU_HOST)  # type: ignore[arg-type]
        assert (plan.use_cuda, plan.gpu_count, plan.amp, plan.tf32) == (False, 0, "no", False)
    assert (
        choose("auto", "auto", CPU_HOST).describe(CPU_HOST)
        == "device: cpu; torch 2.13.0+cpu (CPU build); precision fp32"
    )


def test_bf16_only_where_native_else_fp16_with_a_scaler() -> None:
    assert choose("auto", "auto", A10G).amp == "bf16"
    assert choose("auto", "auto", A100X8).amp == "bf16" and choose("auto", "auto", A100X8).gpu_count == 8
    assert choose("auto", "auto", T4).amp == "fp16"  # g4dn
    assert choose("auto", "auto", V100).amp == "fp16"  # p3
    assert choose("auto", "no", A10G).amp == "no" and choose("auto", "fp16", A10G).amp == "fp16"
    with pytest.raises(ConfigError, match=r"mixed_precision=bf16: Tesla T4 \(compute capability 7.5\) has no native"):
        choose("auto", "bf16", T4)


def test_tf32_on_ampere_and_newer_only() -> None:
    assert choose("auto", "no", A10G).tf32 and choose("auto", "no", A100X8).tf32
    assert not choose("auto", "no", T4).tf32 and not choose("auto", "no", V100).tf32
    described = choose("auto", "auto", A10G).describe(A10G)
    assert described == (
        "device: cuda x 1 (NVIDIA A10G, compute capability 8.6); torch 2.13.0 (CUDA 12.8); "
        "precision bf16 autocast, TF32 matmuls"
    )
    assert "fp16 autocast + GradScaler" in choose("auto", "auto", T4).describe(T4)


def test_gpus_that_torch_cannot_use_stop_the_job_unless_cpu_was_asked_for() -> None:
    cpu_torch_on_gpu_host = dataclasses.replace(CPU_HOST, device_files=("/dev/nvidia0", "/dev/nvidia1"))
    with pytest.raises(ConfigError) as info:
        choose("auto", "auto", cpu_torch_on_gpu_host)
    message = str(info.value)
    assert "this host has GPUs (/dev/nvidia0, /dev/nvidia1) but torch 2.13.0+cpu is a CPU build" in message
    assert "--variant gpu" in message and "device=cpu" in message
    old_driver = dataclasses.replace(T4, cuda_available=False, gpu_count=0)
    with pytest.raises(ConfigError, match=r"CUDA 12.8\) cannot use them: the NVIDIA driver is missing or too old"):
        choose("auto", "auto", old_driver)
    with pytest.raises(ConfigError, match="device=cuda: this host has GPUs"):
        choose("cuda", "auto", old_driver)
    assert not choose("cpu", "auto", old_driver).use_cuda
    assert not choose("cpu", "auto", cpu_torch_on_gpu_host).use_cuda
    assert not choose("cpu", "bf16", A10G).use_cuda  # device=cpu wins over a usable GPU


def test_only_device_files_or_gpu_ids_mean_gpus() -> None:
    """CUDA base images set NVIDIA_VISIBLE_DEVICES=all on every host: that alone is no GPU."""
    assert not choose("auto", "auto", dataclasses.replace(CPU_HOST, visible_devices="all")).use_cuda
    assert not choose("auto", "auto", dataclasses.replace(CPU_HOST, visible_devices="void")).use_cuda
    with pytest.raises(ConfigError, match="NVIDIA_VISIBLE_DEVICES=0,1"):
        choose("auto", "auto", dataclasses.replace(CPU_HOST, visible_devices="0,1"))
    with pytest.raises(ConfigError, match="device=cuda: this host has no GPU"):
        choose("cuda", "auto", CPU_HOST)


def test_this_host() -> None:
    probe = Probe.of_this_host()
    assert not probe.cuda_available and probe.gpu_count == 0  # the machines this suite runs on have no GPU
    assert probe.torch_version.startswith("2.")
    assert not choose("auto", "auto", probe).use_cuda


def test_a_job_on_a_host_with_gpus_it_cannot_use_fails_and_says_why(sm: SageMakerTree) -> None:
    result = sm.run(NVIDIA_VISIBLE_DEVICES="0")
    assert result.returncode == errors.EXIT_USER_ERROR, result.stdout + result.stderr
    first = sm.failure.read_text().splitlines()[0]
    assert first.startswith("this host has GPUs (NVIDIA_VISIBLE_DEVICES=0) but torch ")
    assert "device=cpu" in first
    assert not any(Path(sm.model_dir).glob("*"))


def test_device_cpu_trains_there_and_says_so_first(sm: SageMakerTree) -> None:
    sm.hyperparameters({**json_hyperparameters(sm), "device": "cpu", "max_steps": "3"})
    result = sm.run(NVIDIA_VISIBLE_DEVICES="0")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    device_line = next(i for i, line in enumerate(lines) if line.startswith("device: "))
    assert lines[device_line].startswith("device: cpu; torch 2.13.0")
    assert lines[device_line].endswith("precision fp32; 1 process(es) on each of 1 host(s)")
    assert all(line.startswith("data: ") for line in lines[:device_line])  # only the data checks come first


def json_hyperparameters(sm: SageMakerTree) -> dict[str, str]:
    import json

    return json.loads((sm.root / "input" / "config" / "hyperparameters.json").read_text())


@pytest.mark.parametrize(
    ("procs", "device", "message"),
    [
        ("0", CPU_HOST, "TEXTCLF_PROCS_PER_HOST='0' is not a positive integer"),
        ("two", CPU_HOST, "TEXTCLF_PROCS_PER_HOST='two' is not a positive integer"),
        ("2", A10G, "TEXTCLF_PROCS_PER_HOST=2 exceeds the 1 GPUs of this host"),
    ],
)
def test_a_bad_process_count_is_named(procs: str, device: Probe, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEXTCLF_PROCS_PER_HOST", procs)
    with pytest.raises(ConfigError, match=re.escape(message)):
        distributed.plan(ResourceConfig(), choose("auto", "auto", device))


def test_one_process_per_gpu_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEXTCLF_PROCS_PER_HOST", raising=False)
    cluster = distributed.plan(ResourceConfig("algo-2", ["algo-1", "algo-2"]), choose("auto", "auto", A100X8))
    assert (cluster.procs_per_host, cluster.world_size, cluster.host_rank, cluster.use_cuda) == (8, 16, 1, True)
    assert distributed.plan(ResourceConfig(), choose("auto", "auto", CPU_HOST)).procs_per_host == 1
