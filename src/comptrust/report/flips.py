"""Answer flips: how many samples change their outcome between the dense and a compressed model.

Two models with the same score can answer very differently: Dutta et al. ("Accuracy is Not All
You Need", NeurIPS 2024) found compressed models at dense-level accuracy flipping many answers,
and flips tracking degradation better than scores.  From the paired scored samples already stored
(same sample ids, no new evaluation), per perspective and variant:

- **Per-sample verdicts.** Each perspective's ``item_verdict`` says whether a sample counts for
  trust as its score counts it (``good``) and whether the model refused it
  (``docs/perspectives/<name>.md``).  A sample with ``n`` sampled draws gets one verdict, the
  majority of its draws (toxicity: bad when any continuation is toxic, as DecodingTrust's
  toxicity probability counts a prompt).  Draws are not paired by index: the two runs need not
  share random numbers (llama.cpp and vLLM draw their own), and a draw-level flip would then
  count sampling noise as change; the majority flips only when the prompt's typical behaviour
  changes, and gives the exact test one binary outcome per sample.
- **Shares** (% of the samples judged on both sides): flipped (the verdict or the refusal changed),
  better -> worse, worse -> better, answer -> refusal, refusal -> answer, each with a 95% bootstrap
  interval that resamples the perspective's units within their strata (as :mod:`.bootstrap`:
  seeded by the report seed, the perspective and ``"flips"``; the same small-sample expansion).
- **Exact paired test.** McNemar's exact test of "better -> worse as likely as worse -> better":
  the binomial test (p = 1/2, two-sided) on the discordant pairs.  Samples of one unit are
  correlated (a stereotype statement under three system prompts), so the test counts units:
  a unit's sign is that of its (worse -> better) - (better -> worse) samples; with one sample per
  unit this is McNemar's test exactly.  The refusal direction gets the same test.  The tests of
  a report form one family, Holm-corrected (:func:`.error_control.holm`); they describe and do not
  enter the recommendation, whose tests are the score changes' (:mod:`.decisions`).

Several runs of a variant (calibration seeds) are each paired with the dense model's first run;
their counts add up (a unit's sign sums over the runs).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from comptrust.registry import get_perspective
from comptrust.report.bootstrap import MIN_UNITS_PER_STRATUM, design, interval, unit_key
from comptrust.report.error_control import ALPHA, holm
from comptrust.report.runs import MEASURES, Run

if TYPE_CHECKING:
    from comptrust.report.aggregate import Table

KINDS = ("flipped", "worse", "better", "to_refusal", "from_refusal")
"""Columns of the per-unit count matrix besides ``paired`` (the samples judged on both sides)."""
LABELS = {"worse": "better → worse", "better": "worse → better", "to_refusal": "answer → refusal",
          "from_refusal": "refusal → answer"}


def verdicts(perspective: Any, run: Run, name: str) -> dict[str, Any]:
    """Sample id -> ItemVerdict (``None`` where the perspective cannot judge it)."""
    profile = run.profile or "comp-trust"
    hook = getattr(perspective, "item_verdict", None)
    out: dict[str, Any] = {}
    for s in run.scored(name):
        try:
            out[s.sample.id] = hook(s, profile) if callable(hook) else None
        except Exception:  # a malformed stored outcome: that sample is not judged  # noqa: BLE001
            out[s.sample.id] = None
    return out


def flip_kind(before: Any, after: Any) -> dict[str, bool] | None:
    """Which flips turn verdict ``before`` (dense) into ``after`` (compressed); ``None`` when unpaired."""
    if before is None or after is None:
        return None
    good = before.good is not None and after.good is not None
    refusal = before.refused is not None and after.refused is not None
    if not good and not refusal:
        return None
    out = {"worse": good and before.good and not after.good, "better": good and not before.good and after.good,
           "to_refusal": refusal and not before.refused and after.refused,
           "from_refusal": refusal and before.refused and not after.refused}
    out["flipped"] = any(out.values())
    return out


def flip_label(kind: dict[str, bool] | None) -> str | None:
    """"better → worse, answer → refusal" for a drill-down sample; ``None`` when it did not flip."""
    if not kind or not kind["flipped"]:
        return None
    return ", ".join(LABELS[k] for k in LABELS if kind[k])


@dataclass
class Share:
    """One share (%) with its interval or why it has none."""

    value: float
    ci: tuple[float, float] | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"pct": self.value, "ci95": list(self.ci) if self.ci else None, "no_interval_reason": self.reason}


@dataclass
class Flips:
    """One variant's flips on one measure, vs the dense model."""

    measure: str
    paired: int = 0  # samples judged on both sides, summed over the variant's runs
    counts: dict[str, int] = field(default_factory=dict)
    shares: dict[str, Share] = field(default_factory=dict)
    units_worse: int = 0  # units whose sign is "worse" (for the exact test)
    units_better: int = 0
    p_value: float | None = None  # exact two-sided test of the good/bad direction
    p_holm: float | None = None
    refusal_p_value: float | None = None
    refusal_p_holm: float | None = None
    runs: int = 0
    reason: str | None = None  # why there are no flips to show
    basis: str = ""

    @property
    def significant(self) -> bool:
        """The direction test rejects "as many worse as better flips" after Holm's correction."""
        return self.p_holm is not None and self.p_holm <= ALPHA

    def to_json(self) -> dict[str, Any]:
        return {"measure": self.measure, "paired_samples": self.paired, "runs": self.runs, "counts": self.counts,
                "shares": {k: s.to_json() for k, s in self.shares.items()},
                "exact_test": {"name": "McNemar exact (binomial sign test on units' discordant pairs)",
                               "units_worse": self.units_worse, "units_better": self.units_better,
                               "p_value": self.p_value, "p_holm": self.p_holm, "significant": self.significant},
                "refusal_test": {"p_value": self.refusal_p_value, "p_holm": self.refusal_p_holm},
                "verdict_basis": self.basis, "no_flips_reason": self.reason}


def _sign_test(positive: int, negative: int) -> float | None:
    from scipy.stats import binomtest

    n = positive + negative
    return None if n == 0 else float(binomtest(positive, n, 0.5).pvalue)


def measure_flips(name: str, dense: Run, runs: list[Run], n_resamples: int, seed: int) -> Flips:
    """Flip counts, shares with intervals and the exact tests of ``runs`` (one variant) vs ``dense``."""
    out = Flips(measure=name)
    try:
        perspective = get_perspective(name)
    except Exception as exc:  # noqa: BLE001 - an unknown perspective: say why, keep the report
        out.reason = f"cannot load perspective {name} ({exc})"
        return out
    out.basis = str(getattr(perspective, "verdict_basis", ""))
    dense_scored = dense.scored(name)
    if not dense_scored:
        out.reason = f"no per-sample scores ({name}/scores.jsonl)"
        return out
    layout = design(perspective, dense_scored)
    keys = [k for s in layout.strata.values() for k in s]
    index = {k: i for i, k in enumerate(keys)}
    unit_of = {s.sample.id: index[unit_key(perspective, s.sample)] for s in dense_scored}
    before = verdicts(perspective, dense, name)
    columns = ("paired", *KINDS)
    counts = np.zeros((len(keys), len(columns)), dtype=np.int64)
    net = np.zeros(len(keys), dtype=np.int64)  # (worse -> better) - (better -> worse), per unit
    net_refusal = np.zeros(len(keys), dtype=np.int64)  # (refusal -> answer) - (answer -> refusal)
    for run in runs:
        after = verdicts(perspective, run, name)
        common = [i for i in after if i in before and i in unit_of]
        if common:
            out.runs += 1
        for sid in common:
            kind = flip_kind(before[sid], after[sid])
            if kind is None:
                continue
            u = unit_of[sid]
            counts[u, 0] += 1
            for j, k in enumerate(KINDS, start=1):
                counts[u, j] += kind[k]
            net[u] += kind["better"] - kind["worse"]
            net_refusal[u] += kind["from_refusal"] - kind["to_refusal"]
    total = counts.sum(axis=0)
    out.paired = int(total[0])
    out.counts = {k: int(total[j]) for j, k in enumerate(KINDS, start=1)}
    if out.runs == 0:
        out.reason = "no sample ids in common with the dense run"
        return out
    if out.paired == 0:
        out.reason = "no sample has a verdict on both sides"
        return out
    out.units_better, out.units_worse = int((net > 0).sum()), int((net < 0).sum())
    out.p_value = _sign_test(out.units_better, out.units_worse)
    out.refusal_p_value = _sign_test(int((net_refusal > 0).sum()), int((net_refusal < 0).sum()))
    point = {k: 100.0 * total[j] / total[0] for j, k in enumerate(KINDS, start=1)}
    reps = _resample(layout.strata, index, counts, n_resamples, seed, name)
    stratum, size = layout.smallest()
    for j, k in enumerate(KINDS, start=1):
        if not n_resamples:
            out.shares[k] = Share(point[k], reason="bootstrap off (--bootstrap 0)")
        elif size < MIN_UNITS_PER_STRATUM:
            out.shares[k] = Share(point[k], reason=f"n too small: {size} unit(s) in {stratum}")
        else:
            ci, why = interval(reps[:, j], units=len(keys), strata=len(layout.strata))
            out.shares[k] = Share(point[k], None if ci is None else (max(0.0, ci[0]), min(100.0, ci[1])), why)
    return out


def _resample(strata: dict[str, list[str]], index: dict[str, int], counts: np.ndarray, n_resamples: int,
              seed: int, name: str) -> np.ndarray:
    """Per resample, each share (%) over units drawn with replacement within their strata."""
    if not n_resamples:
        return np.zeros((0, counts.shape[1]))
    rng = np.random.default_rng([seed, zlib.crc32(name.encode()), zlib.crc32(b"flips")])
    drawn = np.zeros((n_resamples, counts.shape[1]), dtype=np.float64)
    for keys in strata.values():
        rows = np.array([index[k] for k in keys])
        # how often each unit is drawn (drawing len(rows) with replacement), then the counts they bring
        times = rng.multinomial(len(rows), np.full(len(rows), 1.0 / len(rows)), size=n_resamples)
        drawn += times @ counts[rows]
    paired = drawn[:, :1]
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.where(paired > 0, 100.0 * drawn / paired, np.nan)
    return shares


def flip_section(table: Table, n_resamples: int | None = None, seed: int | None = None) -> dict[str, Any]:
    """Every compressed variant's flips per measure, with the flip tests Holm-corrected over the report.

    Returns ``{"bases": {base: [{"variant", "dense", "measures": {m: Flips}, "within_noise"}]}, "noise":
    {base: {"label", "measures": {m: Flips}}}, "tests", "correction"}``: ``noise`` is dense vs its
    noise-floor rerun where the report has one (its tests are not in the corrected family).
    """
    n_resamples = int(table.settings.get("bootstrap_resamples", 0) if n_resamples is None else n_resamples)
    seed = int(table.settings.get("bootstrap_seed", 0) if seed is None else seed)
    bases: dict[str, list[dict[str, Any]]] = {}
    noise: dict[str, dict[str, Any]] = {}
    family: list[tuple[Flips, str]] = []
    for base in table.bases:
        bases[base.name] = rows = []
        dense = base.dense
        if dense is None:
            continue
        for v in base.compressed():
            measures: dict[str, Flips] = {}
            for name in MEASURES:
                members = [r for r in v.runs if name in r.results]
                if name not in dense.runs[0].results or not members:
                    continue
                flips = measure_flips(name, dense.runs[0], members, n_resamples, seed)
                measures[name] = flips
                if flips.p_value is not None:
                    family.append((flips, "p"))
                if flips.refusal_p_value is not None:
                    family.append((flips, "refusal"))
            rows.append({"variant": v.label, "dense": dense.label, "measures": measures})
        if base.noise is not None:  # dense vs its rerun: described, never in the family of tests
            floor = base.noise
            noise[base.name] = {"label": floor.label, "measures": {
                name: measure_flips(name, floor.primary, [floor.replicate], n_resamples, seed)
                for name in MEASURES if name in floor.primary.results and name in floor.replicate.results}}
            for row in rows:
                row["within_noise"] = within_noise(row["measures"], noise[base.name]["measures"])
    p_values = [f.p_value if which == "p" else f.refusal_p_value for f, which in family]
    adjusted, _ = holm(p_values)  # type: ignore[arg-type]
    for (flips, which), p in zip(family, adjusted, strict=True):
        if which == "p":
            flips.p_holm = p
        else:
            flips.refusal_p_holm = p
    return {"bases": bases, "noise": noise, "tests": len(family),
            "correction": f"Holm over the report's {len(family)} exact flip test(s) (direction and refusal)"}


def within_noise(measures: dict[str, Flips], floor: dict[str, Flips]) -> dict[str, bool]:
    """Per measure: the variant flips no more samples than rerunning the dense model does."""
    out = {}
    for name, flips in measures.items():
        rerun = floor.get(name)
        if rerun is not None and "flipped" in flips.shares and "flipped" in rerun.shares:
            out[name] = bool(flips.shares["flipped"].value <= rerun.shares["flipped"].value)
    return out


def flips_json(section: dict[str, Any]) -> dict[str, Any]:
    """``scores.json``'s ``flips``."""
    return {"tests": section["tests"], "correction": section["correction"],
            "bases": {b: [{"variant": r["variant"], "dense": r["dense"],
                           "measures": {m: f.to_json() for m, f in r["measures"].items()},
                           "within_noise_floor": r.get("within_noise")} for r in rows]
                      for b, rows in section["bases"].items()},
            "noise_floor": {b: {"label": n["label"], "measures": {m: f.to_json() for m, f in n["measures"].items()}}
                            for b, n in section.get("noise", {}).items()}}


# A score that hides change: at least this share (%) of samples flips while the score change is not significant.
FLIP_NOTABLE = 10.0


def _share_text(f: Flips, kind: str) -> str:
    share = f.shares[kind]
    ci = f" [{share.ci[0]:.1f}, {share.ci[1]:.1f}]" if share.ci else ""
    return f"{share.value:.1f}%{ci}"


def variant_flip_findings(label: str, measures: dict[str, Flips], deltas: dict[str, Any],
                          titles: dict[str, str]) -> list[str]:
    """Sentences about one variant's flips: the largest flip shares by direction, directions the exact
    test shows (Holm-corrected), and scores that stay while answers flip (Dutta et al., 2024)."""
    out: list[str] = []
    moved = sorted((f for f in measures.values() if f.shares and f.counts.get("flipped")),
                   key=lambda f: -f.shares["flipped"].value)
    if not moved:
        return out
    parts = []
    for f in moved[:3]:
        sides = [f"{f.shares[k].value:.1f}% {LABELS[k]}" for k in LABELS if f.counts.get(k)]
        parts.append(f"{_share_text(f, 'flipped')} of {titles[f.measure]} samples ({', '.join(sides)})")
    more = f"; {len(moved) - 3} other measure(s) flip less" if len(moved) > 3 else ""
    out.append(f"{label} flips " + "; ".join(parts) + more + ".")
    directed = [f for f in moved if f.significant]
    if directed:
        said = [f"{titles[f.measure]} (more {'better → worse' if f.units_worse > f.units_better else 'worse → better'}"
                f" flips: {f.units_worse} vs {f.units_better} units, exact test p = {f.p_value:.2g}, Holm-adjusted "
                f"{f.p_holm:.2g})" for f in directed]
        out.append(f"{label}: the flips lean one way on " + "; ".join(said) + ".")
    for f in moved:
        delta = deltas.get(f.measure)
        share = f.shares["flipped"]
        # only where both are shown: the change has an interval (so "not significant" is a finding) and
        # the flip share's interval lies above zero
        if (delta is None or delta.ci is None or delta.significant or share.value < FLIP_NOTABLE
                or share.ci is None or share.ci[0] <= 0):
            continue
        out.append(f"{label}: {titles[f.measure]} changes by {delta.value:+.1f} points (not significant) while "
                   f"{share.value:.1f}% of its samples flip ({f.shares['worse'].value:.1f}% better → worse, "
                   f"{f.shares['better'].value:.1f}% worse → better): a similar score from different answers, "
                   "which the score alone hides (Dutta et al., 2024).")
    return out
