"""Decisions with error control: Holm-corrected change marks and the recommendation's non-inferiority test.

A report makes many claims at once.  Six variants x nine measures, each tested at 5%, would show
about two "significant" changes by chance alone, so:

- **Marks (▼/▲, "drops", "gains", "Do not ship ... (drop: ...)")** are claims about single
  changes.  Their family is every score change of the report with an interval (every compressed
  variant of every base model, the nine measures and the Average); the family-wise error rate is
  controlled by Holm's step-down procedure.  Each change's p-value uses its bootstrap standard
  error with the interval's small-sample correction and a t reference (``df`` = units - strata):
  the resamples' own tail frequencies cannot resolve Holm's thresholds (0.05 / 40 needs thousands
  of resamples).  A change is marked only when Holm rejects *and* its 95% interval, shown
  unadjusted, excludes zero, so a mark never sits on an interval that includes zero.
- **The recommendation** claims "variant V keeps trust within m on every measure".  Per measure
  that is a one-sided non-inferiority test, H0: delta <= -m against H1: delta > -m.  "Every
  measure" is an intersection-union test: the claim holds only if every measure's H0 is
  rejected, and each at level alpha already gives level alpha for the claim, so no correction
  across measures is needed (a correction would only cost power).  Choosing the most compressed
  of several variants that pass is a selection across variants, which does need control: the
  variants' intersection-union p-values (each the largest of its measures' p-values) go through
  Holm over the base model's compressed variants, so the chance that any inferior variant is
  declared non-inferior (and so the chance that the recommended one is) stays <= alpha.

``tests/test_report_decisions.py`` calibrates both by simulation (docs/reports.md, "Error control").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from comptrust.registry import get_perspective
from comptrust.report.error_control import ALPHA, holm
from comptrust.report.flips import measure_flips
from comptrust.report.runs import MEASURES

if TYPE_CHECKING:
    from comptrust.report.aggregate import Base, Change, Variant

Z975 = 1.959963984540054
POWER_Z80 = 0.8416212335729143  # the standard normal's 80% quantile


def studentized_se(change: Change) -> float | None:
    """The bootstrap standard error with the small-sample variance correction sqrt(n / (n - h)) only.

    ``Change.se`` is widened by the whole expansion of the 95% interval, ``sqrt(n/df) * t / z``;
    the tests below use a t quantile of their own level, so the 95% factor ``t / z`` comes off.
    """
    from scipy.stats import t

    if change.se is None or change.ci is None or not change.se > 0:
        return None
    if change.df is None:
        return change.se
    return change.se * Z975 / float(t.isf(0.025, change.df))


def _t_sf(x: float, df: int | None) -> float:
    from scipy.stats import norm, t

    return float(norm.sf(x) if df is None else t.sf(x, df))


def _t_isf(level: float, df: int | None) -> float:
    from scipy.stats import norm, t

    return float(norm.isf(level) if df is None else t.isf(level, df))


def _test_df(change: Change) -> int | None:
    return change.test_df if change.test_df is not None else change.df


def change_p_value(change: Change) -> float | None:
    """Two-sided p-value of "no change", ``None`` without an interval (such a change is not tested)."""
    se = studentized_se(change)
    if se is None or change.value is None:
        return None
    return min(1.0, 2 * _t_sf(abs(change.value) / se, _test_df(change)))


def set_test_df(bases: list[Base]) -> None:
    """Degrees of freedom of each measure's tests: Satterthwaite's ``2 D`` for ``D`` units whose verdict
    changed (:mod:`.flips`), when that is fewer than units - strata.

    The standard error of a paired change is estimated from the units that differ; with few of them
    it is itself noisy, and a t reference with units - strata degrees of freedom then rejects too
    often in the far tails Holm's correction uses (1.06% instead of 0.83% at 0.05 / 6 in the null
    simulation of tests/test_report_decisions.py).  For paired differences in {-1, 0, 1}, ``D`` of
    ``n`` non-zero, the variance estimate's Satterthwaite degrees of freedom are about ``2 D``.
    Only where the verdicts carry every change: each sample has one response (a majority of 25 draws
    can stay put while the agreement share moves) and the perspective's verdict is its outcome
    (``verdict_is_outcome``; not toxicity's continuous values).  Elsewhere units - strata stay.
    """
    for base in bases:
        dense = base.dense
        for v in base.compressed():
            for m in MEASURES:
                delta = v.deltas.get(m)
                members = [r for r in v.runs if m in r.results]
                if delta is None or delta.df is None or not members or m not in dense.runs[0].results:
                    continue
                try:
                    if not getattr(get_perspective(m), "verdict_is_outcome", True):
                        continue
                except Exception:  # noqa: BLE001 - an unknown perspective: keep units - strata
                    continue
                if any(len(s.responses) != 1 for r in (dense.runs[0], *members) for s in r.scored(m)):
                    continue
                flips = measure_flips(m, dense.runs[0], members, 0, 0)
                if flips.paired:
                    delta.test_df = min(delta.df, max(1, 2 * (flips.units_worse + flips.units_better)))


def correct_marks(bases: list[Base], alpha: float = ALPHA) -> dict[str, Any]:
    """Holm over every score change with an interval in the report; sets each change's p-values and
    ``adjusted`` decision (which ``Change.significant`` follows).  Returns what the report says."""
    set_test_df(bases)
    family: list[Change] = []
    for base in bases:
        for variant in base.variants:
            for delta in variant.deltas.values():
                delta.p_value = change_p_value(delta)
                if delta.p_value is not None:
                    family.append(delta)
    adjusted, rejected = holm([d.p_value for d in family], alpha)  # type: ignore[misc]
    # the drop a mark detects with 80% power: Holm's first step is Bonferroni's alpha / k, the worst case
    z_corrected = _t_isf(alpha / (2 * len(family)), None) + POWER_Z80 if family else None
    for delta, p_adj, rej in zip(family, adjusted, rejected, strict=True):
        delta.p_adjusted, delta.adjusted = p_adj, rej
        if hasattr(delta, "detectable_corrected") and delta.se is not None:
            delta.detectable_corrected = z_corrected * delta.se
    interval_only = sum(1 for d in family if d.ci[0] > 0 or d.ci[1] < 0)  # type: ignore[index]
    return {"method": "holm", "alpha": alpha, "tests": len(family),
            "family": "every score change vs dense with an interval (all variants, the nine measures and the "
                      "Average)",
            "unadjusted_excluding_zero": interval_only, "marked": sum(1 for d in family if d.significant)}


def marks_sentence(multiplicity: dict[str, Any] | None) -> str | None:
    """One sentence for the report: which correction the ▼/▲ marks follow."""
    if not multiplicity or not multiplicity.get("tests"):
        return None
    k, shown, marked = multiplicity["tests"], multiplicity["unadjusted_excluding_zero"], multiplicity["marked"]
    text = (f"▼/▲ marks are corrected for multiplicity: Holm's procedure over the report's {k} score change(s) "
            f"with an interval keeps the chance of any false mark at {100 * multiplicity['alpha']:g}%. The 95% "
            "intervals are shown unadjusted")
    if shown > marked:
        text += (f"; {shown - marked} of the {shown} change(s) whose interval excludes zero are not marked, being "
                 "not significant after the correction")
    return text + "."


# ---- non-inferiority of the recommendation --------------------------------------------------


@dataclass
class NonInferiority:
    """One variant's intersection-union test that every measure's change exceeds -margin."""

    variant: str
    margin: float
    level: float  # the one-sided level it was tested at (Holm's step for its rank)
    family: int  # compressed variants of the base in the Holm family
    p_value: float  # the largest of its measures' one-sided p-values
    passed: bool
    measures: dict[str, dict[str, Any]] = field(default_factory=dict)

    def failing(self) -> list[str]:
        return [m for m, x in self.measures.items() if not x["shown"]]

    def to_json(self) -> dict[str, Any]:
        return {"margin": self.margin, "level": self.level, "family": self.family, "p_value": self.p_value,
                "passed": self.passed, "correction": f"Holm over {self.family} variant(s); intersection-union "
                                                     "across measures (no correction needed)",
                "measures": self.measures}


def _measure_test(change: Change, margin: float) -> tuple[float, float | None, int | None]:
    """One-sided p-value of H0: delta <= -margin, the studentized standard error and df."""
    se = studentized_se(change)
    if se is None or change.value is None:
        return 1.0, None, None
    return _t_sf((change.value + margin) / se, _test_df(change)), se, _test_df(change)


def noninferiority(base: Base, margin: float, alpha: float = ALPHA) -> dict[str, NonInferiority]:
    """Per compressed variant of ``base`` (by label), its non-inferiority test on every measure it was
    compared on, Holm-corrected over the base's compressed variants."""
    variants: list[Variant] = [v for v in base.variants if not v.is_dense and v.deltas]
    tests: dict[str, dict[str, tuple[float, float | None, int | None]]] = {}
    p_values = []
    for v in variants:
        per = {m: _measure_test(v.deltas[m], margin) for m in MEASURES if m in v.deltas}
        tests[v.label] = per
        p_values.append(max((x[0] for x in per.values()), default=1.0))
    k = len(variants)
    order = sorted(range(k), key=lambda i: p_values[i])
    levels = [alpha] * k
    passed = [False] * k
    going = True
    for rank, i in enumerate(order):
        levels[i] = alpha / (k - rank)
        going = going and p_values[i] <= levels[i]
        passed[i] = going
    out: dict[str, NonInferiority] = {}
    for i, v in enumerate(variants):
        measures: dict[str, dict[str, Any]] = {}
        for m, (p, se, df) in tests[v.label].items():
            lower = None if se is None else v.deltas[m].value - _t_isf(levels[i], df) * se
            measures[m] = {"p_value": p, "lower_bound": lower, "shown": lower is not None and lower > -margin}
        out[v.label] = NonInferiority(v.label, margin, levels[i], k, p_values[i], passed[i], measures)
    return out


def needed_scale(change: Change, margin: float, level: float) -> float | None:
    """By how much the standard error must shrink for this change to be shown above -margin at ``level``
    (square-root law: the prompts needed grow by its square); ``None`` when the estimate itself
    reaches the margin (more data would then show a drop, not non-inferiority)."""
    se = studentized_se(change)
    if se is None or change.value is None or change.value <= -margin:
        return None
    target = (change.value + margin) / _t_isf(level, _test_df(change))
    return se / target if target > 0 else None
