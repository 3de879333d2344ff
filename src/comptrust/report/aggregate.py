"""From run folders to the report's table: variants, scores, the average of nine, deltas with CIs.

One row per model variant: the dense model first, then each compression of the
same base model.  Runs of one configuration compressed with different
calibration seeds form one row, shown as mean ± std (the paper's "(3 seeds)").

Average of nine: the mean of the eight perspective scores and MMLU, as the
paper's ``num_sheet.csv`` "Average" (docs/perspectives.md §9).  It needs all
nine numbers; a run missing any of them has no average (shown as missing,
never a mean of what happens to be there).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from comptrust.errors import DataError
from comptrust.registry import PAPER_NINE, get_perspective
from comptrust.report import bootstrap
from comptrust.report.bootstrap import BootstrapResult, bootstrap_perspective, degenerate_counts, eval_options, interval
from comptrust.report.consistency import mismatch_warnings
from comptrust.report.decisions import correct_marks
from comptrust.report.format_notes import gguf_fallback_notes, runtime_notes
from comptrust.report.health import HealthCounts, count_responses
from comptrust.report.runs import MEASURES, Run, apply_pairs, check_comparable, linked_replicates, load_runs

AVERAGE = "average"


def average_of_nine(scores: dict[str, float | None]) -> float | None:
    """Mean of the eight perspective scores and MMLU; ``None`` unless all nine exist."""
    values = [scores.get(m) for m in PAPER_NINE]
    if any(v is None for v in values):
        return None
    return sum(values) / len(values)  # type: ignore[arg-type]


@dataclass
class Cell:
    """One number of the table over the runs of a variant (several runs = several seeds)."""

    values: list[float]
    n_runs: int
    partial: bool = False
    missing: list[str] = field(default_factory=list)
    ci: tuple[float, float] | None = None
    reason: str | None = None  # why there is no interval

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        """Sample standard deviation across runs (``None`` for a single run)."""
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "values": self.values, "n_runs": self.n_runs,
                "partial": self.partial, "missing": self.missing,
                "ci95": list(self.ci) if self.ci else None, "no_interval_reason": self.reason}


@dataclass
class Change:
    """Compressed minus dense of one quantity, with its bootstrap 95% interval or why it has none."""

    value: float | None
    ci: tuple[float, float] | None = None
    reason: str | None = None
    se: float | None = None  # bootstrap standard error of the change
    df: int | None = None  # units - strata of the smallest design behind it (small-sample correction)
    test_df: int | None = None  # degrees of freedom of its tests, when fewer than df (report.decisions)
    p_value: float | None = None  # two-sided, of "no change" (report.decisions)
    p_adjusted: float | None = None  # Holm-adjusted over the report's family of score changes
    adjusted: bool | None = None  # Holm's decision; None: not in a corrected family (the interval decides)

    @property
    def significant(self) -> bool | None:
        """True when the interval excludes zero and, for a change in the report's corrected family,
        Holm's procedure rejects "no change" too (``report.decisions``); ``None`` without an interval."""
        if self.ci is None:
            return None
        excludes = self.ci[0] > 0 or self.ci[1] < 0
        return excludes if self.adjusted is None else excludes and self.adjusted

    def to_json(self) -> dict[str, Any]:
        return {"delta": self.value, "ci95": list(self.ci) if self.ci else None, "significant": self.significant,
                "no_interval_reason": self.reason, "se": self.se, "p_value": self.p_value,
                "p_holm": self.p_adjusted}


# The smallest drop a 95% two-sided test detects with 80% power is (1.96 + 0.84) standard errors.
POWER_Z = 1.96 + 0.8416


@dataclass
class Delta(Change):
    """The score change of one measure, with the changes of its refusal rate, its score on
    answered prompts only and its share of degenerate responses (same bootstrap draws)."""

    measure: str = ""
    std: float | None = None  # spread of the change across calibration seeds
    paired: bool | None = None
    refusal: Change | None = None
    answered: Change | None = None
    degenerate: Change | None = None
    refusal_driven: str | None = None  # why the change is explained by refusals (labelled, not a plain move)
    detectable_corrected: float | None = None  # the same after Holm's correction (report.decisions)
    noise: Change | None = None  # the same measure's change when the dense model is merely rerun

    @property
    def note(self) -> str | None:
        return self.reason

    @property
    def within_noise_floor(self) -> bool | None:
        """The change is no larger than rerunning the dense model moved it (None: no noise floor)."""
        if self.value is None or self.noise is None or self.noise.value is None:
            return None
        return bool(abs(self.value) <= abs(self.noise.value))

    @property
    def detectable(self) -> float | None:
        """The drop (points) this comparison would detect with 80% power at the 5% level."""
        return None if self.se is None or self.ci is None else POWER_Z * self.se

    def to_json(self) -> dict[str, Any]:
        return {"measure": self.measure, **super().to_json(), "std": self.std, "paired": self.paired,
                "note": self.reason, "detectable_drop_80pct_power": self.detectable,
                "detectable_drop_80pct_power_corrected": self.detectable_corrected,
                "refusal": self.refusal.to_json() if self.refusal else None,
                "answered_only": self.answered.to_json() if self.answered else None,
                "degenerate": self.degenerate.to_json() if self.degenerate else None,
                "refusal_driven": self.refusal_driven,
                "noise_floor": self.noise.to_json() if self.noise else None,
                "within_noise_floor": self.within_noise_floor}


@dataclass
class NoiseFloor:
    """Dense vs dense: the run a report compares against, and the same model evaluated again.

    ``replicate`` carries a recorded perturbation (``comptrust eval --noise-floor``), or is the dense
    model's second run (another seed) where two were given.
    """

    primary: Run
    replicate: Run
    label: str
    changes: dict[str, Change] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "primary_run": str(self.primary.path), "replicate_run": str(self.replicate.path),
                "perturbation": p.to_json() if (p := self.replicate.perturbation) else None,
                "changes": {m: c.to_json() for m, c in self.changes.items()}}


@dataclass
class Variant:
    """A table row: the dense model or one compression configuration of a base model."""

    key: str
    label: str
    base: str
    runs: list[Run]
    cells: dict[str, Cell] = field(default_factory=dict)
    refusals: dict[str, Cell] = field(default_factory=dict)
    answered: dict[str, Cell] = field(default_factory=dict)  # score on answered prompts only
    degenerate: dict[str, Cell] = field(default_factory=dict)  # % degenerate responses
    health: dict[str, HealthCounts] = field(default_factory=dict)  # degenerate responses by kind, all runs
    deltas: dict[str, Delta] = field(default_factory=dict)
    size_hint: int | None = None  # dense weights size as recorded in a compressed model's manifest

    @property
    def is_dense(self) -> bool:
        return self.runs[0].is_dense

    @property
    def seeds(self) -> list[Any]:
        return [r.seed for r in self.runs]

    def overall_health(self) -> HealthCounts:
        """Degenerate responses over every generating measure of every run of this variant."""
        total = HealthCounts()
        for counts in self.health.values():
            total = total.merge(counts)
        return total

    def efficiency(self) -> dict[str, Any]:
        first = self.runs[0]
        sizes = [r.size_bytes for r in self.runs if r.size_bytes is not None]
        if not sizes and self.size_hint is not None:
            sizes = [self.size_hint]
        times = [r.compression_seconds for r in self.runs if r.compression_seconds is not None]

        def mean_of(values: list[float | None]) -> float | None:
            present = [v for v in values if v is not None]
            return statistics.fmean(present) if present else None

        return {"method": first.method or ("none" if first.manifest is None else None), "bits": first.bits,
                "stored_bits": first.stored_bits, "activation_bits": first.activation_bits,
                "kv_cache": first.kv_cache, "sparsity": first.sparsity, "pattern": first.pattern,
                "size_bytes": statistics.fmean(sizes) if sizes else None,
                "compression_s": statistics.fmean(times) if times else None,
                "tokens_per_s": mean_of([r.tokens_per_second() for r in self.runs]),
                "completions_per_s": mean_of([r.completions_per_second() for r in self.runs]),
                "tokens_per_completion": mean_of([r.tokens_per_completion() for r in self.runs])}

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "base": self.base, "dense": self.is_dense,
                "runs": [str(r.path) for r in self.runs], "seeds": self.seeds,
                "scores": {m: c.to_json() for m, c in self.cells.items()},
                "refusal_rates": {m: c.to_json() for m, c in self.refusals.items()},
                "answered_only_scores": {m: c.to_json() for m, c in self.answered.items()},
                "degenerate_pct": {m: c.to_json() for m, c in self.degenerate.items()},
                "output_health": {m: h.to_json() for m, h in self.health.items()},
                "output_health_overall": self.overall_health().to_json(),
                "deltas": {m: d.to_json() for m, d in self.deltas.items()},
                "efficiency": self.efficiency()}


@dataclass
class Base:
    """A base model: its dense variant (if any run of it was given) and its compressions."""

    name: str
    hashes: set[str]
    names: set[str]
    variants: list[Variant] = field(default_factory=list)
    replicates: list[Run] = field(default_factory=list)  # noise-floor reruns of the dense model
    ignored: list[Run] = field(default_factory=list)  # noise-floor reruns of compressed models (not used)
    noise: NoiseFloor | None = None

    @property
    def dense(self) -> Variant | None:
        return next((v for v in self.variants if v.is_dense), None)

    def compressed(self) -> list[Variant]:
        """Its compressed variants, when a dense run is there to compare them with (else none)."""
        return [v for v in self.variants if not v.is_dense] if self.dense is not None else []

    def matches(self, run: Run) -> bool:
        hashes = run.base_hashes()
        if self.hashes and hashes:
            return bool(self.hashes & hashes)
        return bool(self.names & run.base_names())


@dataclass
class Table:
    settings: dict[str, Any]
    bases: list[Base]
    notes: list[str]
    bootstrap_seconds: dict[str, float]

    @property
    def variants(self) -> list[Variant]:
        return [v for b in self.bases for v in b.variants]

    def to_json(self) -> dict[str, Any]:
        return {"settings": self.settings, "measures": [*MEASURES, AVERAGE], "notes": self.notes,
                "bootstrap_seconds": self.bootstrap_seconds,
                "bases": [{"name": b.name, "variants": [v.label for v in b.variants]} for b in self.bases],
                "variants": [v.to_json() for v in self.variants]}


def group_runs(runs: list[Run]) -> list[Base]:
    """Bases in order of appearance, each with its dense variant first."""
    bases: list[Base] = []
    for run in sorted(runs, key=lambda r: not r.is_dense):  # stable: dense runs found first
        base = next((b for b in bases if b.matches(run)), None)
        if base is None:  # a new dense model, or a compression whose dense run was not given
            base = Base(name=run.base_name, hashes=run.base_hashes(), names=run.base_names())
            bases.append(base)
        if run.is_dense:
            base.hashes |= run.base_hashes()
            base.names |= run.base_names()
        if run.perturbation is not None:  # a noise-floor rerun: the floor's, never a variant's seed
            (base.replicates if run.is_dense else base.ignored).append(run)
            continue
        key = run.config_key()
        variant = next((v for v in base.variants if v.key == key), None)
        if variant is None:
            base.variants.append(Variant(key=key, label=run.describe(), base=base.name, runs=[run]))
        else:
            variant.runs.append(run)
    for base in bases:
        base.variants.sort(key=lambda v: not v.is_dense)
        if base.dense is not None:
            hints = [r.base_info.get("size_bytes") for v in base.variants for r in v.runs if not r.is_dense]
            base.dense.size_hint = next((h for h in hints if isinstance(h, int)), None)
        labels = [v.label for v in base.variants]
        for v in base.variants:
            if labels.count(v.label) > 1:  # two configs that describe alike: tell them apart
                v.label = f"{v.label} [{v.key[:6]}]"
            if len(v.runs) > 1:
                v.label = f"{v.label} ({len(v.runs)} {'seeds' if not v.is_dense else 'runs'})"
    return bases


def run_views(run: Run, measure: str) -> tuple[dict[str, float] | None, HealthCounts | None]:
    """Answered-only score and degenerate share of one run's measure (from its scores.jsonl), and its
    degenerate responses by kind; ``(None, None)`` without per-sample scores."""
    try:
        scored = run.scored(measure)
    except DataError:
        return None, None
    if not scored:
        return None, None
    try:
        perspective = get_perspective(measure)
        counts = degenerate_counts(perspective, scored)
        options = eval_options(run, perspective)
        views = bootstrap.measure(perspective, scored, run.profile or "comp-trust", options, counts)
    except Exception:  # a perspective that cannot re-aggregate: the score table still stands  # noqa: BLE001
        return None, None
    health = None if counts is None else count_responses([list(s.responses) for s in scored])
    return views, health


def _cells(variant: Variant) -> None:
    for m in MEASURES:
        present = [r for r in variant.runs if r.score(m) is not None]
        partial = [r for r in variant.runs if (r.result(m) or {}).get("partial")]
        missing = sorted({str(x) for r in partial for x in (r.result(m) or {}).get("missing") or []})
        variant.cells[m] = Cell([r.score(m) for r in present], len(variant.runs), bool(partial), missing)
        refused = [r.refusal(m) for r in variant.runs if r.refusal(m) is not None]
        variant.refusals[m] = Cell(refused, len(variant.runs))
        answered: list[float] = []
        degenerate: list[float] = []
        for run in present:
            views, health = run_views(run, m)
            if views is None:
                continue
            if np.isfinite(views["answered"]):
                answered.append(views["answered"])
            if np.isfinite(views["degenerate"]):
                degenerate.append(views["degenerate"])
            if health is not None:
                variant.health[m] = variant.health[m].merge(health) if m in variant.health else health
        variant.answered[m] = Cell(answered, len(variant.runs))
        variant.degenerate[m] = Cell(degenerate, len(variant.runs))
    averages = [average_of_nine({m: r.score(m) for m in MEASURES}) for r in variant.runs]
    variant.cells[AVERAGE] = Cell([a for a in averages if a is not None], len(variant.runs))


Replicates = dict[str, dict[str, dict[str, np.ndarray]]]  # quantity -> measure -> run path -> values


def _mean_replicates(variant: Variant, reps: dict[str, dict[str, np.ndarray]], measure: str) -> np.ndarray | None:
    """Per resample, the variant's mean over its runs (``None`` if any run lacks resamples)."""
    arrays = []
    for run in variant.runs:
        if measure == AVERAGE:
            per = [reps.get(m, {}).get(str(run.path)) for m in PAPER_NINE]
            if any(p is None for p in per):
                return None
            arrays.append(np.mean(np.vstack(per), axis=0))
        elif run.score(measure) is not None:
            arr = reps.get(measure, {}).get(str(run.path))
            if arr is None:
                return None
            arrays.append(arr)
    return np.mean(np.vstack(arrays), axis=0) if arrays else None


def _why_none(variant: Variant, boots: dict[str, BootstrapResult], measure: str, n_boot: int) -> str:
    """Why a variant has no replicates for ``measure``."""
    if not n_boot:
        return "bootstrap off (--bootstrap 0)"
    if measure == AVERAGE:
        return "needs an interval for every one of the nine measures"
    boot = boots.get(measure)
    if boot is not None:
        for run in variant.runs:
            reason = boot.reason(str(run.path))
            if reason:
                return reason
    return "no per-sample scores for a bootstrap"


def _design_size(variants: list[Variant], boots: dict[str, BootstrapResult], measure: str) -> dict[str, int]:
    """Units and strata of the smallest design behind an interval (for the small-sample expansion)."""
    measures = PAPER_NINE if measure == AVERAGE else (measure,)
    sizes = [(boots[m].units[str(r.path)], boots[m].strata[str(r.path)]) for m in measures if m in boots
             for v in variants for r in v.runs if str(r.path) in boots[m].units]
    if not sizes:
        return {}
    units, strata = min(sizes)
    return {"units": units, "strata": strata}


def _set_cell_intervals(variant: Variant, reps: Replicates, boots: dict[str, BootstrapResult], n_boot: int) -> None:
    cells_by_quantity = {"score": variant.cells, "refusal": variant.refusals, "answered": variant.answered,
                         "degenerate": variant.degenerate}
    for quantity, cells in cells_by_quantity.items():
        for m, cell in cells.items():
            if cell.mean is None:
                continue
            r = _mean_replicates(variant, reps.get(quantity, {}), m)
            if r is None:
                cell.reason = _why_none(variant, boots, m, n_boot)
            else:
                cell.ci, cell.reason = interval(r, **_design_size([variant], boots, m))


def _change(variant: Variant, dense: Variant, reps: dict[str, dict[str, np.ndarray]], measure: str,
            value: float | None, why: str, size: dict[str, int]) -> Change:
    if value is None:
        return Change(None, reason="not measured for both models")
    v_reps, d_reps = _mean_replicates(variant, reps, measure), _mean_replicates(dense, reps, measure)
    if v_reps is None or d_reps is None:
        return Change(value, reason=why)
    diff = v_reps - d_reps
    ci, reason = interval(diff, **size)
    finite = diff[np.isfinite(diff)]
    se = None
    if ci is not None and finite.size > 1:  # widened like the interval: small samples understate spread
        se = float(np.std(finite, ddof=1)) * bootstrap.expansion(0.95, **size)
    units = size.get("units")
    df = units - size.get("strata", 1) if units is not None and units - size.get("strata", 1) >= 1 else None
    return Change(value, ci, reason, se, df)


def _diff(a: Cell, b: Cell) -> float | None:
    return None if a.mean is None or b.mean is None else a.mean - b.mean


def _deltas(base: Base, reps: Replicates, boots: dict[str, BootstrapResult], n_boot: int) -> None:
    dense = base.dense
    for variant in base.compressed():
        for m in (*MEASURES, AVERAGE):
            c_cell, d_cell = variant.cells[m], dense.cells[m]
            if c_cell.mean is None or d_cell.mean is None:
                continue
            why = _why_none(variant, boots, m, n_boot)
            if why == "no per-sample scores for a bootstrap":
                why = _why_none(dense, boots, m, n_boot)
            size = _design_size([variant, dense], boots, m)
            score = _change(variant, dense, reps.get("score", {}), m, c_cell.mean - d_cell.mean, why, size)
            paired = None if m == AVERAGE else (boots[m].paired if m in boots else None)
            delta = Delta(score.value, score.ci, score.reason, score.se, score.df, measure=m, std=c_cell.std,
                          paired=paired)
            if m != AVERAGE:
                delta.refusal = _change(variant, dense, reps.get("refusal", {}), m,
                                        _diff(variant.refusals[m], dense.refusals[m]), why, size)
                delta.answered = _change(variant, dense, reps.get("answered", {}), m,
                                         _diff(variant.answered[m], dense.answered[m]), why, size)
                delta.degenerate = _change(variant, dense, reps.get("degenerate", {}), m,
                                           _diff(variant.degenerate[m], dense.degenerate[m]), why, size)
                delta.refusal_driven = refusal_explanation(delta, variant, dense, m)
            variant.deltas[m] = delta


def _noise_pair(base: Base) -> tuple[Run, Run, str] | tuple[None, None, str | None]:
    """(primary, replicate, label) of the base's noise floor, or (None, None, why there is none)."""
    dense = base.dense
    if base.replicates:
        replicate = base.replicates[0]
        perturbation = replicate.perturbation
        assert perturbation is not None
        if dense is None:
            return None, None, (f"Noise-floor rerun {replicate.path.name} has no dense run of {base.name} beside it: "
                                "pass the run it replicates too.")
        primary = next((r for r in dense.runs if r.run_id == perturbation.of_run), dense.runs[0])
        return primary, replicate, f"dense rerun ({perturbation.describe()})"
    if dense is not None and len(dense.runs) > 1:
        first, second = dense.runs[0], dense.runs[1]
        return first, second, f"dense rerun (second dense run, seed {second.seed} vs {first.seed})"
    return None, None, None


def _noise_floor(base: Base, reps: Replicates, boots: dict[str, BootstrapResult], n_boot: int) -> list[str]:
    """Dense vs dense on every measure, set on ``base.noise`` and beside each variant's delta; notes."""
    notes = [f"Run {r.path.name} is a noise-floor rerun of a compressed model: not used (the noise floor is "
             "the dense model's)." for r in base.ignored]
    notes += [f"Noise-floor rerun {r.path.name} not used: {base.name} has one already "
              f"({base.replicates[0].path.name})." for r in base.replicates[1:]]
    primary, replicate, label = _noise_pair(base)
    if primary is None or replicate is None:
        return notes + ([label] if label else [])
    floor = NoiseFloor(primary=primary, replicate=replicate, label=str(label))
    first = Variant(key="noise-primary", label="dense", base=base.name, runs=[primary])
    again = Variant(key="noise-replicate", label=floor.label, base=base.name, runs=[replicate])
    for m in (*MEASURES, AVERAGE):
        before, after = _run_score(primary, m), _run_score(replicate, m)
        if before is None or after is None:
            continue
        why = _why_none(again, boots, m, n_boot)
        if why == "no per-sample scores for a bootstrap":
            why = _why_none(first, boots, m, n_boot)
        floor.changes[m] = _change(again, first, reps.get("score", {}), m, after - before, why,
                                   _design_size([first, again], boots, m))
    base.noise = floor
    for variant in base.variants:
        for m, delta in variant.deltas.items():
            delta.noise = floor.changes.get(m)
    return notes


def _run_score(run: Run, measure: str) -> float | None:
    if measure == AVERAGE:
        return average_of_nine({m: run.score(m) for m in MEASURES})
    return run.score(measure)


# A refusal rate that moves this much (points) can explain a score change even where its own
# interval is missing (every prompt changed alike, e.g. 0% -> 100%).
REFUSAL_SHIFT = 10.0


def refusal_explanation(delta: Delta, variant: Variant, dense: Variant, measure: str) -> str | None:
    """Why a score change is explained by a change in refusals, or ``None``.

    It is, when the score moved, the refusal rate moved (its interval excludes zero, or it moved by
    at least :data:`REFUSAL_SHIFT` points), and the change does not also hold, significantly and in
    the same direction, on the prompts both models answered.  Significant or not: a +35-point
    fairness change of a model that refuses every prompt is the refusals, and a reader must not
    have to find that out from another table.
    """
    refusal = delta.refusal
    if not delta.value or refusal is None or refusal.value is None:
        return None
    if not (refusal.significant or abs(refusal.value) >= REFUSAL_SHIFT):
        return None
    answered = delta.answered
    if (answered is not None and answered.value is not None and answered.significant
            and answered.value * delta.value > 0):
        return None
    before, after = dense.refusals[measure].mean, variant.refusals[measure].mean
    text = f"refusal rate {before:.0f}% → {after:.0f}%"
    if variant.answered[measure].mean is None and after is not None and after >= 100 - 1e-9:
        return text + "; the compressed model answered no prompt, so no answered-only score exists"
    if answered is None or answered.value is None:
        return text + "; no answered-only score to check against"
    if answered.ci is None:
        return text + f"; on answered prompts only the change is {answered.value:+.1f} (no interval)"
    return (text + f"; on answered prompts only the change is {answered.value:+.1f} "
                   f"[{answered.ci[0]:+.1f}, {answered.ci[1]:+.1f}], not a significant move the same way")


def third_party_notes(bases: list[Base]) -> list[str]:
    """Where a variant's compression record comes from a downloaded checkpoint, and what it lacks."""
    notes = []
    for base in bases:
        for variant in base.variants:
            run = variant.runs[0]
            if not run.is_third_party:
                continue
            manifest = run.manifest or {}
            source = manifest.get("read_from") or "the checkpoint"
            text = (f"{variant.label} is a downloaded checkpoint: its method and bits were read from {source}, "
                    "not produced or measured by comptrust")
            runtime = manifest.get("runtime")
            if runtime:
                text += f"; it ran on {runtime}"
            given = run.base_info.get("given_by")
            if not run.base_info:
                text += (". It names no base model, so it has no deltas: pass --base-model BASE to 'comptrust "
                         f"eval', or --pair {run.path}=DENSE_RUN to 'comptrust report'")
            elif given and not run.base_info.get("weights_sha256"):
                text += (f". Its base model {run.base_info.get('name')} ({given}) is matched by name only; pass "
                         f"--pair {run.path}=DENSE_RUN to pair it with a dense run by weights hash")
            elif given:
                text += f". Base model {run.base_info.get('name')}: {given}"
            notes.append(text + ".")
    return notes


def build_table(run_dirs: list[Path], n_bootstrap: int = 500, seed: int = 0,
                pairs: dict[Path, Path] | None = None) -> Table:
    """Load, check and aggregate runs; bootstrap deltas vs the dense model of each base."""
    runs = load_runs(run_dirs)
    linked, linked_notes = linked_replicates(runs)
    runs += linked
    apply_pairs(runs, pairs or {})
    shared = check_comparable(runs)
    bases = group_runs(runs)
    notes = [f"Run {r.path.name} did not finish; perspectives it had not reached show as missing."
             for r in runs if r.summary.finished is False]
    notes += linked_notes + third_party_notes(bases)
    notes += mismatch_warnings(bases)
    notes += runtime_notes(bases) + gguf_fallback_notes(bases)
    seconds: dict[str, float] = {}
    for base in bases:
        for variant in base.variants:
            _cells(variant)
        if base.dense is None:
            # a download that names no base at all: third_party_notes says how to give one
            if not all(r.is_third_party and not r.base_info for v in base.variants for r in v.runs):
                labels = ", ".join(v.label for v in base.variants)
                notes.append(f"No dense run of base model {base.name} was given, so {labels} "
                             "has no deltas (pass the dense model's run folder too).")
        elif len(base.variants) == 1:
            notes.append(f"Only the dense model {base.name} was given: pass run folders of its compressed "
                         "variants too to see changes, intervals and a recommendation.")
        reps: Replicates = {}
        boots: dict[str, BootstrapResult] = {}
        if n_bootstrap > 0:
            for m in MEASURES:
                members = [r for v in base.variants for r in v.runs if r.score(m) is not None]
                members += [r for r in base.replicates if r.score(m) is not None]
                if members:
                    boots[m] = bootstrap_perspective(m, members, n_bootstrap, seed)
                    for quantity, per_run in boots[m].replicates.items():
                        reps.setdefault(quantity, {})[m] = per_run
                    seconds[f"{base.name}/{m}"] = round(boots[m].seconds, 3)
        for variant in base.variants:
            _set_cell_intervals(variant, reps, boots, n_bootstrap)
        _deltas(base, reps, boots, n_bootstrap)
        notes += _noise_floor(base, reps, boots, n_bootstrap)
    settings = {"profile": shared["profile"], "scorers": shared["scorers"], "bootstrap_resamples": n_bootstrap,
                "bootstrap_seed": seed, "confidence": 0.95, "data": _data_kinds(runs),
                "min_units_per_stratum": bootstrap.MIN_UNITS_PER_STRATUM}
    settings["multiplicity"] = correct_marks(bases)  # ▼/▲ follow Holm over the report's score changes
    return Table(settings=settings, bases=bases, notes=notes, bootstrap_seconds=seconds)


def _data_kinds(runs: list[Run]) -> list[str]:
    kinds = []
    for run in runs:
        data = run.summary.data
        kind = (data.get("kind") or data.get("source") or data.get("name")) if isinstance(data, dict) else data
        if kind is not None and str(kind) not in kinds:
            kinds.append(str(kind))
    return kinds
