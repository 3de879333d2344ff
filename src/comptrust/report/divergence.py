"""The report's "Divergence from dense" table: KL of MMLU's choice distribution and of generation's
next-token distributions, with top-choice / same-top-token agreement (docs/reports.md).

MMLU needs nothing new: every question's four choice log-likelihoods are in ``scores.jsonl``
(``outcome["logprobs"]``), so KL(dense || variant) of the softmax over them is computed here, for
every backend that ran MMLU.  Generation reads each variant run's
``<perspective>/divergence.json`` (written by ``comptrust eval --divergence-from DENSE_RUN``).

Units are questions (MMLU) and responses (generation).  A variant of several runs (calibration
seeds) averages each unit over its runs first, so the interval is the sampling uncertainty of the
seed mean, as for the scores.  Means come with a bootstrap interval over units (the report's
expanded percentile interval); the 99th percentile is a point estimate.
"""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from comptrust.divergence import EXACT, RESULT_FILE
from comptrust.errors import DataError
from comptrust.report.bootstrap import interval
from comptrust.report.paper import COLUMNS
from comptrust.report.runs import MEASURES, Run

MMLU = "mmlu"
NO_GENERATION = ("no divergence data: evaluate it with --divergence-from DENSE_RUN (the dense run evaluated "
                 "with --divergence)")


def choice_kl(p_logliks: list[float], q_logliks: list[float]) -> float:
    """KL(P || Q) in nats of the softmax over the choices' log-likelihoods (dense P, variant Q)."""
    p = np.asarray(p_logliks, dtype=np.float64)
    q = np.asarray(q_logliks, dtype=np.float64)
    lp, lq = p - np.logaddexp.reduce(p), q - np.logaddexp.reduce(q)
    return max(float(np.sum(np.exp(lp) * (lp - lq))), 0.0)


def _mmlu_units(dense: Run, variant_runs: list[Run]) -> tuple[dict[str, tuple[float, float]], str | None]:
    """Per question: (KL, top-choice agreement), averaged over the variant's runs; or why none."""
    try:
        ref = {s.sample.id: s.outcome.get("logprobs") for s in dense.scored(MMLU)}
    except DataError as exc:
        return {}, str(exc)
    if not any(isinstance(v, list) and len(v) == 4 for v in ref.values()):
        return {}, "the dense run stored no per-question choice log-probabilities"
    sums: dict[str, list[float]] = {}
    for run in variant_runs:
        try:
            rows = run.scored(MMLU)
        except DataError:
            continue
        for s in rows:
            d, v = ref.get(s.sample.id), s.outcome.get("logprobs")
            if not (isinstance(d, list) and isinstance(v, list) and len(d) == len(v) == 4):
                continue
            agree = float(int(np.argmax(d)) == int(np.argmax(v)))
            acc = sums.setdefault(s.sample.id, [0.0, 0.0, 0.0])
            acc[0] += choice_kl(d, v)
            acc[1] += agree
            acc[2] += 1
    if not sums:
        return {}, "no question has choice log-probabilities in both runs (paired by sample id)"
    return {k: (a[0] / a[2], a[1] / a[2]) for k, a in sums.items()}, None


def _read_result(run: Run, measure: str) -> dict[str, Any] | None:
    path = Path(run.path) / measure / RESULT_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"unavailable": f"{path} is unreadable"}
    return data if isinstance(data, dict) else {"unavailable": f"{path} is not a divergence result"}


def _generation_units(base_hashes: set[str], variant_runs: list[Run], measure: str,
                      ) -> tuple[dict[str, tuple[np.ndarray, float]], dict[str, Any], str | None]:
    """Per response: (token KLs, same-top count), averaged over runs; the first run's metadata; or why none."""
    per: dict[str, list[tuple[np.ndarray, float]]] = {}
    meta: dict[str, Any] = {}
    reasons = []
    for run in variant_runs:
        data = _read_result(run, measure)
        if data is None:
            reasons.append(NO_GENERATION)
            continue
        if "unavailable" in data:
            reasons.append(str(data["unavailable"]))
            continue
        ref = data.get("reference") or {}
        if base_hashes and ref.get("weights_sha256") and ref["weights_sha256"] not in base_hashes:
            reasons.append(f"measured against {ref.get('model')} (weights {str(ref['weights_sha256'])[:12]}), "
                           "not this base model's dense weights")
            continue
        if meta and (ref.get("run_id"), ref.get("top_k")) != (meta["reference"].get("run_id"),
                                                              meta["reference"].get("top_k")):
            reasons.append(f"run {run.path.name} was compared with another dense run; left out")
            continue
        if not meta:
            meta = {k: data.get(k) for k in ("reference", "backend", "estimator", "support_complete")}
            meta["cost"] = dict(data.get("cost") or {})
        else:
            for key, value in (data.get("cost") or {}).items():
                if isinstance(value, int | float):
                    meta["cost"][key] = meta["cost"].get(key, 0) + value
        for r in data.get("responses", []):
            per.setdefault(str(r["sample_id"]), []).append((np.asarray(r["kl"], dtype=np.float64),
                                                             float(r["same_top"])))
    units = {}
    for key, items in per.items():
        if len({len(k) for k, _ in items}) == 1:
            units[key] = (np.mean([k for k, _ in items], axis=0), float(np.mean([s for _, s in items])))
    if not units:
        return {}, meta, reasons[0] if reasons else NO_GENERATION
    return units, meta, None


def _rng(seed: int, measure: str, label: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(f"divergence/{measure}".encode()), zlib.crc32(label.encode())])


def _ci(reps: np.ndarray | None, units: int, n_boot: int, low: float = 0.0,
        high: float = math.inf) -> tuple[list[float] | None, str | None]:
    """The expanded percentile interval, clipped to the quantity's range (a KL is never negative, a
    rate never above 100%: the small-sample widening could otherwise cross them)."""
    if not n_boot:
        return None, "bootstrap off (--bootstrap 0)"
    if reps is None or units < 2:
        return None, "n too small: fewer than 2 units"
    ci, reason = interval(reps, units=units)
    return ([max(low, ci[0]), min(high, ci[1])] if ci else None), reason


def mmlu_row(units: dict[str, tuple[float, float]], n_boot: int, rng: np.random.Generator) -> dict[str, Any]:
    kl = np.array([u[0] for u in units.values()])
    agree = np.array([u[1] for u in units.values()])
    n = kl.size
    idx = rng.integers(0, n, size=(n_boot, n)) if n_boot and n > 1 else None
    kl_ci, kl_why = _ci(kl[idx].mean(axis=1) if idx is not None else None, n, n_boot)
    ag_ci, ag_why = _ci(100 * agree[idx].mean(axis=1) if idx is not None else None, n, n_boot, high=100.0)
    return {"measure": MMLU, "kind": "choice", "units": n, "tokens": None,
            "mean_kl": float(kl.mean()), "mean_kl_ci95": kl_ci, "mean_kl_no_interval_reason": kl_why,
            "p99_kl": float(np.percentile(kl, 99)),
            "agreement_pct": 100 * float(agree.mean()), "agreement_ci95": ag_ci, "agreement_no_interval_reason": ag_why,
            "estimator": "exact: softmax over the 4 choice log-likelihoods", "cost": None}


def generation_row(measure: str, units: dict[str, tuple[np.ndarray, float]], meta: dict[str, Any],
                   n_boot: int, rng: np.random.Generator) -> dict[str, Any]:
    sums = np.array([k.sum() for k, _ in units.values()])
    counts = np.array([k.size for k, _ in units.values()], dtype=np.float64)
    same = np.array([s for _, s in units.values()])
    flat = np.concatenate([k for k, _ in units.values()])
    n = sums.size
    idx = rng.integers(0, n, size=(n_boot, n)) if n_boot and n > 1 else None
    tokens = counts[idx].sum(axis=1) if idx is not None else None
    kl_ci, kl_why = _ci(sums[idx].sum(axis=1) / tokens if idx is not None else None, n, n_boot)
    ag_ci, ag_why = _ci(100 * same[idx].sum(axis=1) / tokens if idx is not None else None, n, n_boot,
                        high=100.0)
    return {"measure": measure, "kind": "tokens", "units": n, "tokens": int(counts.sum()),
            "mean_kl": float(sums.sum() / counts.sum()), "mean_kl_ci95": kl_ci, "mean_kl_no_interval_reason": kl_why,
            "p99_kl": float(np.percentile(flat, 99)),
            "agreement_pct": 100 * float(same.sum() / counts.sum()), "agreement_ci95": ag_ci,
            "agreement_no_interval_reason": ag_why, "estimator": meta.get("estimator"),
            "support_complete": meta.get("support_complete"), "backend": meta.get("backend"),
            "reference": meta.get("reference"), "cost": meta.get("cost")}


def divergence_section(table: Any) -> list[dict[str, Any]]:
    """Per base model: one row per (compressed variant, measure) with data, and notes where none."""
    settings = table.settings
    n_boot, seed = int(settings.get("bootstrap_resamples") or 0), int(settings.get("bootstrap_seed") or 0)
    out = []
    for base in table.bases:
        dense = base.dense
        compressed = [v for v in base.variants if not v.is_dense]
        if dense is None or not compressed:
            continue
        entry: dict[str, Any] = {"base": base.name, "dense": dense.label, "rows": [], "notes": []}
        for variant in compressed:
            missing: dict[str, list[str]] = {}  # reason -> measures
            for measure in MEASURES:
                if all(r.score(measure) is None for r in variant.runs):
                    continue  # not evaluated: the score table already says so
                rng = _rng(seed, measure, variant.label)
                if measure == MMLU:
                    units, why = _mmlu_units(dense.runs[0], variant.runs)
                    row = mmlu_row(units, n_boot, rng) if units else None
                else:
                    gen, meta, why = _generation_units(base.hashes, variant.runs, measure)
                    row = generation_row(measure, gen, meta, n_boot, rng) if gen else None
                if row is None:
                    missing.setdefault(str(why), []).append(measure)
                else:
                    entry["rows"].append({"variant": variant.label, **row})
            for why, measures in missing.items():
                entry["notes"].append(f"{variant.label}, {', '.join(measures)}: {why}")
        out.append(entry)
    return out


def _kl_text(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def formatted(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the templates show of one base's divergence section (text only)."""
    if entry is None:
        return None
    rows = []
    for r in entry["rows"]:
        kl_ci = r["mean_kl_ci95"]
        ag_ci = r["agreement_ci95"]
        cost = r.get("cost") or {}
        if r["kind"] == "choice":
            what, estimator = "top choice", "exact (4 choices)"
        else:
            what = "same top token"
            top_k = (r.get("reference") or {}).get("top_k")
            estimator = (f"top-{top_k} + rest" if r.get("estimator") == EXACT
                         else f"shared top-{top_k} + rest ({r.get('backend')}: "
                              f"{100 * (r.get('support_complete') or 0):.0f}% of positions complete)")
        rows.append({
            "variant": r["variant"], "measure": COLUMNS.get(r["measure"], r["measure"]), "what": what,
            "units": f"{r['units']} {'questions' if r['kind'] == 'choice' else 'responses'}",
            "tokens": "—" if r["tokens"] is None else f"{r['tokens']:,}",
            "mean_kl": _kl_text(r["mean_kl"]),
            "mean_kl_ci": (f"[{_kl_text(kl_ci[0])}, {_kl_text(kl_ci[1])}]" if kl_ci
                           else (r["mean_kl_no_interval_reason"] or "no interval").split(":")[0]),
            "p99_kl": _kl_text(r["p99_kl"]),
            "agreement": f"{r['agreement_pct']:.1f}%",
            "agreement_ci": (f"[{ag_ci[0]:.1f}, {ag_ci[1]:.1f}]" if ag_ci
                             else (r["agreement_no_interval_reason"] or "no interval").split(":")[0]),
            "estimator": estimator,
            "cost": (f"{cost['seconds']:.1f} s, {cost.get('forward_passes', 0)} forward passes, "
                     f"{cost.get('tokens', 0):,} tokens" if cost.get("seconds") is not None
                     else "none (from the stored MMLU log-likelihoods)"),
        })
    return {"dense": entry["dense"], "rows": rows, "notes": entry["notes"]}
