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

from comptrust.report.bootstrap import BootstrapResult, bootstrap_perspective, percentile_interval
from comptrust.report.runs import MEASURES, Run, check_comparable, load_runs

AVERAGE = "average"


def average_of_nine(scores: dict[str, float | None]) -> float | None:
    """Mean of the eight perspective scores and MMLU; ``None`` unless all nine exist."""
    values = [scores.get(m) for m in MEASURES]
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
                "ci95": list(self.ci) if self.ci else None}


@dataclass
class Delta:
    """Compressed minus dense for one measure, with its bootstrap 95% interval."""

    measure: str
    value: float
    std: float | None
    ci: tuple[float, float] | None
    paired: bool | None
    note: str | None = None

    @property
    def significant(self) -> bool | None:
        """True when the interval excludes zero; ``None`` without an interval."""
        if self.ci is None:
            return None
        return self.ci[0] > 0 or self.ci[1] < 0

    def to_json(self) -> dict[str, Any]:
        return {"measure": self.measure, "delta": self.value, "std": self.std,
                "ci95": list(self.ci) if self.ci else None, "significant": self.significant,
                "paired": self.paired, "note": self.note}


@dataclass
class Variant:
    """A table row: the dense model or one compression configuration of a base model."""

    key: str
    label: str
    base: str
    runs: list[Run]
    cells: dict[str, Cell] = field(default_factory=dict)
    refusals: dict[str, Cell] = field(default_factory=dict)
    deltas: dict[str, Delta] = field(default_factory=dict)
    size_hint: int | None = None  # dense weights size as recorded in a compressed model's manifest

    @property
    def is_dense(self) -> bool:
        return self.runs[0].is_dense

    @property
    def seeds(self) -> list[Any]:
        return [r.seed for r in self.runs]

    def efficiency(self) -> dict[str, Any]:
        first = self.runs[0]
        sizes = [r.size_bytes for r in self.runs if r.size_bytes is not None]
        if not sizes and self.size_hint is not None:
            sizes = [self.size_hint]
        times = [r.compression_seconds for r in self.runs if r.compression_seconds is not None]
        tps = [t for t in (r.tokens_per_second() for r in self.runs) if t is not None]
        return {"method": first.method or ("none" if first.is_dense else None), "bits": first.bits,
                "sparsity": first.sparsity, "pattern": first.pattern,
                "size_bytes": statistics.fmean(sizes) if sizes else None,
                "compression_s": statistics.fmean(times) if times else None,
                "tokens_per_s": statistics.fmean(tps) if tps else None}

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "base": self.base, "dense": self.is_dense,
                "runs": [str(r.path) for r in self.runs], "seeds": self.seeds,
                "scores": {m: c.to_json() for m, c in self.cells.items()},
                "refusal_rates": {m: c.to_json() for m, c in self.refusals.items()},
                "deltas": {m: d.to_json() for m, d in self.deltas.items()},
                "efficiency": self.efficiency()}


@dataclass
class Base:
    """A base model: its dense variant (if any run of it was given) and its compressions."""

    name: str
    hashes: set[str]
    names: set[str]
    variants: list[Variant] = field(default_factory=list)

    @property
    def dense(self) -> Variant | None:
        return next((v for v in self.variants if v.is_dense), None)

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


def _cells(variant: Variant) -> None:
    for m in MEASURES:
        present = [r for r in variant.runs if r.score(m) is not None]
        partial = [r for r in variant.runs if (r.result(m) or {}).get("partial")]
        missing = sorted({str(x) for r in partial for x in (r.result(m) or {}).get("missing") or []})
        variant.cells[m] = Cell([r.score(m) for r in present], len(variant.runs), bool(partial), missing)
        refused = [r.refusal(m) for r in variant.runs if r.refusal(m) is not None]
        variant.refusals[m] = Cell(refused, len(variant.runs))
    averages = [average_of_nine({m: r.score(m) for m in MEASURES}) for r in variant.runs]
    variant.cells[AVERAGE] = Cell([a for a in averages if a is not None], len(variant.runs))


def _mean_replicates(variant: Variant, reps: dict[str, dict[str, np.ndarray]], measure: str) -> np.ndarray | None:
    """Per resample, the variant's mean over its runs (``None`` if any run lacks resamples)."""
    arrays = []
    for run in variant.runs:
        if measure == AVERAGE:
            per = [reps.get(m, {}).get(str(run.path)) for m in MEASURES]
            if any(p is None for p in per):
                return None
            arrays.append(np.mean(np.vstack(per), axis=0))
        elif run.score(measure) is not None:
            arr = reps.get(measure, {}).get(str(run.path))
            if arr is None:
                return None
            arrays.append(arr)
    return np.mean(np.vstack(arrays), axis=0) if arrays else None


def _deltas(base: Base, reps: dict[str, dict[str, np.ndarray]], boots: dict[str, BootstrapResult],
            n_boot: int) -> None:
    dense = base.dense
    if dense is None:
        return
    for m in (*MEASURES, AVERAGE):
        dense_reps = _mean_replicates(dense, reps, m) if n_boot else None
        if dense_reps is not None:
            dense.cells[m].ci = percentile_interval(dense_reps)
    for variant in base.variants:
        if variant.is_dense:
            continue
        for m in (*MEASURES, AVERAGE):
            c_cell, d_cell = variant.cells[m], dense.cells[m]
            if c_cell.mean is None or d_cell.mean is None:
                continue
            ci, note = None, None
            paired = None if m == AVERAGE else (boots[m].paired if m in boots else None)
            if n_boot:
                v_reps, d_reps = _mean_replicates(variant, reps, m), _mean_replicates(dense, reps, m)
                if v_reps is not None and d_reps is not None:
                    ci = percentile_interval(v_reps - d_reps)
                    if ci is None:
                        note = "too many resamples lost a sub-group; no interval"
                else:
                    errs = [e for b in ([boots[m]] if m in boots else boots.values()) for e in b.errors.values()]
                    note = errs[0] if errs else "no per-sample scores for a bootstrap"
            variant.deltas[m] = Delta(m, c_cell.mean - d_cell.mean, c_cell.std, ci, paired, note)


def build_table(run_dirs: list[Path], n_bootstrap: int = 500, seed: int = 0) -> Table:
    """Load, check and aggregate runs; bootstrap deltas vs the dense model of each base."""
    runs = load_runs(run_dirs)
    shared = check_comparable(runs)
    bases = group_runs(runs)
    notes = [f"Run {r.path.name} did not finish; perspectives it had not reached show as missing."
             for r in runs if r.summary.get("finished") is False]
    seconds: dict[str, float] = {}
    for base in bases:
        for variant in base.variants:
            _cells(variant)
        if base.dense is None:
            labels = ", ".join(v.label for v in base.variants)
            notes.append(f"No dense run of base model {base.name} was given, so {labels} "
                         "has no deltas (pass the dense model's run folder too).")
            continue
        if len(base.variants) == 1:
            notes.append(f"Only the dense model {base.name} was given: pass run folders of its compressed "
                         "variants too to see changes, intervals and a recommendation.")
        reps: dict[str, dict[str, np.ndarray]] = {}
        boots: dict[str, BootstrapResult] = {}
        if n_bootstrap > 0 and len(base.variants) > 1:
            for m in MEASURES:
                members = [r for v in base.variants for r in v.runs if r.score(m) is not None]
                if members:
                    boots[m] = bootstrap_perspective(m, members, n_bootstrap, seed)
                    reps[m] = boots[m].replicates
                    seconds[f"{base.name}/{m}"] = round(boots[m].seconds, 3)
        _deltas(base, reps, boots, n_bootstrap)
    settings = {"profile": shared["profile"], "scorers": shared["scorers"], "bootstrap_resamples": n_bootstrap,
                "bootstrap_seed": seed, "confidence": 0.95, "data": _data_kinds(runs)}
    return Table(settings=settings, bases=bases, notes=notes, bootstrap_seconds=seconds)


def _data_kinds(runs: list[Run]) -> list[str]:
    kinds = []
    for run in runs:
        data = run.summary.get("data")
        kind = (data.get("kind") or data.get("source") or data.get("name")) if isinstance(data, dict) else data
        if kind is not None and str(kind) not in kinds:
            kinds.append(str(kind))
    return kinds
