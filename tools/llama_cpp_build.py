"""Build llama-cpp-python for this CPU without llama.cpp's AMX kernels, and cache the wheel per CPU.

Why not pip's default (``-march=native``, wheel cached by pip)?  Two ways to die of a bare
``Illegal instruction`` that kills the process:

* On an Intel Xeon 6 (Granite Rapids, AVX10.1, AMX) guest a native build ran its AMX kernels and
  died at ``tilezero`` in ``libggml-cpu.so`` on the first decode of a Q4_K_M model (found by
  ``tests/test_gguf.py``, docs/compression.md; llama.cpp PR #26954 describes the cause: a tile
  configuration the compiler drops and a tile-data permission asked for on one thread only),
  although torch's oneDNN uses AMX on the same machine.  ``-march=native`` turns AMX on with no
  way to take it out again from ``CMAKE_ARGS``, so the build names each instruction set itself
  (``GGML_NATIVE=OFF``) from ``/proc/cpuinfo`` and leaves AMX out.
* pip caches the wheel it compiled under the sdist's hash only: a home directory shared by
  machines with other CPUs (a cluster, a CI cache) hands one machine's native build to another.
  The wheel is cached here under a key of the package, the CMake arguments and the CPU's flags.

``python tools/llama_cpp_build.py PACKAGE`` (what ``make llama-cpp`` runs) builds or reuses
the wheel and installs it into the running interpreter's environment.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

# ggml's CMake options and the /proc/cpuinfo flags each needs (all of them present).
GGML_X86_OPTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("GGML_SSE42", ("sse4_2",)),
    ("GGML_AVX", ("avx",)),
    ("GGML_AVX2", ("avx2",)),
    ("GGML_FMA", ("fma",)),
    ("GGML_F16C", ("f16c",)),
    ("GGML_BMI2", ("bmi2",)),
    ("GGML_AVX_VNNI", ("avx_vnni",)),
    ("GGML_AVX512", ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw")),
    ("GGML_AVX512_VBMI", ("avx512vbmi",)),
    ("GGML_AVX512_VNNI", ("avx512_vnni",)),
    ("GGML_AVX512_BF16", ("avx512_bf16",)),
)
AMX_OPTIONS = ("GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16")  # always off (module doc)
BASE_ARGS = ("-DLLAVA_BUILD=OFF",)  # the multimodal library comptrust never loads


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str] | None:
    """The first processor's feature flags (None where there is no x86 /proc/cpuinfo)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return None


def cmake_args(flags: set[str] | None, machine: str | None = None) -> list[str]:
    """CMake arguments for llama.cpp: each x86 instruction set this CPU has, AMX never.

    Off x86 Linux (``flags`` None, or an ARM machine) llama.cpp's own native detection stays.
    """
    machine = (machine or platform.machine()).lower()
    args = list(BASE_ARGS)
    if flags is None or machine not in ("x86_64", "amd64"):
        return args
    args.append("-DGGML_NATIVE=OFF")
    for option, needs in GGML_X86_OPTIONS:
        args.append(f"-D{option}={'ON' if all(f in flags for f in needs) else 'OFF'}")
    args += [f"-D{option}=OFF" for option in AMX_OPTIONS]
    return args


def wheel_key(package: str, args: list[str], flags: set[str] | None) -> str:
    """What the cached wheel depends on: the package, its build arguments and the CPU."""
    text = "\n".join([package, " ".join(args), " ".join(sorted(flags or ()))])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def wheel_cache(environ: dict[str, str] | os._Environ[str] = os.environ) -> Path:
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "comptrust" / "llama-cpp-wheels"


def build_and_install(package: str) -> Path:
    """Build the wheel into its keyed folder unless it is there, then pip-install it; returns the wheel."""
    flags = cpu_flags()
    args = cmake_args(flags)
    folder = wheel_cache() / wheel_key(package, args, flags)
    wheels = sorted(folder.glob("llama_cpp_python-*.whl"))
    pip = [sys.executable, "-m", "pip"]
    if not wheels:
        print(f"building {package} with CMAKE_ARGS={' '.join(args)} (5-24 CPU-minutes)", flush=True)
        env = dict(os.environ, CMAKE_ARGS=" ".join(args),
                   CMAKE_BUILD_PARALLEL_LEVEL=os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 1)))
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        subprocess.run(pip + ["wheel", "--quiet", "--no-deps", "--no-cache-dir", "-w", str(partial), package],
                       env=env, check=True)
        partial.rename(folder)  # whole or absent: an interrupted build is not reused
        wheels = sorted(folder.glob("llama_cpp_python-*.whl"))
    else:
        print(f"reusing {wheels[-1]} (built for this CPU with the same arguments)", flush=True)
    subprocess.run(pip + ["install", "--quiet", "--force-reinstall", "--no-deps", str(wheels[-1])], check=True)
    return wheels[-1]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python tools/llama_cpp_build.py PACKAGE (e.g. llama-cpp-python==0.3.36)", file=sys.stderr)
        return 2
    try:
        build_and_install(argv[0])
    except subprocess.CalledProcessError as exc:
        print(f"error: building {argv[0]} failed (exit {exc.returncode}); a C/C++ compiler and cmake are "
              "needed (apt install build-essential cmake)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
