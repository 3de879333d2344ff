"""Plain-language findings and a recommendation, computed only from the table's numbers.

"Within the dense model's interval" means the 95% bootstrap interval of the
change (compressed - dense) includes zero; a change whose interval excludes
zero is called a drop or a gain.  Without intervals no claim of significance
is made.
"""

from __future__ import annotations

from typing import Any

from comptrust.report.aggregate import AVERAGE, Base, Table, Variant
from comptrust.report.runs import MEASURES

TITLES = {"toxicity": "toxicity", "stereotype": "stereotype bias", "adv_glue": "adversarial robustness "
          "(AdvGLUE++)", "ood": "out-of-distribution robustness", "adv_demonstration": "robustness to "
          "adversarial demonstrations", "privacy": "privacy", "machine_ethics": "machine ethics",
          "fairness": "fairness", "mmlu": "MMLU", AVERAGE: "the average of nine"}

# MMLU "barely moves" below this change (points); a trust drop "matters" from this size on.
MMLU_STILL = 2.0
TRUST_FALL = 5.0
# Seeds disagree noticeably from this standard deviation (points) on.
SEED_SPREAD = 2.0
# Fewer samples than this per perspective make every interval wide.
FEW_SAMPLES = 50


def _fmt_change(v: Variant, dense: Variant, m: str) -> str:
    d = v.deltas[m]
    text = f"{abs(d.value):.1f} points of {TITLES[m]} ({dense.cells[m].mean:.1f} → {v.cells[m].mean:.1f}"
    if d.ci:
        text += f"; 95% CI of the change {d.ci[0]:+.1f} to {d.ci[1]:+.1f}"
    return text + ")"


def _moves(v: Variant, sign: int) -> list[str]:
    """Trust measures (not the average) whose change is significant in direction ``sign``."""
    found = [m for m in MEASURES if m in v.deltas and v.deltas[m].significant
             and v.deltas[m].value * sign > 0]
    return sorted(found, key=lambda m: -abs(v.deltas[m].value))


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def variant_findings(v: Variant, dense: Variant) -> list[str]:
    out: list[str] = []
    compared = [m for m in MEASURES if m in v.deltas]
    with_ci = [m for m in compared if v.deltas[m].ci is not None]
    not_compared = [m for m in MEASURES if m not in v.deltas]
    drops, gains = _moves(v, -1), _moves(v, +1)
    if not compared:
        return [f"{v.label}: nothing to compare with {dense.label} (no measure was scored in both)."]
    if not with_ci:
        biggest = max(compared, key=lambda m: abs(v.deltas[m].value))
        out.append(f"{v.label}: no confidence intervals, so changes cannot be told from noise; the largest "
                   f"change is {v.deltas[biggest].value:+.1f} points of {TITLES[biggest]}.")
    elif not drops and not gains:
        scope = "the one measure" if len(with_ci) == 1 else f"all {len(with_ci)} measures"
        out.append(f"{v.label} stays within the dense model's interval on {scope} compared "
                   "(every 95% interval of the change includes zero).")
    else:
        parts = []
        if drops:
            parts.append("loses " + _join([_fmt_change(v, dense, m) for m in drops]))
        if gains:
            parts.append("gains " + _join([_fmt_change(v, dense, m) for m in gains]))
        steady = len(with_ci) - len(drops) - len(gains)
        tail = f"; the other {steady} measure(s) stay within the interval" if steady else ""
        out.append(f"{v.label} {' and '.join(parts)}{tail}.")
    if not_compared:
        out.append(f"{v.label}: not compared on {', '.join(TITLES[m] for m in not_compared)} "
                   "(missing from this run or from the dense run).")
    mmlu = v.deltas.get("mmlu")
    falls = [m for m in drops if m != "mmlu" and abs(v.deltas[m].value) >= TRUST_FALL]
    if mmlu is not None and abs(mmlu.value) < MMLU_STILL and not mmlu.significant and falls:
        out.append(f"{v.label}: MMLU barely moves ({mmlu.value:+.1f} points) while "
                   f"{_join([f'{TITLES[m]} falls {abs(v.deltas[m].value):.1f}' for m in falls])}: "
                   "benign accuracy alone would hide this loss of trust, the paper's central warning.")
    if len(v.runs) > 1:
        spreads = {m: v.cells[m].std for m in MEASURES if v.cells[m].std is not None}
        if spreads:
            worst = max(spreads, key=lambda m: spreads[m])
            if spreads[worst] >= SEED_SPREAD:
                out.append(f"{v.label}: the {len(v.runs)} calibration seeds disagree most on {TITLES[worst]} "
                           f"(standard deviation {spreads[worst]:.1f} points); one seed is not enough here.")
    return out


def _size_rank(v: Variant) -> tuple[float, float]:
    eff = v.efficiency()
    if eff["size_bytes"] is not None:
        return (0, float(eff["size_bytes"]))
    if eff["bits"] is not None:
        return (1, float(eff["bits"]))
    if eff["sparsity"] is not None:
        return (2, -float(eff["sparsity"]))
    return (3, 0.0)


def recommendation(base: Base) -> str | None:
    dense = base.dense
    compressed = [v for v in base.variants if not v.is_dense and v.deltas]
    if dense is None or not compressed:
        return None
    judged = [v for v in compressed if any(d.ci is not None for m, d in v.deltas.items() if m != AVERAGE)]
    if not judged:
        return (f"No recommendation for {base.name}: without confidence intervals (use --bootstrap > 0 and "
                "keep each run's scores.jsonl) a change cannot be told from noise.")
    safe = [v for v in judged if not _moves(v, -1)]
    coverage = min(sum(1 for m in MEASURES if m in v.deltas) for v in judged)
    scope = "" if coverage == len(MEASURES) else f" (judged on as few as {coverage} of the 9 measures)"
    if safe:
        best = min(safe, key=_size_rank)
        text = (f"Recommendation for {base.name}: {best.label}, the most compressed variant that shows no "
                f"significant drop on any measure compared{scope}.")
        risky = [v for v in judged if v not in safe]
        if risky:
            text += " Avoid " + _join([f"{v.label} (loses {abs(v.deltas[_moves(v, -1)[0]].value):.1f} points "
                                      f"of {TITLES[_moves(v, -1)[0]]})" for v in risky]) + "."
        return text
    least = min(judged, key=lambda v: (-min(v.deltas[m].value for m in _moves(v, -1)), _size_rank(v)))
    worst = _moves(least, -1)[0]
    return (f"No variant of {base.name} keeps every measure within the dense model's interval{scope}. The least "
            f"harmful is {least.label} (worst: {least.deltas[worst].value:+.1f} points of {TITLES[worst]}); "
            f"keep the dense model where {TITLES[worst]} matters.")


def caveats(table: Table) -> list[str]:
    out = []
    if any("smoke" in k.lower() for k in table.settings.get("data") or []):
        out.append("These runs used comptrust's small smoke suite, not the DecodingTrust benchmark: the numbers "
                   "show the pipeline working, not the model's real trustworthiness.")
    small = sorted({m for v in table.variants for r in v.runs for m in MEASURES
                    if (r.result(m) or {}).get("n_samples") and r.result(m)["n_samples"] < FEW_SAMPLES})
    if small:
        out.append(f"Fewer than {FEW_SAMPLES} samples were scored for {', '.join(TITLES[m] for m in small)}; "
                   "intervals there are wide and small changes are not detectable.")
    partial = sorted({m for v in table.variants for m, c in v.cells.items() if c.partial})
    if partial:
        out.append(f"Partial results (some sub-scenarios missing) for {', '.join(TITLES[m] for m in partial)}; "
                   "those scores are marked † and cover only what was run.")
    return out


def findings(table: Table) -> dict[str, Any]:
    """``{"findings": [...], "recommendations": [...], "caveats": [...]}`` as plain sentences."""
    items: list[str] = []
    recs: list[str] = []
    for base in table.bases:
        dense = base.dense
        if dense is None:
            continue
        for v in base.variants:
            if not v.is_dense:
                items.extend(variant_findings(v, dense))
        rec = recommendation(base)
        if rec:
            recs.append(rec)
    return {"findings": items, "recommendations": recs, "caveats": caveats(table) + table.notes}
