"""Simulated studies with known true changes, for calibrating the report's decisions (tests/test_report_decisions.py).

A study: one dense model and several compressed variants answer the same ``n`` prompts per
measure (two scenarios, scored by ``report_fakes.FakeAccuracy``).  Each prompt has a latent
difficulty ``z ~ N(0, 1)`` shared by all models (paired data); each model answers it correctly
with probability ``Phi(q + SPREAD * z)``, independently of the others, so even a variant that
behaves exactly like the dense model flips some answers and its changes vary.  A variant's ``q``
is set so that its true accuracy differs from the dense model's by the requested points.  The
whole report runs on the study (run folders, ``build_table``, ``findings``) and the study counts
what the report concluded.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
from scipy.stats import norm

from comptrust.report import aggregate
from comptrust.report.aggregate import build_table
from comptrust.report.bootstrap import BootstrapResult
from comptrust.report.findings import findings
from comptrust.report.runs import Run
from comptrust.types import ScoredSample
from report_fakes import FakeAccuracy, compressed_model, dense_model, scored_samples

SPREAD = 2.0  # how much prompts differ in difficulty (larger: answers depend more on the prompt)
DENSE_ACCURACY = 0.7
MEASURES = ("ood", "mmlu")


def quality(accuracy: float) -> float:
    """The ``q`` whose mean accuracy over prompts is ``accuracy``: E[Phi(q + s z)] = Phi(q / sqrt(1 + s^2))."""
    return float(norm.ppf(accuracy) * math.sqrt(1 + SPREAD ** 2))


def study(root: Path, seed: int, n: int, variants: list[dict[str, float]], n_bootstrap: int = 300,
          margin: float = 5.0) -> dict[str, Any]:
    """One study; ``variants[i]`` maps a measure to its true change (points; 0 where absent).

    Returns the report's conclusions: per variant (``v0``, ``v1``, ...) whether it was recommended,
    failed a gate ("broken"), which measures it marked as drops or gains, and its detectable drops.
    """
    rng = np.random.default_rng(seed)
    z = {m: rng.standard_normal(n) for m in MEASURES}

    prompts = {m: [s.sample for s in scored_samples([("a" if i % 2 else "b", True) for i in range(n)])]
               for m in MEASURES}

    def answers(measure: str, change: float) -> list:
        p = norm.cdf(quality(DENSE_ACCURACY + change / 100) + SPREAD * z[measure])
        correct = (rng.random(n) < p).tolist()
        return [ScoredSample(s, ["yes" if c else "no"], {"correct": c, "refused": False})
                for s, c in zip(prompts[measure], correct, strict=True)]

    folder = root / f"study-{seed}"
    runs = [memory_run(folder / "dense", dense_model(), {m: answers(m, 0.0) for m in MEASURES})]
    for i, changes in enumerate(variants):  # bits 8, 7, ...: v0 is the least compressed
        runs.append(memory_run(folder / f"v{i}", compressed_model("rtn", 8 - i),
                               {m: answers(m, changes.get(m, 0.0)) for m in MEASURES}))
    with fast_report(runs):
        table = build_table([r.path for r in runs], n_bootstrap=n_bootstrap, seed=seed)
    found = findings(table, margin)
    [rec] = found["recommendations"]
    by_label = {x["variant"]: x for x in found["verdicts"]}
    out: dict[str, Any] = {"recommendation": rec, "variants": {}}
    for i, v in enumerate(table.bases[0].variants[1:]):
        verdict = by_label[v.label]
        out["variants"][f"v{i}"] = {
            "recommended": rec.startswith(f"Recommendation for tiny-llama: {v.label},"),
            "broken": bool(verdict["failed_gates"]),
            "marked": {m: d.value for m, d in v.deltas.items() if d.significant},
            "detectable": {m: d.detectable for m, d in v.deltas.items()},
            "detectable_corrected": {m: d.detectable_corrected for m, d in v.deltas.items()},
        }
    return out


def memory_run(path: Path, model: dict[str, Any], measures: dict[str, list]) -> Run:
    """A run as ``report_fakes.write_run`` writes it, kept in memory (no folder)."""
    results = {}
    for name, scored in measures.items():
        result = FakeAccuracy().aggregate(scored, "comp-trust").to_json()
        results[name] = {**result, "perspective": name, "scorer": {"parser": f"{name}@v1"}}
    summary = {"run_id": path.name, "model": model, "data": {"kind": "local"}, "options": {"seed": 0},
               "profile": "comp-trust", "seed": 0, "versions": {}, "run_dir": str(path), "perspectives": results,
               "finished": True}
    run = Run(path=path, summary=summary, results=results)
    run._scored.update(measures)
    return run


def fast_bootstrap(name: str, runs: list[Run], n_resamples: int, seed: int, quantities: Any = None) -> BootstrapResult:
    """``bootstrap_perspective`` for FakeAccuracy, vectorized: every sample is its own unit, strata are the
    scenarios, all runs share the draws (same sample ids).  ``test_the_fast_bootstrap_matches_the_real_one``
    checks it against the real one; the report's own bootstrap is calibrated in test_report_calibration.py."""
    out = BootstrapResult(perspective=name, n_resamples=n_resamples)
    rng = np.random.default_rng([seed, zlib.crc32(name.encode()), 0])
    scenarios = np.array([s.sample.scenario for s in runs[0].scored(name)])
    strata = [np.flatnonzero(scenarios == sc) for sc in sorted(set(scenarios.tolist()))]
    times = np.zeros((n_resamples, len(scenarios)))
    for rows in strata:
        times[:, rows] = rng.multinomial(len(rows), np.full(len(rows), 1.0 / len(rows)), size=n_resamples)
    out.replicates = {q: {} for q in ("score", "refusal", "answered", "degenerate")}
    for run in runs:
        path = str(run.path)
        correct = np.array([bool(s.outcome["correct"]) for s in run.scored(name)], dtype=float)
        refused = np.array([bool(s.outcome["refused"]) for s in run.scored(name)], dtype=float)
        out.replicates["score"][path] = 100.0 * times @ correct / len(correct)
        out.replicates["refusal"][path] = 100.0 * times @ refused / len(refused)
        out.replicates["answered"][path] = np.full(n_resamples, np.nan)
        out.replicates["degenerate"][path] = np.full(n_resamples, np.nan)
        out.units[path], out.strata[path] = len(correct), len(strata)
    return out


def fast_report(runs: list[Run]) -> Any:
    """Patches ``build_table`` to read ``runs`` from memory and bootstrap with :func:`fast_bootstrap`."""
    by_path = {r.path: r for r in runs}
    patches = [mock.patch.object(aggregate, "load_runs", lambda paths: [by_path[Path(p)] for p in paths]),
               mock.patch.object(aggregate, "bootstrap_perspective", fast_bootstrap),
               mock.patch.object(aggregate, "run_views", lambda run, measure: (None, None))]

    class _Both:
        def __enter__(self) -> None:
            for p in patches:
                p.start()

        def __exit__(self, *exc: Any) -> None:
            for p in patches:
                p.stop()

    return _Both()
