"""Killed commands leave nothing half-written that a later command takes for finished (issue 15).

Each kill is a real SIGKILL in a subprocess (no cleanup handler runs), placed at a chosen point
by a hook the subprocess installs before running the command.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from comptrust.backends.scripted import ScriptedBackend
from comptrust.compression import compress_model, load_manifest, make_config
from comptrust.compression.pipeline import _reusable, artifact_key
from comptrust.data.source import SmokeSuite
from comptrust.perspectives.base import EvalOptions
from comptrust.runner import evaluate
from comptrust.store.runs import RunDir

KILL = "import os, signal\ndef die(*a, **k):\n    os.kill(os.getpid(), signal.SIGKILL)\n"

# Where compress is killed: each hook replaces one step of writing the artifact with a SIGKILL.
COMPRESS_KILLS = {
    # half the weights written: save_pretrained dies inside the staging folder
    "mid-weights": "import transformers\nsave = transformers.PreTrainedModel.save_pretrained\n"
                   "def half(self, out, *a, **k):\n    save(self, out, *a, **k)\n"
                   "    f = next(__import__('pathlib').Path(out).glob('*.safetensors'))\n"
                   "    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])\n    die()\n"
                   "transformers.PreTrainedModel.save_pretrained = half\n",
    # every file but the manifest written
    "before-manifest": "import comptrust.compression.pipeline as p\np.write_manifest = die\n",
    # complete in the staging folder, not yet renamed into place
    "before-rename": "import comptrust.store.files as s\ns.publish_dir = die\n",
    # replacing an older artifact: the old one renamed aside, the new one not yet in place
    "between-renames": "import comptrust.store.files as s\nreal = os.replace\n"
                       "def replace(src, dst):\n    if '.partial-' in os.path.basename(src):\n        die()\n"
                       "    real(src, dst)\ns.os.replace = replace\n",
}


def _run_killed(hook: str, call: str, env: dict[str, str]) -> None:
    script = KILL + hook + call
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "COMPTRUST_HOME": str(home), "PYTHONPATH": os.pathsep.join(sys.path)}


@pytest.mark.slow
@pytest.mark.parametrize("point", list(COMPRESS_KILLS))
def test_compress_killed_at_any_point_leaves_nothing_reuse_accepts(tiny_llama, tmp_path, isolated_home, point):
    out = tmp_path / "artifact"
    if point == "between-renames":  # an older artifact of another compression sits at --out
        compress_model(tiny_llama, "magnitude", out, sparsity=0.3)
    call = (f"from comptrust.compression import compress_model\n"
            f"compress_model({str(tiny_llama)!r}, 'magnitude', {str(out)!r}, sparsity=0.5, force=True)\n")
    _run_killed(COMPRESS_KILLS[point], call, _env(isolated_home))

    key = artifact_key(tiny_llama, make_config("magnitude", sparsity=0.5))
    assert not _reusable(out, key)
    assert not out.exists()  # the old artifact is aside (between-renames), the new one only staged
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".artifact.")]
    assert leftovers, "the killed process left its staging folder behind"
    said: list[str] = []
    assert compress_model(tiny_llama, "magnitude", out, sparsity=0.5, log=said.append) == out
    assert not any(m.startswith("reusing") for m in said) and said[-1] == f"wrote {out}"
    assert _reusable(out, key) and load_manifest(out)["params"]["sparsity"] == 0.5
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".artifact.")]  # leftovers removed


@pytest.mark.slow
def test_compress_killed_while_removing_the_replaced_artifact(tiny_llama, tmp_path, isolated_home):
    """Killed after the new artifact is in place: it is complete, and reused; the old copy is cleaned up."""
    out = tmp_path / "artifact"
    compress_model(tiny_llama, "magnitude", out, sparsity=0.3)
    hook = "import comptrust.store.files as s\ns.shutil.rmtree = die\n"
    call = (f"from comptrust.compression import compress_model\n"
            f"compress_model({str(tiny_llama)!r}, 'magnitude', {str(out)!r}, sparsity=0.5, force=True)\n")
    _run_killed(hook, call, _env(isolated_home))
    left = [p.name for p in tmp_path.iterdir() if p.name.startswith(".artifact.")]
    assert len(left) == 1 and left[0].startswith(".artifact.old-")  # the replaced artifact, not yet deleted
    said: list[str] = []
    assert compress_model(tiny_llama, "magnitude", out, sparsity=0.5, log=said.append) == out
    assert said[0].startswith("reusing")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".artifact.")]


# ---------------------------------------------------------------- report


def _responder(row):
    return "I agree." if "wheel" in row.messages[-1]["content"] else "No. I disagree."


class _Model(ScriptedBackend):
    def __init__(self, model):
        super().__init__(_responder, label=json.dumps(model, sort_keys=True))
        self._model = model

    def info(self):
        return {**super().info(), **self._model}


def _run(tmp_path: Path, name: str, model: dict, samples: int = 2) -> Path:
    out = tmp_path / name
    evaluate(_Model(model), ["stereotype"], SmokeSuite(), EvalOptions(samples=samples, seed=0), out)
    return out


@pytest.mark.slow
def test_report_killed_half_way_keeps_the_previous_report_whole(tmp_path, isolated_home):
    from comptrust.cli import main

    dense = _run(tmp_path, "dense", {"name": "tiny", "weights_sha256": "w1", "compression": None})
    other = _run(tmp_path, "other", {"name": "tiny", "weights_sha256": "w2", "compression": None})
    report = tmp_path / "report"
    report.mkdir()
    (report / "notes.txt").write_text("mine")  # a user's file in the same folder is never touched
    assert main(["report", str(dense), "--out", str(report), "--bootstrap", "0"]) == 0
    before = {p.relative_to(report): p.read_bytes() for p in report.rglob("*") if p.is_file()}
    assert {Path("report.html"), Path("scores.json"), Path("notes.txt")} <= set(before)

    hook = ("import comptrust.report.build as b\nreal = b.atomic_write_text\ncalls = []\n"
            "def second_dies(*a, **k):\n    calls.append(1)\n    if len(calls) == 2:\n        die()\n"
            "    real(*a, **k)\nb.atomic_write_text = second_dies\n")  # report.html written, report.md not
    call = (f"from comptrust.cli import main\n"
            f"main(['report', {str(dense)!r}, {str(other)!r}, '--out', {str(report)!r}, '--bootstrap', '0'])\n")
    _run_killed(hook, call, _env(isolated_home))
    after = {p.relative_to(report): p.read_bytes() for p in report.rglob("*") if p.is_file()
             if not p.relative_to(report).parts[0].startswith(".")}
    assert after == before  # the previous report, whole; the new one only in a hidden staging folder

    assert main(["report", str(dense), str(other), "--out", str(report), "--bootstrap", "0"]) == 0
    assert (report / "report.html").read_bytes() != before[Path("report.html")]
    assert (report / "notes.txt").read_text() == "mine"
    assert not [p for p in report.iterdir() if p.name.startswith(".")]  # the killed run's staging removed


# ---------------------------------------------------------------- run folders


@pytest.mark.slow
def test_a_perspective_rewrite_killed_half_way_keeps_the_old_files_together(tmp_path, isolated_home):
    run = RunDir(tmp_path / "run").prepare()
    run.write_perspective("stereotype", [{"v": 1}], [{"v": 1}], {"v": 1})
    hook = ("import comptrust.store.runs as s\nreal = s.atomic_write_json\n"
            "def dies(path, obj):\n    if path.name == 'result.json':\n        die()\n    real(path, obj)\n"
            "s.atomic_write_json = dies\n")
    call = (f"from comptrust.store.runs import RunDir\n"
            f"RunDir(__import__('pathlib').Path({str(run.root)!r})).write_perspective("
            f"'stereotype', [{{'v': 2}}], [{{'v': 2}}], {{'v': 2}})\n")
    _run_killed(hook, call, _env(isolated_home))
    assert run.read_result("stereotype") == {"v": 1} and run.read_scores("stereotype") == [{"v": 1}]
    assert [p.name for p in run.root.iterdir() if p.name.startswith(".stereotype.partial-")]
    run.write_perspective("stereotype", [{"v": 3}], [{"v": 3}], {"v": 3})
    assert run.read_result("stereotype") == {"v": 3} and run.read_scores("stereotype") == [{"v": 3}]
    assert sorted(p.name for p in run.root.iterdir()) == ["stereotype"]


def test_a_run_with_other_options_sets_the_old_results_aside(tmp_path):
    model = {"name": "tiny", "weights_sha256": "w1", "compression": None}
    first = evaluate(_Model(model), ["stereotype"], SmokeSuite(), EvalOptions(samples=2, seed=0), tmp_path / "run")
    (tmp_path / "run" / "my-notes.txt").write_text("mine")
    # the same model, data and options with another perspective: results stay side by side (a sweep does this)
    middle = evaluate(_Model(model), ["fairness"], SmokeSuite(), EvalOptions(samples=2, seed=0), tmp_path / "run")
    assert (tmp_path / "run" / "stereotype" / "result.json").is_file()
    assert not list((tmp_path / "run").glob("superseded-*"))
    # other options: the old results are moved aside whole, never mixed with the new ones
    second = evaluate(_Model(model), ["stereotype"], SmokeSuite(), EvalOptions(samples=1, seed=0),
                      tmp_path / "run")
    (aside,) = (tmp_path / "run").glob("superseded-*")
    assert second["superseded"] == str(aside) and aside.name.startswith(f"superseded-{middle['run_id']}-")
    assert sorted(p.name for p in aside.iterdir()) == ["fairness", "spec.json", "stereotype", "summary.json"]
    old_result = json.loads((aside / "stereotype" / "result.json").read_text())
    assert old_result["score"] == first["perspectives"]["stereotype"]["score"]
    assert old_result["generation"]["rows"] == 48 and second["perspectives"]["stereotype"]["generation"]["rows"] == 24
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted(
        ["my-notes.txt", aside.name, "spec.json", "stereotype", "summary.json"])
    assert json.loads((tmp_path / "run" / "spec.json").read_text())["run_id"] == second["run_id"]


# ---------------------------------------------------------------- two evaluations sharing one cache


def _eval_cmd(model: Path, perspective: str, out: Path) -> list[str]:
    return [sys.executable, "-m", "comptrust", "eval", str(model), "--perspectives", perspective, "--smoke",
            "--samples", "1", "--max-new-tokens", "8", "--batch-size", "1", "--seed", "3", "--out", str(out),
            "--quiet"]


@pytest.mark.slow
def test_evaluations_sharing_one_cache_at_once_match_separate_runs(tiny_llama, tmp_path):
    from comptrust.api import evaluate as api_evaluate
    from comptrust.api import load_model
    from comptrust.store.cache import Cache

    shared = _env(tmp_path / "shared-home")
    jobs = {"a": "stereotype", "b": "stereotype", "c": "fairness"}  # the same perspective twice, and another
    procs = {name: subprocess.Popen(_eval_cmd(tiny_llama, p, tmp_path / name), env=shared,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for name, p in jobs.items()}
    for name, proc in procs.items():
        assert proc.wait(timeout=900) == 0, (name, proc.stderr.read())
    # the same runs one at a time, each with a cache of its own (in this process: no second start-up)
    backend = load_model(str(tiny_llama), batch_size=1)
    for perspective in ("stereotype", "fairness"):
        own = Cache(tmp_path / f"home-{perspective}" / "cache.sqlite")
        api_evaluate(backend, [perspective], smoke=True, samples=1, max_new_tokens=8, seed=3,
                     out=tmp_path / f"alone-{perspective}", cache=own)
        own.close()

    def scores(run: str, perspective: str) -> tuple[str, dict]:
        summary = json.loads((tmp_path / run / "summary.json").read_text())["perspectives"][perspective]
        return (tmp_path / run / perspective / "scores.jsonl").read_text(), summary["metrics"]

    for name, perspective in jobs.items():
        assert scores(name, perspective) == scores(f"alone-{perspective}", perspective), name
    rows = {p: json.loads((tmp_path / f"alone-{p}" / "summary.json").read_text())["perspectives"][p]["generation"]
            ["rows"] for p in ("stereotype", "fairness")}
    import sqlite3

    with sqlite3.connect(tmp_path / "shared-home" / "cache.sqlite") as con:
        stored = dict(con.execute("SELECT perspective, COUNT(*) FROM generations GROUP BY perspective").fetchall())
        distinct = con.execute("SELECT COUNT(DISTINCT key) FROM generations").fetchone()[0]
    con.close()
    assert stored == rows and distinct == sum(rows.values())  # every generation stored once
