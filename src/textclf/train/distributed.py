"""Several hosts, several GPUs: the process layout, the rendezvous, and the few collectives used.

Layout: one process per GPU (one per host on CPU), on every host of ``resourceconfig.json``.
Global rank = host index x processes per host + local rank; ``hosts[0]`` is the master. One host
with one process runs in the launching process with no process group at all.

Environment overrides (all optional):

``TEXTCLF_MASTER_ADDR``
    The rendezvous address instead of resolving ``hosts[0]``. For tests and local runs that play
    several hosts on one machine, where ``algo-1`` does not resolve: ``127.0.0.1``. A single-host
    job needs no name at all: its processes meet on the loopback interface.
``TEXTCLF_MASTER_PORT`` (or ``MASTER_PORT``)
    The rendezvous port; default 29500.
``TEXTCLF_PROCS_PER_HOST``
    Processes per host instead of one per GPU (like ``torchrun --nproc-per-node``); on CPU it
    lets one machine exercise the multi-process path with gloo.

Why not ``torchrun``: the hosts come from ``resourceconfig.json`` (not from flags), a spot stop must
end every rank at the same step boundary after rank 0's checkpoint and leave exit status 143, and a
one-process job should run in the launching process with no agent or rendezvous at all; what this
needs of an elastic agent is the few lines of ``launch`` below.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from textclf.contract.opt_ml import ResourceConfig, resolve_host
from textclf.errors import ConfigError, UserError
from textclf.train.device import Plan as DevicePlan

DEFAULT_MASTER_PORT = 29500
MASTER_ADDR_ENV = "TEXTCLF_MASTER_ADDR"
MASTER_PORT_ENV = "TEXTCLF_MASTER_PORT"
PROCS_PER_HOST_ENV = "TEXTCLF_PROCS_PER_HOST"
RENDEZVOUS_TIMEOUT = timedelta(minutes=30)  # also bounds every collective: a rank that hangs fails the job
# How long ranks wait for rank 0 to evaluate, export and verify the model after training: exporting a
# large model with its accuracy gate takes minutes, and a rank that left early would let a platform
# (SageMaker local mode, compose) stop rank 0 mid-export.
FINAL_WAIT_TIMEOUT = timedelta(hours=6)
CHILD_GRACE_S = 30.0  # after one process fails, how long the others get to stop before SIGKILL


@dataclass(frozen=True)
class Cluster:
    """All processes of the job, as seen from this host."""

    hosts: tuple[str, ...]
    host_rank: int
    procs_per_host: int
    use_cuda: bool
    network_interface: str | None = None

    @property
    def world_size(self) -> int:
        return len(self.hosts) * self.procs_per_host

    @property
    def master(self) -> str:
        return self.hosts[0]


@dataclass(frozen=True)
class Worker:
    """One training process: its place in the job and its device."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)


def plan(resources: ResourceConfig, device: DevicePlan) -> Cluster:
    """One process per GPU (one on the CPU) on every host, unless ``TEXTCLF_PROCS_PER_HOST`` says otherwise."""
    default = device.gpu_count if device.use_cuda else 1
    raw = os.environ.get(PROCS_PER_HOST_ENV, "").strip()
    if raw and (not raw.isdigit() or int(raw) < 1):
        raise ConfigError(f"{PROCS_PER_HOST_ENV}={raw!r} is not a positive integer")
    procs = int(raw) if raw else default
    if device.use_cuda and procs > device.gpu_count:
        raise ConfigError(f"{PROCS_PER_HOST_ENV}={procs} exceeds the {device.gpu_count} GPUs of this host")
    return Cluster(tuple(resources.hosts), resources.rank, procs, device.use_cuda, resources.network_interface_name)


def worker_for(cluster: Cluster, local_rank: int) -> Worker:
    device = f"cuda:{local_rank}" if cluster.use_cuda else "cpu"
    return Worker(cluster.host_rank * cluster.procs_per_host + local_rank, local_rank, cluster.world_size, device)


def init_process_group(cluster: Cluster, worker: Worker) -> None:
    """Join the job's process group (NCCL on GPU, gloo on CPU); a no-op for a single process."""
    if not worker.is_distributed:
        return
    if cluster.network_interface:
        # SageMaker names the interface hosts talk over; keep any value the user set explicitly.
        os.environ.setdefault("NCCL_SOCKET_IFNAME", cluster.network_interface)
        os.environ.setdefault("GLOO_SOCKET_IFNAME", cluster.network_interface)
    # One host: its processes meet on loopback, so no host name has to resolve (train-local.sh, a
    # multi-GPU workstation, ml.g5.12xlarge); several hosts: hosts[0] by name, as SageMaker names them.
    single_host = len(cluster.hosts) == 1
    address = os.environ.get(MASTER_ADDR_ENV) or ("127.0.0.1" if single_host else resolve_host(cluster.master))
    port = int(os.environ.get(MASTER_PORT_ENV) or os.environ.get("MASTER_PORT") or DEFAULT_MASTER_PORT)
    if cluster.use_cuda:
        torch.cuda.set_device(worker.torch_device)
    dist.init_process_group(
        backend="nccl" if cluster.use_cuda else "gloo",
        init_method=f"tcp://{address}:{port}",
        rank=worker.rank,
        world_size=worker.world_size,
        timeout=RENDEZVOUS_TIMEOUT,
    )
    global _final_group
    _final_group = dist.new_group(backend="gloo", timeout=FINAL_WAIT_TIMEOUT)


_final_group: Any = None  # gloo, with a long timeout: the wait for rank 0's export (see FINAL_WAIT_TIMEOUT)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(worker: Worker) -> None:
    if worker.is_distributed:
        dist.barrier()


def wait_for_main(worker: Worker) -> None:
    """Every rank waits here until rank 0 has written and verified the model (or failed doing so)."""
    if not worker.is_distributed:
        return
    try:
        dist.barrier(group=_final_group)
    except RuntimeError as exc:  # rank 0 died: its own failure file has the reason
        if worker.is_main:
            raise
        raise UserError(
            f"rank 0 stopped before it had written the model ({' '.join(str(exc).split())[:200]}); "
            "the first host's failure reason is the job's"
        ) from exc


def any_rank(worker: Worker, flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any (e.g. a SIGTERM seen by one host only)."""
    if not worker.is_distributed:
        return flag
    value = torch.tensor([1 if flag else 0], device=worker.torch_device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def gather_objects(worker: Worker, value: Any) -> list[Any]:
    """``value`` from every rank, in rank order (just ``[value]`` for a single process)."""
    if not worker.is_distributed:
        return [value]
    parts: list[Any] = [None] * worker.world_size
    dist.all_gather_object(parts, value)
    return parts


def shard(worker: Worker, count: int) -> list[int]:
    """This rank's share of ``count`` items for evaluation: every world_size-th one."""
    return list(range(worker.rank, count, worker.world_size))


def gather_rows(worker: Worker, rows: np.ndarray, count: int) -> np.ndarray:
    """Reassemble rows computed on ``shard(worker, count)`` by every rank into all ``count`` rows
    (a rank may hold none: fewer rows than ranks)."""
    if not worker.is_distributed:
        return rows
    parts = gather_objects(worker, rows)
    shaped = max(parts, key=len)
    full = np.zeros((count, *shaped.shape[1:]), dtype=shaped.dtype)
    for rank, part in enumerate(parts):
        if len(part):
            full[rank :: worker.world_size] = part
    return full


def cpu_threads(requested: int, procs_per_host: int, available: int) -> int:
    """Threads per process: the request, else this container's CPUs shared among its processes."""
    return requested if requested > 0 else max(1, available // procs_per_host)


# -- launching -------------------------------------------------------------------------------------


def _child_main(fn: Callable[..., int], cluster: Cluster, local_rank: int, args: tuple) -> None:
    sys.exit(fn(worker_for(cluster, local_rank), *args))


def launch(cluster: Cluster, fn: Callable[..., int], *args: Any) -> int:
    """Run ``fn(worker, *args)`` in each of this host's processes and return the job's exit code.

    One process per host runs in this very process. Several are spawned (a fresh interpreter each,
    as CUDA requires); SIGTERM and SIGINT are passed on to them, and when one fails the others are
    stopped, so that no rank waits forever on a peer that is gone.
    """
    if cluster.procs_per_host == 1:
        return fn(worker_for(cluster, 0), *args)
    ctx = multiprocessing.get_context("spawn")
    children = [
        ctx.Process(target=_child_main, args=(fn, cluster, local_rank, args), name=f"textclf-rank-{local_rank}")
        for local_rank in range(cluster.procs_per_host)
    ]
    for child in children:
        child.start()

    def forward(signum: int, _frame: Any) -> None:
        for child in children:
            if child.is_alive() and child.pid is not None:
                os.kill(child.pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        failed_at: float | None = None
        while any(c.is_alive() for c in children):
            time.sleep(0.2)
            codes = [c.exitcode for c in children if c.exitcode not in (None, 0)]
            if codes and failed_at is None:
                failed_at = time.monotonic()
                forward(signal.SIGTERM, None)
            if failed_at is not None and time.monotonic() - failed_at > CHILD_GRACE_S:
                for child in children:
                    child.kill()
        for child in children:
            child.join()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    codes = [c.exitcode or 0 for c in children]
    # A negative exit code means "killed by that signal"; report it the shell's way (128 + signal).
    return next((code if code > 0 else 128 - code for code in codes if code != 0), 0)
