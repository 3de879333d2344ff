"""How `make llama-cpp` builds llama.cpp: this CPU's instruction sets, AMX off, one cached wheel per CPU."""

from __future__ import annotations

import subprocess

import pytest

from conftest import load_script

build = load_script("tools", "llama_cpp_build")

XEON6 = ("processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c bmi1 "
         "avx2 bmi2 avx512f avx512dq avx512cd avx512bw avx512vl avx_vnni avx512_bf16 avx512vbmi avx512_vnni "
         "amx_bf16 amx_tile amx_int8\nbugs\t\t: spectre_v1\n\nprocessor\t: 1\nflags\t\t: fpu\n")
HASWELL = "processor\t: 0\nflags\t\t: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c bmi1 avx2 bmi2\n"


def _options(args: list[str]) -> dict[str, str]:
    return dict(a[2:].split("=", 1) for a in args if a.startswith("-D"))


def test_an_amx_cpu_gets_its_avx512_sets_and_no_amx(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(XEON6)
    flags = build.cpu_flags(cpuinfo)
    assert "amx_tile" in flags and "fpu" in flags  # the first processor's line
    options = _options(build.cmake_args(flags, "x86_64"))
    assert options["GGML_NATIVE"] == "OFF"  # -march=native would turn AMX back on
    assert options["GGML_AVX512"] == options["GGML_AVX512_BF16"] == options["GGML_AVX_VNNI"] == "ON"
    assert options["GGML_AMX_TILE"] == options["GGML_AMX_INT8"] == options["GGML_AMX_BF16"] == "OFF"
    assert options["LLAVA_BUILD"] == "OFF"


def test_a_cpu_without_avx512_gets_none_of_it(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(HASWELL)
    options = _options(build.cmake_args(build.cpu_flags(cpuinfo), "x86_64"))
    assert options["GGML_AVX2"] == options["GGML_FMA"] == options["GGML_F16C"] == "ON"
    assert options["GGML_AVX512"] == options["GGML_AVX512_VNNI"] == options["GGML_AVX_VNNI"] == "OFF"


def test_avx512_needs_all_five_foundation_sets():
    flags = {"avx2", "avx512f", "avx512cd", "avx512vl", "avx512dq"}  # no avx512bw
    assert _options(build.cmake_args(flags, "x86_64"))["GGML_AVX512"] == "OFF"


def test_elsewhere_llama_cpp_detects_the_cpu_itself(tmp_path):
    assert build.cpu_flags(tmp_path / "missing") is None
    assert build.cmake_args(None, "x86_64") == ["-DLLAVA_BUILD=OFF"]
    assert build.cmake_args({"fp", "asimd"}, "aarch64") == ["-DLLAVA_BUILD=OFF"]


def test_the_cached_wheel_is_keyed_by_cpu_and_arguments():
    args = build.cmake_args({"avx2"}, "x86_64")
    key = build.wheel_key("llama-cpp-python==0.3.36", args, {"avx2"})
    assert key == build.wheel_key("llama-cpp-python==0.3.36", args, {"avx2"})
    assert key != build.wheel_key("llama-cpp-python==0.3.36", args, {"avx2", "avx512f"})
    assert key != build.wheel_key("llama-cpp-python==0.3.37", args, {"avx2"})
    assert key != build.wheel_key("llama-cpp-python==0.3.36", args + ["-DGGML_OPENMP=OFF"], {"avx2"})


@pytest.fixture
def calls(monkeypatch, tmp_path):
    """subprocess.run recorded; `pip wheel` writes a wheel where it was told unless told to fail."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    made: list[list[str]] = []
    state = {"fail": False}

    def run(cmd, env=None, check=False):
        made.append(list(cmd))
        if "wheel" in cmd:
            out = build.Path(cmd[cmd.index("-w") + 1])
            out.mkdir(parents=True, exist_ok=True)
            (out / "llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl").write_bytes(b"zip")
            assert "GGML_NATIVE" in env["CMAKE_ARGS"] or env["CMAKE_ARGS"] == "-DLLAVA_BUILD=OFF"
            if state["fail"]:
                raise subprocess.CalledProcessError(1, cmd)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(build.subprocess, "run", run)
    return made, state


def test_a_second_build_on_the_same_cpu_reuses_the_wheel(calls, capsys):
    made, _ = calls
    first = build.build_and_install("llama-cpp-python==0.3.36")
    second = build.build_and_install("llama-cpp-python==0.3.36")
    assert first == second and first.exists()
    assert [c[3] for c in made] == ["wheel", "install", "install"]  # one compile, two installs
    assert made[-1][-1] == str(first)
    assert "reusing" in capsys.readouterr().out


def test_a_failed_build_leaves_nothing_to_reuse_and_says_what_is_needed(calls, capsys):
    made, state = calls
    state["fail"] = True
    assert build.main(["llama-cpp-python==0.3.36"]) == 1
    assert "cmake" in capsys.readouterr().err
    cache = build.wheel_cache()
    assert not any(p.suffix != ".partial" for p in cache.iterdir())  # no keyed folder: the next run rebuilds
    state["fail"] = False
    build.build_and_install("llama-cpp-python==0.3.36")
    assert [c[3] for c in made].count("wheel") == 2
