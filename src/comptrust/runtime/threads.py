"""How many CPU threads torch computes with, chosen so a shared or limited machine is not oversubscribed.

torch's default follows OpenMP: typically one intra-op thread per logical CPU the process sees,
whatever a container's CPU quota says.  That oversubscribes hyper-threads and CPU-limited
containers, and on a machine shared with other jobs even one thread per core can be too many
(there, pass ``--threads 1``; docs/benchmarks.md, "CPU threads (issue 13)").  The order of precedence:

1. ``--threads N``;
2. ``$OMP_NUM_THREADS`` (the variable OpenMP programs already honour);
3. the physical cores this process may run on (its CPU affinity, counted once per core, capped
   by a cgroup CPU quota, ``docker --cpus``), less the cores other jobs keep busy, rounded (at
   least 1).  On an idle machine that is every physical core; on a shared one it avoids OpenMP
   threads spinning while waiting for a core (``benchmarks/threads.py`` measures it;
   docs/benchmarks.md, "CPU threads (issue 13)").

How busy other jobs keep the cores is measured, not taken from the load average: the CPU time
``/proc/stat`` counts on this process's CPUs from the moment the command starts
(:func:`start_busy_sample`, before its imports) until threads are chosen, less this process's
own CPU time (:func:`busy_cores`).  The 1-minute load average decays over minutes, so right
after a job ends it still counts it, and a run started then on an idle machine got too few
threads (docs/benchmarks.md, "End to end on an AMX machine, threads and malloc").  The load
average remains the fallback where ``/proc/stat`` is not there (macOS).

The count and where it came from are recorded in every run (``spec.json`` / ``summary.json``),
because float reductions may round differently with a different number of threads.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

from comptrust.errors import ConfigError

_applied: dict[str, Any] | None = None
_sample: tuple[float, tuple[int, int], float] | None = None  # (wall clock, (busy, total) ticks, own CPU seconds)
MIN_SAMPLE_SECONDS = 0.25  # a shorter window is too coarse at /proc/stat's 100 ticks per second


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
    busy = other_jobs()
    if busy is None:
        return cores, source
    others, how = busy
    # Other jobs' cores are counted on every CPU we may run on; a quota caps us below that anyway.
    free = max(1, min(cores, int(physical_cores() - others + 0.5)))
    if free < cores:
        return free, f"{source} ({cores}) less {how}"
    return cores, source


def other_jobs() -> tuple[float, str] | None:
    """(cores other jobs keep busy, how it was measured), or None where nothing says."""
    busy = busy_cores()
    if busy is not None:
        return busy, f"the cores other jobs keep busy ({busy:.1f})"
    load = load_average()
    if load is not None:
        return load, f"the load average ({load:.1f})"
    return None


def load_average() -> float | None:
    """Runnable tasks of other jobs, averaged over the last minute (None where the OS does not say)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _my_cpus() -> set[int]:
    return set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))


def cpu_ticks(cpus: set[int], proc_stat: Path = Path("/proc/stat")) -> tuple[int, int] | None:
    """(busy, total) clock ticks of ``cpus`` since boot, from ``/proc/stat`` (None where it is missing)."""
    try:
        lines = proc_stat.read_text().splitlines()
    except OSError:
        return None
    busy = total = 0
    seen = 0
    for line in lines:
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu" or not name[3:].isdigit() or int(name[3:]) not in cpus:
            continue
        # user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
        fields = [int(x) for x in rest.split()[:8]]
        total += sum(fields)
        busy += sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)
        seen += 1
    return (busy, total) if seen else None


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def start_busy_sample() -> None:
    """Begin measuring how busy the CPUs are (the CLI calls this first, so its imports fill the window)."""
    global _sample
    ticks = cpu_ticks(_my_cpus())
    _sample = (time.monotonic(), ticks, _own_cpu_seconds()) if ticks is not None else None


def busy_cores(min_seconds: float = MIN_SAMPLE_SECONDS) -> float | None:
    """Cores that other processes kept busy since :func:`start_busy_sample` (started now if it was not).

    Waits until the window is ``min_seconds`` long.  This process's own CPU time (its imports) is
    subtracted; None where ``/proc/stat`` cannot be read.
    """
    if _sample is None:
        start_busy_sample()
        if _sample is None:
            return None
    started, (busy0, total0), own0 = _sample
    wait = min_seconds - (time.monotonic() - started)
    if wait > 0:
        time.sleep(wait)
    cpus = _my_cpus()
    now = cpu_ticks(cpus)
    if now is None or now[1] <= total0:
        return None
    wall = max(1e-6, time.monotonic() - started)
    busy = (now[0] - busy0) / (now[1] - total0) * len(cpus)  # logical CPUs kept busy, ours included
    own = (_own_cpu_seconds() - own0) / wall
    others = max(0.0, busy - own) * physical_cores(cpus) / len(cpus)  # in physical cores
    return round(others, 1)


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
