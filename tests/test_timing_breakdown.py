"""summary.json says where a run's wall time went: startup, model loading, prefill, decode, scoring, writing."""

from __future__ import annotations

import json

from comptrust.backends.hf.backend import HFBackend
from comptrust.data.source import SmokeSuite
from comptrust.perspectives.base import EvalOptions
from comptrust.runner import evaluate, process_started_at


def test_summary_breaks_the_wall_time_down_by_phase(tiny_llama, tmp_path):
    import time

    backend = HFBackend.from_path(tiny_llama, batch_size=4)
    assert set(backend.timings) == {"load_started_at", "imports", "model_resolve", "model_load"}
    started = time.perf_counter()
    summary = evaluate(backend, ["stereotype", "mmlu"], SmokeSuite(),
                       EvalOptions(limit=1, samples=2, max_new_tokens=4), run_dir=tmp_path / "run")
    wall = time.perf_counter() - started
    timing = json.loads((tmp_path / "run" / "summary.json").read_text())["timing"]
    assert timing == summary["timing"]
    phases = ("prefill", "decode", "generation_other", "loglik", "scoring", "writing")
    assert set(timing) == {"startup_and_imports", "model_resolve", "model_load", *phases, "run_total",
                           "process_total"}
    assert process_started_at() is not None  # Linux: the process start is known
    assert timing["model_load"] > 0 and timing["prefill"] > 0 and timing["decode"] > 0
    assert timing["loglik"] > 0 and timing["writing"] > 0
    assert sum(timing[p] for p in phases) <= timing["run_total"] <= wall + 0.01
    assert timing["process_total"] >= timing["startup_and_imports"] + timing["model_load"] + timing["run_total"]
    stereotype = summary["perspectives"]["stereotype"]
    assert set(stereotype["timing"]) == {"prefill", "decode", "generation_other", "scoring", "writing"}
    generation = stereotype["generation"]
    assert stereotype["timing"]["prefill"] == generation["prefill_seconds"]
    assert generation["prefill_seconds"] + generation["decode_seconds"] <= generation["seconds"]
    assert set(summary["perspectives"]["mmlu"]["timing"]) == {"loglik", "scoring", "writing"}
