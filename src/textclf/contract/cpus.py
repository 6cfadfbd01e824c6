"""How many CPUs this container may use: one answer for training threads and serving workers.

``os.cpu_count()`` counts the host's cores, far more than a container limited by ``docker run
--cpus`` (or a SageMaker instance's cgroup) may use; thread pools sized by it oversubscribe the
quota and get throttled.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_cpu_limit(cgroup_root: Path = CGROUP_ROOT) -> float | None:
    """The CPU quota of this container in cores (``docker run --cpus``), or None when unlimited.

    cgroup v2 keeps ``cpu.max`` ("QUOTA PERIOD" or "max PERIOD"); v1 keeps ``cpu.cfs_quota_us`` (-1:
    unlimited) and ``cpu.cfs_period_us``. Inside a container the process's cgroup is the root of
    the mounted hierarchy.
    """
    try:
        quota, period = (cgroup_root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    for v1 in (cgroup_root / "cpu", cgroup_root / "cpu,cpuacct"):
        try:
            quota_us = int((v1 / "cpu.cfs_quota_us").read_text())
            period_us = int((v1 / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us
    return None


def available_cpus(cgroup_root: Path = CGROUP_ROOT) -> int:
    """Cores this process may run on: its CPU affinity, capped by the cgroup quota, at least 1.

    A fractional quota rounds down: 1.5 CPUs' worth of busy threads on 2 threads would be
    throttled for a third of every period, slower than 1 thread that never is.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    limit = cgroup_cpu_limit(cgroup_root)
    if limit is not None:
        cpus = min(cpus, max(1, math.floor(limit)))
    return max(1, cpus)
