"""The Ray executor on a local Ray instance (2 CPUs, tiny models); runs wherever ray is installed.

``make install`` installs the ray extra so CI runs this; without ray the module is skipped.
"""

from __future__ import annotations

import json
import shutil

import pytest

from comptrust.store.cache import Cache
from comptrust.sweep import build_plan, load_sweep
from comptrust.sweep.executors import run_plan
from comptrust.sweep.jobs import SweepState
from test_sweep import SMALL, make_bad_model, write

ray = pytest.importorskip("ray")


@pytest.fixture
def local_ray(monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # no auth token written to the home folder
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_sweep_matches_local_records_failures_and_reruns_only_those(tmp_path, tiny_llama, local_ray):
    bad = make_bad_model(tmp_path / "bad")
    text = SMALL.format(good=tiny_llama, bad=bad) + "ray: {num_cpus: 1, shards: 2}\n"
    path = write(tmp_path, text)
    plan = build_plan(load_sweep(path), str(path), out=tmp_path / "ray-out")
    cache = Cache()

    first = run_plan(plan, executor="ray", cache=cache)
    assert first["done"] == 4 and first["failed"] == 4
    errors = {f["job"]: f["error"] for f in first["failures"]}
    assert set(errors) == {"bad-dense/stereotype", "bad-dense/mmlu", "bad-magnitude-50pct/stereotype",
                           "bad-magnitude-50pct/mmlu"}
    assert all(e for e in errors.values())
    ray_summary = json.loads((tmp_path / "ray-out/runs/good-dense/summary.json").read_text())
    assert set(ray_summary["perspectives"]) == {"stereotype", "mmlu"} and ray_summary["finished"]
    generated = cache.stats()["generations"]
    assert generated > 0

    # The same plan run locally on the same cache generates nothing (same cache keys) and scores the same.
    local_plan = build_plan(load_sweep(path), str(path), out=tmp_path / "local-out")
    local_plan.artifacts = [a for a in local_plan.artifacts if a.id.startswith("good")]
    run_plan(local_plan, cache=cache)
    assert cache.stats()["generations"] == generated
    for art in ("good-dense", "good-magnitude-50pct"):
        local = json.loads((tmp_path / f"local-out/runs/{art}/summary.json").read_text())
        remote = json.loads((tmp_path / f"ray-out/runs/{art}/summary.json").read_text())
        for p in ("stereotype", "mmlu"):
            assert local["perspectives"][p]["score"] == remote["perspectives"][p]["score"]
            assert local["perspectives"][p]["metrics"] == remote["perspectives"][p]["metrics"]
        assert local["model"]["fingerprint"] == remote["model"]["fingerprint"]

    # Fix the broken model and rerun on Ray: only the four failed jobs run again.
    state = SweepState(plan)
    kept = state.marker(plan.jobs[0]).read_text()
    shutil.rmtree(bad)
    shutil.copytree(tiny_llama, bad)
    second = run_plan(plan, executor="ray", cache=cache)
    assert second["ran"] == 4 and second["done"] == 8 and second["failed"] == 0
    assert state.marker(plan.jobs[0]).read_text() == kept
    assert run_plan(plan, executor="ray", cache=cache)["ran"] == 0
    cache.close()
