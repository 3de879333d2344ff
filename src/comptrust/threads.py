"""How many CPU threads torch computes with, chosen so a shared or limited machine is not oversubscribed.

torch's default follows OpenMP: typically one intra-op thread per logical CPU the process sees,
whatever a container's CPU quota says.  That oversubscribes hyper-threads and CPU-limited
containers, and on a machine shared with other jobs even one thread per core can be too many
(issue 13 measured on a loaded 2-core box: 2 threads 3-4 tok/s, 1 thread 10-11 tok/s; there,
pass ``--threads 1``).  The order of precedence:

1. ``--threads N``;
2. ``$OMP_NUM_THREADS`` (the variable OpenMP programs already honour);
3. the physical cores this process may run on (its CPU affinity, counted once per core, capped
   by a cgroup CPU quota, ``docker --cpus``), less the cores other jobs keep busy: the 1-minute
   load average at start, rounded (at least 1).  On an idle machine that is every physical core;
   on a shared one it avoids OpenMP threads spinning while waiting for a core (measured with
   ``benchmarks/threads.py``, docs/benchmarks.md: 1 thread 5x faster than 2 at load 12-15 on 2 cores).

The count and where it came from are recorded in every run (``spec.json`` / ``summary.json``),
because float reductions may round differently with a different number of threads.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from comptrust.errors import ConfigError

_applied: dict[str, Any] | None = None


def physical_cores(cpus: set[int] | None = None, sys_cpu: Path = Path("/sys/devices/system/cpu")) -> int:
    """Distinct (package, core) pairs among the CPUs this process may use; logical CPUs if unknown."""
    if cpus is None:
        cpus = set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    cores = set()
    for cpu in cpus:
        topology = sys_cpu / f"cpu{cpu}" / "topology"
        try:
            cores.add((topology.joinpath("physical_package_id").read_text().strip(),
                       topology.joinpath("core_id").read_text().strip()))
        except OSError:
            return max(1, len(cpus))
    return max(1, len(cores))


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """CPUs allowed by a cgroup quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``), rounded up; None if unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota != "max":
            return max(1, math.ceil(int(quota) / int(period)))
        return None
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return max(1, math.ceil(quota_us / period_us)) if quota_us > 0 else None
    except (OSError, ValueError):
        return None


def choose_threads(requested: int | None, environ: dict[str, str] | None = None) -> tuple[int, str]:
    """``(threads, source)`` by the precedence in the module doc."""
    env = os.environ if environ is None else environ
    if requested is not None:
        if requested < 1:
            raise ConfigError(f"--threads must be at least 1 (got {requested})",
                              "pass a positive number, or omit it to use the physical cores")
        return requested, "--threads"
    omp = env.get("OMP_NUM_THREADS", "").strip()
    if omp:
        try:
            value = int(omp.split(",")[0])
        except ValueError:
            value = 0
        if value < 1:
            raise ConfigError(f"OMP_NUM_THREADS={omp!r} is not a positive number of threads",
                              "set it to e.g. 4, unset it, or pass --threads")
        return value, "OMP_NUM_THREADS"
    cores, source = physical_cores(), "physical cores"
    limit = cgroup_cpu_limit()
    if limit is not None and limit < cores:
        cores, source = limit, "cgroup CPU quota"
    load = load_average()
    free = max(1, int(cores - load + 0.5)) if load is not None else cores
    if free < cores:
        return free, f"{source} ({cores}) less the load average ({load:.1f})"
    return cores, source


def load_average() -> float | None:
    """Runnable tasks of other jobs, averaged over the last minute (None where the OS does not say)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def apply_threads(requested: int | None = None) -> dict[str, Any]:
    """Set torch's intra-op threads (before any model work) and remember the choice for the run record."""
    global _applied
    import torch

    threads, source = choose_threads(requested)
    torch.set_num_threads(threads)
    _applied = {"torch_threads": torch.get_num_threads(), "source": source}
    return dict(_applied)


def threads_info() -> dict[str, Any]:
    """What a run records: the count torch uses and how it was chosen (``library default`` if comptrust
    did not choose, e.g. when used as a library without :func:`apply_threads`)."""
    import torch

    if _applied is not None and _applied["torch_threads"] == torch.get_num_threads():
        return dict(_applied)
    return {"torch_threads": torch.get_num_threads(), "source": "library default"}
