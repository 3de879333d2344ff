"""The malloc thresholds: applied once, left alone when the user chose an allocator, recorded in runs."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from comptrust.runtime.allocator import MMAP_THRESHOLD, TRIM_THRESHOLD, user_choice


@pytest.mark.parametrize(("environ", "reason"), [
    ({}, None),
    ({"COMPTRUST_KEEP_FREED_MEMORY": "0"}, "COMPTRUST_KEEP_FREED_MEMORY=0"),
    ({"COMPTRUST_KEEP_FREED_MEMORY": "1"}, None),
    ({"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"}, "LD_PRELOAD allocator"),
    ({"LD_PRELOAD": "/opt/lib/libtcmalloc_minimal.so"}, "LD_PRELOAD allocator"),
    ({"LD_PRELOAD": "/opt/lib/libfaketime.so"}, None),
    ({"MALLOC_ARENA_MAX": "2"}, "MALLOC_ARENA_MAX"),
    ({"MALLOC_MMAP_THRESHOLD_": "131072"}, "MALLOC_MMAP_THRESHOLD_"),
    ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"}, "GLIBC_TUNABLES"),
    ({"GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2"}, None),
])
def test_user_choice_leaves_a_chosen_allocator_alone(environ, reason):
    assert user_choice(environ) == reason


def _apply_in_fresh_process(extra_env: dict[str, str]) -> dict:
    """The module keeps its state per process, so each case runs in a child interpreter."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    env.pop("COMPTRUST_KEEP_FREED_MEMORY", None)
    env.update(extra_env)
    code = ("import json; from comptrust.runtime.allocator import keep_freed_memory, allocator_info;"
            "first = keep_freed_memory(); second = keep_freed_memory();"
            "print(json.dumps([first, second, allocator_info()]))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_thresholds_are_set_once_and_reported():
    first, second, info = _apply_in_fresh_process({})
    expected = {"malloc": "glibc", "mmap_threshold": MMAP_THRESHOLD, "trim_threshold": TRIM_THRESHOLD}
    assert first == second == info == expected


def test_opting_out_is_reported_with_its_reason():
    first, _, info = _apply_in_fresh_process({"COMPTRUST_KEEP_FREED_MEMORY": "0"})
    assert first == info == {"malloc": "unchanged", "why": "COMPTRUST_KEEP_FREED_MEMORY=0"}
