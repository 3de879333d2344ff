"""Bootstrap confidence intervals for any perspective, by re-running its own ``aggregate()``.

Perspective scores are not simple means (stereotype averages agreement per
topic x group cell, toxicity needs all eight configurations, ...), so instead
of a per-sample statistic we resample the scored samples and let the
perspective aggregate each resample exactly as it aggregates a run.

- Resampling is stratified: samples are drawn with replacement *within* each
  scenario (or within ``perspective.bootstrap_stratum(sample)`` when a
  perspective defines it), so every scenario keeps its size and stays present.
- Runs whose samples have the same ids (dense and compressed models answer the
  same prompts) share the same draws: a *paired* bootstrap, which removes the
  prompt-difficulty variance from the difference of two models.
- Every draw comes from ``numpy.random.default_rng`` seeded by the user's seed
  and the perspective name, so a report is reproducible.
"""

from __future__ import annotations

import dataclasses
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from comptrust.report.runs import Run
from comptrust.types import ScoredSample, stable_hash

# A CI needs this share of resamples to produce a score (a resample can lose a sub-group).
MIN_VALID_SHARE = 0.95
# Stored and re-aggregated scores may differ by rounding only.
RECOMPUTE_TOLERANCE = 0.05


@dataclass
class BootstrapResult:
    """Per run (keyed by ``str(run.path)``): ``n_resamples`` scores, NaN where a resample had none."""

    perspective: str
    n_resamples: int
    replicates: dict[str, np.ndarray] = field(default_factory=dict)
    paired: bool = True
    errors: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def eval_options(run: Run) -> Any:
    """The run's ``EvalOptions`` (unknown keys from other versions are dropped)."""
    from comptrust.perspectives.base import EvalOptions

    raw = run.summary.get("options") or {}
    names = {f.name for f in dataclasses.fields(EvalOptions)}
    try:
        return EvalOptions(**{k: v for k, v in raw.items() if k in names})
    except TypeError:
        return EvalOptions()


def _stratum(perspective: Any, sample: Any) -> str:
    hook = getattr(perspective, "bootstrap_stratum", None)
    return str(hook(sample)) if callable(hook) else str(sample.scenario)


def _layout(perspective: Any, scored: list[ScoredSample]) -> dict[str, list[ScoredSample]]:
    strata: dict[str, list[ScoredSample]] = {}
    for item in scored:
        strata.setdefault(_stratum(perspective, item.sample), []).append(item)
    return {k: sorted(v, key=lambda s: s.sample.id) for k, v in sorted(strata.items())}


def _layout_key(layout: dict[str, list[ScoredSample]]) -> str:
    return stable_hash([[k, [s.sample.id for s in v]] for k, v in layout.items()], 16)


def _score(perspective: Any, scored: list[ScoredSample], profile: str, options: Any) -> float:
    result = perspective.aggregate(scored, profile, options)
    return float("nan") if result.score is None else float(result.score)


def bootstrap_perspective(name: str, runs: list[Run], n_resamples: int, seed: int) -> BootstrapResult:
    """Resample each run's scored samples of ``name`` and re-aggregate ``n_resamples`` times."""
    from comptrust.registry import get_perspective

    started = time.perf_counter()
    out = BootstrapResult(perspective=name, n_resamples=n_resamples)
    try:
        perspective = get_perspective(name)
    except Exception as exc:  # an unknown or broken perspective module: no CI, say why
        out.errors = {str(r.path): f"cannot load perspective {name} ({exc})" for r in runs}
        return out

    groups: dict[str, tuple[dict[str, list[ScoredSample]], list[tuple[Run, Any, str]]]] = {}
    for run in runs:
        scored = run.scored(name)
        if not scored:
            out.errors[str(run.path)] = f"no per-sample scores ({name}/scores.jsonl)"
            continue
        profile = run.profile or "comp-trust"
        options = eval_options(run)
        try:
            full = _score(perspective, scored, profile, options)
        except Exception as exc:  # the perspective cannot re-aggregate this run: no CI, say why
            out.errors[str(run.path)] = f"re-aggregating the stored samples failed ({exc})"
            continue
        stored = run.score(name)
        if stored is None or not np.isfinite(full) or abs(full - stored) > RECOMPUTE_TOLERANCE:
            out.errors[str(run.path)] = (f"re-aggregating the stored samples gives {full:.2f}, not the stored "
                                         f"{stored}; was the run scored by another version of {name}?")
            continue
        layout = _layout(perspective, scored)
        key = _layout_key(layout)
        groups.setdefault(key, (layout, []))[1].append((run, options, profile))
    out.paired = len(groups) <= 1

    for key, (layout, members) in sorted(groups.items()):
        rng = np.random.default_rng([seed, zlib.crc32(name.encode()), int(key[:8], 16)])
        sizes = {s: len(items) for s, items in layout.items()}
        reps = {str(run.path): np.full(n_resamples, np.nan) for run, _, _ in members}
        per_run = {str(run.path): _layout(perspective, run.scored(name)) for run, _, _ in members}
        for b in range(n_resamples):
            draws = {s: rng.integers(0, n, size=n).tolist() for s, n in sizes.items()}
            for run, options, profile in members:
                strata = per_run[str(run.path)]
                sample = [item for s, idx in draws.items() for item in map(strata[s].__getitem__, idx)]
                try:
                    reps[str(run.path)][b] = _score(perspective, sample, profile, options)
                except Exception:  # a resample that lost a sub-group: counted as invalid  # noqa: BLE001
                    pass
        out.replicates.update(reps)
    out.seconds = time.perf_counter() - started
    return out


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float] | None:
    """Percentile interval of the finite values; ``None`` when too many resamples failed."""
    if values.size == 0:
        return None
    finite = values[np.isfinite(values)]
    if finite.size < max(10, MIN_VALID_SHARE * values.size):
        return None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)
