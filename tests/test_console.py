"""A clean console: one progress display (library tqdm bars routed into it or silenced), MMLU on its
own, a torch thread count that does not oversubscribe (recorded in the run), an SPDX licence."""

from __future__ import annotations

import json
import time
import tomllib

import pytest

from comptrust.cli import main
from comptrust.errors import ConfigError
from comptrust.progress import Progress, route_library_bars
from comptrust.runtime.threads import cgroup_cpu_limit, choose_threads, cpu_ticks, physical_cores
from conftest import REPO


def _rows(display: Progress) -> list[tuple[str, float]]:
    return [(t.description, t.completed) for t in display._progress.tasks]


def _terminal() -> Progress:
    """A display drawing on a (pretend) terminal, into a buffer."""
    import io

    from rich.console import Console

    return Progress(console=Console(file=io.StringIO(), force_terminal=True, width=100))


# ---- library bars -----------------------------------------------------------------------------


def test_a_library_bar_is_a_row_of_the_open_display_and_leaves_when_done(capsys):
    from tqdm import tqdm

    route_library_bars()
    seen = []
    with _terminal() as display:
        for _ in tqdm(range(3), desc="Compressing model"):
            seen.append(_rows(display))
        after = _rows(display)
    assert seen == [[("  Compressing model", 0)], [("  Compressing model", 1)], [("  Compressing model", 2)]]
    assert after == []
    err = capsys.readouterr().err
    assert "it/s" not in err and "%|" not in err  # tqdm itself drew nothing


def test_manual_updates_and_close_are_routed_too():
    from tqdm.auto import tqdm  # transformers' import; a subclass of tqdm.std.tqdm

    route_library_bars()
    with _terminal() as display:
        bar = tqdm(total=5, desc="Dispatching model")
        bar.update(2)
        assert _rows(display) == [("  Dispatching model", 2)]
        bar.close()
        assert _rows(display) == []
        hidden = tqdm(range(2), desc="a bar its caller disabled", disable=True)
        assert list(hidden) == [0, 1] and _rows(display) == []


def test_library_bars_are_silent_without_a_display(capsys):
    from tqdm import tqdm

    route_library_bars()
    assert list(tqdm(range(4), desc="Converting and de-quantizing GGUF tensors...")) == [0, 1, 2, 3]
    with Progress(quiet=True):
        assert sum(tqdm([1, 2, 3], desc="Decompressing model")) == 6
    with Progress():  # stderr is no terminal here (a log file, CI): no rows, and no blank line either
        assert sum(tqdm([1, 2, 3], desc="Decompressing model")) == 6
    assert capsys.readouterr().err == ""


@pytest.mark.slow
def test_compress_shows_no_third_party_bar(tiny_llama, tmp_path, capsys):
    # compressed-tensors draws "Applying quantization config" and "Compressing model" bars while saving
    assert main(["compress", str(tiny_llama), "--method", "rtn", "--bits", "4", "--group-size", "32",
                 "--out", str(tmp_path / "rtn")]) == 0
    err = capsys.readouterr().err
    assert "Compressing model" not in err and "Applying quantization" not in err and "it/s" not in err, err
    assert "comptrust: compressing with rtn" in err  # comptrust's own progress is still there


@pytest.mark.slow
def test_calibrated_compress_prints_nothing_but_the_artifact_path_when_quiet(tiny_llama, tmp_path):
    """A fresh process (library warnings fire once per process): GPTQ traces the model with torch.fx,
    whose once-per-process note to library authors ("is_fx_tracing will return true ...") must not reach
    the user."""
    import subprocess
    import sys

    out = tmp_path / "gptq"
    done = subprocess.run([sys.executable, "-m", "comptrust", "compress", str(tiny_llama), "--method", "gptq",
                           "--bits", "4", "--group-size", "32", "--calib-samples", "2", "--calib-seqlen", "16",
                           "--quiet", "--out", str(out)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and done.stdout.strip() == str(out)


# ---- MMLU alone ---------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["none", ""])
def test_perspectives_none_with_benign_mmlu_runs_mmlu_alone(spec, tiny_llama, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["eval", str(tiny_llama), "--perspectives", spec, "--benign", "mmlu", "--smoke",
                 "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["perspectives"]) == ["mmlu"] and summary["perspectives"]["mmlu"]["n_samples"] == 9


def test_nothing_to_evaluate_is_a_one_line_error(tiny_llama, capsys):
    assert main(["eval", str(tiny_llama), "--perspectives", "none", "--smoke"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nothing to evaluate" in err and "--benign mmlu" in err


# ---- threads ------------------------------------------------------------------------------------


def test_thread_count_precedence(monkeypatch):
    monkeypatch.setattr("comptrust.runtime.threads.physical_cores", lambda cpus=None: 8)
    monkeypatch.setattr("comptrust.runtime.threads.cgroup_cpu_limit", lambda: None)
    monkeypatch.setattr("comptrust.runtime.threads.busy_cores", lambda: 0.3)
    assert choose_threads(3, {"OMP_NUM_THREADS": "6"}) == (3, "--threads")
    assert choose_threads(None, {"OMP_NUM_THREADS": "6"}) == (6, "OMP_NUM_THREADS")
    assert choose_threads(None, {"OMP_NUM_THREADS": "4,2"}) == (4, "OMP_NUM_THREADS")  # nested OpenMP list
    assert choose_threads(None, {}) == (8, "physical cores")  # an idle machine: every physical core
    monkeypatch.setattr("comptrust.runtime.threads.busy_cores", lambda: 2.6)
    assert choose_threads(None, {}) == (5, "physical cores (8) less the cores other jobs keep busy (2.6)")
    monkeypatch.setattr("comptrust.runtime.threads.busy_cores", lambda: 14.5)  # a shared box, busy with other jobs
    assert choose_threads(None, {}) == (1, "physical cores (8) less the cores other jobs keep busy (14.5)")
    # Where /proc/stat is missing (macOS), the load average stands in.
    monkeypatch.setattr("comptrust.runtime.threads.busy_cores", lambda: None)
    monkeypatch.setattr("comptrust.runtime.threads.load_average", lambda: 2.6)
    assert choose_threads(None, {}) == (5, "physical cores (8) less the load average (2.6)")
    monkeypatch.setattr("comptrust.runtime.threads.load_average", lambda: None)
    monkeypatch.setattr("comptrust.runtime.threads.cgroup_cpu_limit", lambda: 2)
    assert choose_threads(None, {}) == (2, "cgroup CPU quota")
    # A quota caps the count; other jobs on the rest of the host's cores do not lower it further.
    monkeypatch.setattr("comptrust.runtime.threads.busy_cores", lambda: 5.0)
    assert choose_threads(None, {}) == (2, "cgroup CPU quota")
    with pytest.raises(ConfigError, match="--threads must be at least 1"):
        choose_threads(0, {})
    with pytest.raises(ConfigError, match="OMP_NUM_THREADS='lots'"):
        choose_threads(None, {"OMP_NUM_THREADS": "lots"})


def test_physical_cores_count_hyperthreads_once(tmp_path):
    for cpu, core in ((0, 0), (1, 0), (2, 1), (3, 1)):  # 2 cores x 2 hyper-threads
        topology = tmp_path / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text("0\n")
        (topology / "core_id").write_text(f"{core}\n")
    assert physical_cores({0, 1, 2, 3}, tmp_path) == 2
    assert physical_cores({0, 1}, tmp_path) == 1  # affinity to one core's two threads
    assert physical_cores({0, 7}, tmp_path) == 2  # topology unknown for cpu7: count logical CPUs


def test_cgroup_quota(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_limit(tmp_path) == 2
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(tmp_path) is None
    assert cgroup_cpu_limit(tmp_path / "absent") is None


@pytest.fixture
def restore_torch_threads():
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_threads_are_applied_and_recorded_in_the_run(tiny_llama, tmp_path, restore_torch_threads):
    import torch

    out = tmp_path / "run"
    assert main(["eval", str(tiny_llama), "--perspectives", "stereotype", "--smoke", "--limit", "1",
                 "--samples", "1", "--max-new-tokens", "2", "--threads", "1", "--out", str(out), "--quiet"]) == 0
    assert torch.get_num_threads() == 1
    for name in ("summary.json", "spec.json"):
        recorded = json.loads((out / name).read_text())
        assert recorded["threads"] == {"torch_threads": 1, "source": "--threads"}
        assert recorded["allocator"]["malloc"] in ("glibc", "unchanged")  # what was done to malloc, or why not


# ---- packaging ----------------------------------------------------------------------------------


def test_license_is_an_spdx_expression():
    """A table (``{text = ...}``) makes setuptools >= 77 print a deprecation warning on every install."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
    assert any(r.startswith("setuptools>=77") for r in project["build-system"]["requires"])


def test_cpu_ticks_reads_only_this_processes_cpus(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  900 0 100 1000 0 0 0 0 0 0\n"
                    "cpu0 400 0 50 500 20 0 0 0 0 0\n"
                    "cpu1 500 0 50 500 0 0 0 30 0 0\n"
                    "intr 12345\n")
    # busy = user + nice + system + irq + softirq + steal; idle and iowait are not busy
    assert cpu_ticks({0}, stat) == (450, 970)
    assert cpu_ticks({0, 1}, stat) == (450 + 580, 970 + 1080)
    assert cpu_ticks({5}, stat) is None
    assert cpu_ticks({0}, tmp_path / "missing") is None


def test_busy_cores_counts_other_jobs_not_this_process(monkeypatch):
    """Ticks of a 2-CPU machine over one second: 1.5 CPUs busy, of which this process used 0.5."""
    import comptrust.runtime.threads as threads

    clock = iter([100.0, 101.0, 101.0])
    ticks = iter([(1000, 4000), (1150, 4200)])  # 150 of 200 ticks busy: 1.5 CPUs
    own = iter([2.0, 2.5])
    monkeypatch.setattr(threads, "_my_cpus", lambda: {0, 1})
    monkeypatch.setattr(threads, "physical_cores", lambda cpus=None: 2)
    monkeypatch.setattr(threads.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(threads, "cpu_ticks", lambda cpus: next(ticks))
    monkeypatch.setattr(threads, "_own_cpu_seconds", lambda: next(own))
    monkeypatch.setattr(threads, "_sample", None)
    threads.start_busy_sample()
    assert threads.busy_cores() == 1.0


def test_busy_cores_sees_another_process_burning_a_cpu():
    """A child spinning on one CPU is another job: measured as about one busy core (this process sleeps)."""
    import subprocess
    import sys

    import comptrust.runtime.threads as threads

    if threads.cpu_ticks(threads._my_cpus()) is None:
        pytest.skip("no /proc/stat on this OS")
    child = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 3: pass"])
    try:
        time.sleep(0.3)  # the child is past its interpreter start
        threads.start_busy_sample()
        busy = threads.busy_cores(min_seconds=1.0)
    finally:
        child.kill()
        child.wait()
    assert busy is not None and 0.6 <= busy <= len(threads._my_cpus())
