"""Bootstrap confidence intervals for any perspective, by re-running its own ``aggregate()``.

Perspective scores are not simple means (stereotype averages agreement per
topic x group cell, toxicity needs all eight configurations, ...), so instead
of a per-sample statistic we resample *independent units* and let the
perspective aggregate each resample exactly as it aggregates a run.

- **Units.** A unit is one benchmark item with everything that depends on it:
  all ``n`` draws of its prompt and every scenario that reuses it (the same
  stereotype statement under the three system prompts, the same toxicity prompt
  under both templates, the same SST-2 sentence in every OOD style).  A
  perspective names its units with ``bootstrap_unit(sample)``; by default each
  sample is its own unit.  Units, never single draws, are resampled.
- **Strata.** Units are grouped by the set of scenarios they appear in and
  resampled with replacement within each group, so every scenario keeps its
  size and stays present.
- **Too few units.** A stratum with fewer than :data:`MIN_UNITS_PER_STRATUM`
  units cannot show its own variability (one unit always resamples to itself),
  so such a measure gets no interval and the reason "n too small".
- **Paired.** Runs with the same units (dense and compressed models answering
  the same prompts) share every draw, so the interval measures the models'
  difference, not prompt difficulty.
- **Several quantities per draw.** Each resample yields the score, the refusal
  rate, the score on answered prompts only (``answered_only`` of the
  perspective) and the share of degenerate responses (:mod:`.health`), so all
  of their changes get intervals from the same draws.
- Draws come from ``numpy.random.default_rng`` seeded by the user's seed, the
  perspective name and the unit layout, so a report is reproducible.

``tests/test_report_calibration.py`` checks by simulation that the 95%
intervals of the change cover the true change in at least 90% of studies for
every perspective's aggregation.
"""

from __future__ import annotations

import dataclasses
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from comptrust.errors import ConfigError
from comptrust.perspectives.base import EvalOptions, options_for
from comptrust.registry import get_perspective
from comptrust.report.health import sample_degenerate
from comptrust.report.runs import Run
from comptrust.store.record import recorded_options
from comptrust.types import ScoredSample, stable_hash

# A CI needs this share of resamples to produce a score (a resample can lose a sub-group).
MIN_VALID_SHARE = 0.95
# Stored and re-aggregated scores may differ by rounding only.
RECOMPUTE_TOLERANCE = 0.05
# Fewer units than this in some stratum: no interval ("n too small").  Chosen with the calibration
# simulation in tests/test_report_calibration.py (coverage of 95% intervals >= 90% at this size).
MIN_UNITS_PER_STRATUM = 5
# An interval narrower than this (points) means the resamples did not vary: "no variation".
ZERO_WIDTH = 1e-9

QUANTITIES = ("score", "refusal", "answered", "degenerate")
"""What every resample measures: the 0-100 score, the refusal rate (%), the score on answered
prompts only, and the share of degenerate responses (%)."""


@dataclass
class BootstrapResult:
    """Per quantity and run (keyed by ``str(run.path)``): ``n_resamples`` values, NaN where a
    resample had none.  ``errors`` and ``too_small`` say why a run has no replicates."""

    perspective: str
    n_resamples: int
    replicates: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    paired: bool = True
    errors: dict[str, str] = field(default_factory=dict)
    too_small: dict[str, str] = field(default_factory=dict)
    units: dict[str, int] = field(default_factory=dict)
    strata: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def reason(self, run_path: str) -> str | None:
        """Why this run has no replicates (``None`` when it has them)."""
        return self.too_small.get(run_path) or self.errors.get(run_path)


def eval_options(run: Run, perspective: Any = None) -> Any:
    """The run's ``EvalOptions`` (unknown keys from other versions are dropped).

    With ``perspective``: the options that perspective saw during the eval, i.e. only its own
    ``--scenarios`` entries, without their ``name:`` prefix.  Its entry records them (``options``);
    an entry written before that was recorded gets them derived from the run's options by the
    runner's own function (``perspectives.base.options_for``).
    """

    options = _options_from(run.summary.options or {})
    if perspective is None:
        return options
    recorded = recorded_options(run.results.get(perspective.name))
    if recorded is not None:
        return _options_from(recorded)
    if not options.scenarios:
        return options
    evaluated = list(run.summary.perspectives or [perspective.name])
    try:
        return options_for(perspective, options, evaluated) or options
    except ConfigError:
        return options


def _options_from(raw: dict[str, Any]) -> Any:
    """``EvalOptions`` from its recorded dict; keys another version wrote and this one lacks are dropped."""

    names = {f.name for f in dataclasses.fields(EvalOptions)}
    try:
        return EvalOptions(**{k: v for k, v in raw.items() if k in names})
    except TypeError:
        return EvalOptions()


def unit_key(perspective: Any, sample: Any) -> str:
    hook = getattr(perspective, "bootstrap_unit", None)
    return str(hook(sample)) if callable(hook) else str(sample.id)


@dataclass
class Design:
    """One run's samples as strata of units: ``strata[stratum] = [unit key, ...]`` (sorted)."""

    strata: dict[str, list[str]]
    units: dict[str, list[ScoredSample]]

    @property
    def key(self) -> str:
        """Equal for runs with the same units: those runs are resampled together (paired)."""
        return stable_hash([[s, keys, [[x.sample.id for x in self.units[k]] for k in keys]]
                            for s, keys in self.strata.items()], 16)

    def smallest(self) -> tuple[str, int]:
        stratum = min(self.strata, key=lambda s: len(self.strata[s]))
        return stratum, len(self.strata[stratum])


def design(perspective: Any, scored: list[ScoredSample]) -> Design:
    """Group samples into units, and units into strata by the scenarios they span."""
    units: dict[str, list[ScoredSample]] = {}
    for item in scored:
        units.setdefault(unit_key(perspective, item.sample), []).append(item)
    strata: dict[str, list[str]] = {}
    for key, items in units.items():
        items.sort(key=lambda s: s.sample.id)
        stratum = "+".join(sorted({str(s.sample.scenario) for s in items}))
        strata.setdefault(stratum, []).append(key)
    return Design({s: sorted(keys) for s, keys in sorted(strata.items())}, units)


def measure(perspective: Any, scored: list[ScoredSample], profile: str, options: Any,
            degenerate: dict[str, tuple[int, int]] | None = None,
            quantities: tuple[str, ...] = QUANTITIES) -> dict[str, float]:
    """The quantities of one set of scored samples (NaN where undefined).

    ``degenerate`` maps a sample id to (degenerate responses, responses); ``None`` for measures
    without free-text answers (MMLU).
    """
    result = perspective.aggregate(scored, profile, options)
    out = {"score": _num(result.score), "refusal": _num(result.refusal_rate), "answered": float("nan"),
           "degenerate": float("nan")}
    answered_only = getattr(perspective, "answered_only", None)
    if callable(answered_only) and "answered" in quantities:
        kept = answered_only(scored, profile)
        if kept:
            out["answered"] = _num(perspective.aggregate(kept, profile, options).score)
    if degenerate is not None and "degenerate" in quantities:
        bad = total = 0
        for item in scored:
            b, t = degenerate[item.sample.id]
            bad, total = bad + b, total + t
        out["degenerate"] = 100.0 * bad / total if total else float("nan")
    return out


def _num(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def degenerate_counts(perspective: Any, scored: list[ScoredSample]) -> dict[str, tuple[int, int]] | None:
    if perspective.kind == "loglik":
        return None
    return {s.sample.id: sample_degenerate(list(s.responses)) for s in scored}


def bootstrap_perspective(name: str, runs: list[Run], n_resamples: int, seed: int,
                          quantities: tuple[str, ...] = QUANTITIES) -> BootstrapResult:
    """Resample each run's units of ``name`` and re-measure ``n_resamples`` times."""

    started = time.perf_counter()
    out = BootstrapResult(perspective=name, n_resamples=n_resamples)
    try:
        perspective = get_perspective(name)
    except Exception as exc:  # an unknown or broken perspective module: no CI, say why
        out.errors = {str(r.path): f"cannot load perspective {name} ({exc})" for r in runs}
        return out

    groups: dict[str, tuple[Design, list[tuple[Run, Any, str, Any]]]] = {}
    for run in runs:
        path = str(run.path)
        scored = run.scored(name)
        if not scored:
            out.errors[path] = f"no per-sample scores ({name}/scores.jsonl)"
            continue
        profile = run.profile or "comp-trust"
        options = eval_options(run, perspective)
        try:
            full = _num(perspective.aggregate(scored, profile, options).score)
        except Exception as exc:  # the perspective cannot re-aggregate this run: no CI, say why
            out.errors[path] = f"re-aggregating the stored samples failed ({exc})"
            continue
        stored = run.score(name)
        if stored is None or not np.isfinite(full) or abs(full - stored) > RECOMPUTE_TOLERANCE:
            out.errors[path] = (f"re-aggregating the stored samples gives {full:.2f}, not the stored "
                                f"{stored}; was the run scored by another version of {name}?")
            continue
        layout = design(perspective, scored)
        out.units[path], out.strata[path] = len(layout.units), len(layout.strata)
        stratum, size = layout.smallest()
        if size < MIN_UNITS_PER_STRATUM:
            out.too_small[path] = (f"n too small: {size} unit(s) in {stratum}; an interval needs at least "
                                   f"{MIN_UNITS_PER_STRATUM} per scenario (raise --limit)")
            continue
        groups.setdefault(layout.key, (layout, []))[1].append(
            (run, options, profile, degenerate_counts(perspective, scored)))
    out.paired = len(groups) <= 1

    for key, (layout, members) in sorted(groups.items()):
        rng = np.random.default_rng([seed, zlib.crc32(name.encode()), int(key[:8], 16)])
        reps = {q: {str(m[0].path): np.full(n_resamples, np.nan) for m in members} for q in QUANTITIES}
        per_run = {str(run.path): design(perspective, run.scored(name)).units for run, _, _, _ in members}
        for b in range(n_resamples):
            drawn = [keys[i] for keys in layout.strata.values()
                     for i in rng.integers(0, len(keys), size=len(keys)).tolist()]
            for run, options, profile, degenerate in members:
                units = per_run[str(run.path)]
                sample = [item for k in drawn for item in units[k]]
                try:
                    values = measure(perspective, sample, profile, options, degenerate, quantities)
                except Exception:  # a resample that lost a sub-group: counted as invalid  # noqa: BLE001
                    continue
                for q, v in values.items():
                    reps[q][str(run.path)][b] = v
        for q in QUANTITIES:
            out.replicates.setdefault(q, {}).update(reps[q])
    out.seconds = time.perf_counter() - started
    return out


def expansion(level: float, units: int | None, strata: int = 1) -> float:
    """Factor that widens a percentile interval for a small sample (1 for large samples).

    The plain percentile bootstrap is too narrow in small samples: resampling ``n`` units
    underestimates the variance by ``(n - 1) / n`` per stratum, and the normal quantile ignores
    that the spread itself is estimated.  Following Hesterberg's *expanded percentile interval*
    (2015), the interval is widened by ``sqrt(n / (n - h)) * t_{1-a/2, n-h} / z_{1-a/2}`` for ``n``
    units in ``h`` strata.  Hesterberg moves the percentiles instead; scaling the 2.5%/97.5%
    distances keeps the interval's asymmetry without relying on a few extreme resamples.
    ``tests/test_report_calibration.py`` checks the resulting coverage.
    """
    from scipy.stats import norm, t

    if units is None or units - strata < 1:
        return 1.0
    df = units - strata
    z = norm.isf((1 - level) / 2)
    return float(np.sqrt(units / df) * t.isf((1 - level) / 2, df) / z)


def interval(values: np.ndarray, level: float = 0.95, units: int | None = None,
             strata: int = 1) -> tuple[tuple[float, float] | None, str | None]:
    """Expanded percentile interval of the finite values (see :func:`expansion`), or ``None`` and
    the reason there is none."""
    finite = values[np.isfinite(values)] if values.size else values
    if values.size == 0 or finite.size < max(10, MIN_VALID_SHARE * values.size):
        return None, "too many resamples lost a sub-group; no interval"
    tail = (1 - level) / 2 * 100
    low, center, high = (float(x) for x in np.percentile(finite, [tail, 50, 100 - tail]))
    if high - low < ZERO_WIDTH:
        return None, "no variation: the middle 95% of resamples give one value, so the data cannot show uncertainty"
    widen = expansion(level, units, strata)
    return (center - widen * (center - low), center + widen * (high - center)), None
