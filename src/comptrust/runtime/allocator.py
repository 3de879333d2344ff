"""Keep freed memory inside the process (glibc), so a decode step does not page-fault on every large tensor.

Why?  glibc's ``malloc`` serves a request above its mmap threshold (128 KiB, raised adaptively up
to 32 MiB) with fresh pages from the kernel and gives them back on ``free``, and it trims the
top of its heap once more than twice that is free.  A CPU decode step allocates dozens of
tensors of megabytes (the last-position logits, the sampler's vocabulary-wide scratch, attention
buffers), so each step touches new pages again, and on a virtual machine a page fault is
expensive: the thresholds below made the sampler's step and a whole generation markedly faster,
with identical texts (docs/benchmarks.md, "End to end on an AMX machine, threads and malloc").
PyTorch's CPU tuning guides recommend jemalloc or tcmalloc for the same reason; two ``mallopt``
calls give most of it with no extra library.

:func:`keep_freed_memory` raises the mmap threshold to :data:`MMAP_THRESHOLD` (a decode step's
tensors come from the heap; the weights and anything larger still come from, and go back to,
the kernel) and the trim threshold to :data:`TRIM_THRESHOLD` (the process keeps that much
freed memory instead of returning it).  It changes nothing when the user has chosen an allocator
or malloc settings already (``LD_PRELOAD``, ``MALLOC_*_`` or ``GLIBC_TUNABLES``), when
``COMPTRUST_KEEP_FREED_MEMORY=0``, or off glibc.  Runs record what was done (``allocator`` in
``spec.json``), as they record threads: it changes speed, never a number.
"""

from __future__ import annotations

import ctypes
import os
import platform
from typing import Any

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 64 << 20
TRIM_THRESHOLD = 512 << 20
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_ARENA_MAX")

_applied: dict[str, Any] | None = None


def user_choice(environ: dict[str, str] | os._Environ[str]) -> str | None:
    """Why to leave malloc alone because of the environment (None: nothing chosen there)."""
    if environ.get("COMPTRUST_KEEP_FREED_MEMORY", "").strip() in ("0", "false", "no"):
        return "COMPTRUST_KEEP_FREED_MEMORY=0"
    preload = environ.get("LD_PRELOAD", "")
    if any(name in preload for name in ("jemalloc", "tcmalloc", "mimalloc")):
        return "LD_PRELOAD allocator"
    for name in USER_SETTINGS:
        if environ.get(name):
            return name
    if "malloc" in environ.get("GLIBC_TUNABLES", ""):
        return "GLIBC_TUNABLES"
    return None


def keep_freed_memory(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Apply the thresholds once per process (see the module doc); returns what a run records."""
    global _applied
    if _applied is not None:
        return dict(_applied)
    env = os.environ if environ is None else environ
    reason = user_choice(env)
    if reason is not None:
        _applied = {"malloc": "unchanged", "why": reason}
    elif platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        _applied = {"malloc": "unchanged", "why": "not glibc"}
    else:
        libc = ctypes.CDLL("libc.so.6")
        done = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and libc.mallopt(M_TRIM_THRESHOLD,
                                                                                    TRIM_THRESHOLD) == 1
        _applied = ({"malloc": "glibc", "mmap_threshold": MMAP_THRESHOLD, "trim_threshold": TRIM_THRESHOLD}
                    if done else {"malloc": "unchanged", "why": "mallopt refused"})
    return dict(_applied)


def allocator_info() -> dict[str, Any]:
    """What a run records: the thresholds set, or why malloc was left as it was."""
    return dict(_applied) if _applied is not None else {"malloc": "unchanged", "why": "not applied (library use)"}
