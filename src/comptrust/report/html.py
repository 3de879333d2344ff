"""Rendering: the table, findings and drill-down as one self-contained HTML page and as Markdown.

Model outputs and benchmark data are untrusted text.  The HTML environment
autoescapes everything (``autoescape=True``), the page carries a Content
Security Policy that forbids scripts outright, and the page has no JavaScript,
so even a rendering mistake could not run planted code.  The Markdown report
puts untrusted text in code fences longer than any backtick run inside it.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from comptrust.report.aggregate import AVERAGE, Cell, Change, Delta, Table, Variant
from comptrust.report.findings import TITLES
from comptrust.report.health import KINDS
from comptrust.report.paper import CITATION, COLUMNS, PAPER_MEASURES
from comptrust.report.runs import MEASURES

TEMPLATES = Path(__file__).with_name("templates")
MISSING = "—"


def _short(reason: str | None) -> str:
    """The first clause of a no-interval reason ("n too small", "no variation", ...)."""
    return (reason or "no interval").split(":")[0].split(";")[0]


def fmt_cell(cell: Cell | None, digits: int = 1) -> dict[str, Any]:
    """``{"text", "missing", "title"}`` for a score cell; missing stays missing, never 0."""
    if cell is None or cell.mean is None:
        return {"text": MISSING, "missing": True, "title": "missing: not scored in this run"}
    text = f"{cell.mean:.{digits}f}" if cell.std is None else f"{cell.mean:.{digits}f} ± {cell.std:.{digits}f}"
    notes = []
    if len(cell.values) < cell.n_runs:
        text += f" ({len(cell.values)}/{cell.n_runs})"
        notes.append(f"only {len(cell.values)} of {cell.n_runs} runs have this score")
    if cell.partial:
        text += " †"
        notes.append("partial: missing " + (", ".join(cell.missing) or "some parts"))
    if cell.ci:
        notes.append(f"95% CI {cell.ci[0]:.1f} to {cell.ci[1]:.1f}")
    elif cell.reason:
        notes.append(f"no interval: {cell.reason}")
    return {"text": text, "missing": False, "title": "; ".join(notes)}


def fmt_change(change: Change | None, unit: str = "") -> dict[str, Any]:
    """A refusal / answered-only / health change: value and interval (or why none) in one line."""
    if change is None or change.value is None:
        return {"text": MISSING, "missing": True, "cls": "missing", "title": "not compared"}
    mark = ""
    cls = "flat"
    if change.significant:
        mark = " ▲" if change.value > 0 else " ▼"
        cls = "moved"
    ci = f" [{change.ci[0]:+.1f}, {change.ci[1]:+.1f}]" if change.ci else f" ({_short(change.reason)})"
    return {"text": f"{change.value:+.1f}{unit}{mark}{ci}", "missing": False, "cls": cls,
            "title": change.reason or ("95% CI excludes 0" if change.significant else "95% CI includes 0")}


def fmt_delta(delta: Delta | None) -> dict[str, Any]:
    """``text`` (one line, for Markdown) and ``main`` + ``ci`` (two lines, for HTML) of a change.

    A significant change explained by refusals is marked ``(refusals)`` and coloured apart, never
    shown as a plain gain or drop; a change without an interval says why (``n too small``, ``no
    variation``, ...).
    """
    if delta is None:
        return {"text": MISSING, "main": MISSING, "ci": "", "missing": True, "cls": "missing",
                "title": "not compared"}
    main = f"{delta.value:+.1f}"
    if delta.std is not None:
        main += f" ± {delta.std:.1f}"
    cls = "flat" if delta.ci else "nointerval"
    if delta.refusal_driven:
        cls, main = "refusal", main + (" ▼" if delta.value < 0 else " ▲") * bool(delta.significant) + " refusals"
    elif delta.significant:
        cls, main = ("drop" if delta.value < 0 else "gain"), main + (" ▼" if delta.value < 0 else " ▲")
    if delta.within_noise_floor:
        main += " ≈"
    ci = f"[{delta.ci[0]:+.1f}, {delta.ci[1]:+.1f}]" if delta.ci else _short(delta.reason)
    excludes_zero = delta.ci is not None and (delta.ci[0] > 0 or delta.ci[1] < 0)
    notes = [delta.reason or ("95% CI excludes 0" if excludes_zero else "95% CI includes 0")]
    if delta.noise is not None and delta.noise.value is not None:
        notes.append(("inside" if delta.within_noise_floor else "outside")
                     + f" the noise floor: rerunning the dense model moved it {delta.noise.value:+.1f}")
    if delta.refusal_driven:
        notes.append("explained by refusals: " + delta.refusal_driven)
    if delta.p_value is not None:
        notes.append(f"p = {delta.p_value:.2g}, Holm-adjusted {delta.p_adjusted:.2g}"
                     + ("; not significant after the correction" if excludes_zero and not delta.significant else ""))
    if delta.detectable is not None:
        notes.append(f"detects drops of {delta.detectable:.1f}+ points with 80% power"
                     + (f" ({delta.detectable_corrected:.1f}+ for a mark after Holm's correction)"
                        if delta.detectable_corrected is not None else ""))
    if delta.paired is False:
        notes.append("unpaired bootstrap (runs scored different samples)")
    return {"text": f"{main} {ci}".strip(), "main": main, "ci": ci, "missing": False, "cls": cls,
            "title": "; ".join(notes)}


def fmt_size(n: float | None) -> str:
    if n is None:
        return MISSING
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return MISSING


def _num(value: float | None, digits: int = 1) -> str:
    return MISSING if value is None else f"{value:.{digits}f}"


def _fmt_eff(v: Variant) -> dict[str, str]:
    e = v.efficiency()
    shape = []
    if e["bits"] is not None:
        stored = e["stored_bits"]
        # GPTQ 4-bit g64 stores 4.5 bits per weight; a GGUF Q4_K_M of SmolLM2 5.5 (fallback tensors)
        shape.append(f"{e['bits']:g} bits" + (f" ({stored:.2f} stored)" if stored and abs(stored - e["bits"]) >= 0.05
                                               else ""))
    if e["activation_bits"]:
        shape.append(f"A{e['activation_bits']}")
    if e["kv_cache"]:
        shape.append(f"KV {e['kv_cache']}")
    if e["sparsity"] is not None:
        shape.append(f"{e['sparsity'] * 100:g}% sparse" + (f" ({e['pattern']})" if e["pattern"] else ""))
    per_completion = e["completions_per_s"]
    return {"method": str(e["method"] or MISSING), "shape": ", ".join(shape) or MISSING,
            "size": fmt_size(e["size_bytes"]),
            "time": MISSING if e["compression_s"] is None else f"{e['compression_s']:.1f} s",
            "cps": _num(per_completion, 2), "tps": _num(e["tokens_per_s"]),
            "spc": MISSING if not per_completion else f"{1 / per_completion:.2f} s",
            "tpc": _num(e["tokens_per_completion"])}


def _fmt_health(v: Variant) -> dict[str, Any]:
    overall = v.overall_health()
    share = overall.share()
    return {"overall": _num(share), "responses": overall.responses,
            "kinds": {k: _num(overall.share(k)) for k in KINDS},
            "per_measure": [_num(v.health[m].share()) if m in v.health else MISSING for m in MEASURES],
            "example": next(iter(overall.examples.values()), None)}


def _part(v: Variant, measure: str, part: str) -> Change | None:
    delta = v.deltas.get(measure)
    return None if delta is None else getattr(delta, part)


def _scorer_text(info: Any) -> str:
    if isinstance(info, dict):
        return ", ".join(f"{k}: {v}" for k, v in sorted(info.items()))
    return MISSING if info is None else str(info)


def _b64(png: bytes | None) -> str | None:
    return None if png is None else "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _fmt_share(flips: Any, kind: str) -> dict[str, Any]:
    """One flip share: ``{"text", "title", "cls"}``; missing where there are no flips to show."""
    if flips is None:
        return {"text": MISSING, "title": "not compared", "cls": "missing"}
    if kind not in flips.shares:
        return {"text": MISSING, "title": flips.reason or "no flips", "cls": "missing"}
    share = flips.shares[kind]
    ci = f" [{share.ci[0]:.1f}, {share.ci[1]:.1f}]" if share.ci else ""
    count = flips.counts.get(kind, 0)
    title = f"{count} of {flips.paired} samples judged on both sides"
    if flips.runs > 1:
        title += f" (over {flips.runs} runs)"
    title += "; " + (f"95% CI {share.ci[0]:.1f} to {share.ci[1]:.1f}" if share.ci else
                     f"no interval: {share.reason or 'none'}") + f"; verdict: {flips.basis}"
    return {"text": f"{share.value:.1f}{ci}", "title": title, "cls": "moved" if count else "flat"}


def _fmt_flip_test(flips: Any) -> dict[str, Any]:
    if flips is None or flips.p_value is None:
        why = "not compared" if flips is None else (flips.reason or "no discordant units: nothing to test")
        return {"text": MISSING, "title": why, "cls": "missing"}
    lean = "▼" if flips.units_worse > flips.units_better else "▲"
    mark = f" {lean}" if flips.significant else ""
    text = f"p {flips.p_value:.2g} (Holm {flips.p_holm:.2g}){mark}"
    title = (f"exact McNemar / sign test on units: {flips.units_worse} unit(s) mostly better → worse, "
             f"{flips.units_better} mostly worse → better; Holm-adjusted over the report's flip tests")
    if flips.refusal_p_value is not None:
        title += f"; refusal direction: p {flips.refusal_p_value:.2g} (Holm {flips.refusal_p_holm:.2g})"
    cls = ("drop" if lean == "▼" else "gain") if flips.significant else "flat"
    return {"text": text, "title": title, "cls": cls}


FLIP_ROWS = (("flipped", "flipped"), ("worse", "better → worse"), ("better", "worse → better"),
             ("to_refusal", "answer → refusal"), ("from_refusal", "refusal → answer"))


def _mark_within(cell: dict[str, Any], within: bool | None) -> dict[str, Any]:
    if within:
        return {**cell, "text": cell["text"] + " ≈", "title": cell["title"] + "; no more than the noise floor's"}
    return cell


def flip_rows(section: dict[str, Any] | None, base: str) -> list[dict[str, Any]]:
    """Per compressed variant of ``base``: one row per flip kind and one for the exact test, across MEASURES;
    then the noise floor's flips (dense vs its rerun), where there is one."""
    out = []
    for row in (section or {}).get("bases", {}).get(base, []):
        measures, within = row["measures"], row.get("within_noise") or {}
        lines = [{"kind": title, "cells": [_fmt_share(measures.get(m), kind) for m in MEASURES]}
                 for kind, title in FLIP_ROWS]
        lines[0]["cells"] = [_mark_within(c, within.get(m)) for c, m in zip(lines[0]["cells"], MEASURES, strict=True)]
        lines.append({"kind": "exact test", "cells": [_fmt_flip_test(measures.get(m)) for m in MEASURES]})
        out.append({"label": row["variant"], "lines": lines})
    floor = (section or {}).get("noise", {}).get(base)
    if floor is not None and out:
        out.append({"label": f"noise floor: {floor['label']}", "noise": True,
                    "lines": [{"kind": title, "cells": [_fmt_share(floor["measures"].get(m), kind) for m in MEASURES]}
                              for kind, title in FLIP_ROWS]})
    return out


def noise_rows(base: Any) -> list[dict[str, Any]]:
    """The deltas table's last row: dense vs its noise-floor rerun (empty without one)."""
    if base.noise is None or base.dense is None or len(base.variants) < 2:
        return []
    return [{"label": f"noise floor: {base.noise.label}", "noise": True,
             "cells": [{**c, "main": c["text"], "ci": ""}
                       for c in (fmt_change(base.noise.changes.get(m)) for m in (*MEASURES, AVERAGE))]}]


def build_context(table: Table, found: dict[str, Any], paper: list[dict[str, Any]],
                  drill: dict[str, list[dict[str, Any]]], figures: dict[str, dict[str, Any]],
                  flips: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything the templates show, already formatted (templates only lay it out)."""
    columns = [{"id": m, "title": COLUMNS[m]} for m in (*MEASURES, AVERAGE)]
    bases = []
    for i, base in enumerate(table.bases):
        figs = figures.get(base.name, {})
        compressed = base.compressed()
        verdicts = {x["variant"]: x for x in found.get("verdicts", []) if x.get("base") == base.name}
        bases.append({
            "name": base.name, "anchor": f"base-{i}",
            "rows": [{"label": v.label, "dense": v.is_dense, "runs": [r.path.name for r in v.runs],
                      "cells": [fmt_cell(v.cells.get(m)) for m in (*MEASURES, AVERAGE)],
                      "refusals": [fmt_cell(v.refusals.get(m)) for m in MEASURES],
                      "answered": [fmt_cell(v.answered.get(m)) for m in MEASURES],
                      "health": _fmt_health(v), "eff": _fmt_eff(v)} for v in base.variants],
            "deltas": [{"label": v.label, "cells": [fmt_delta(v.deltas.get(m)) for m in (*MEASURES, AVERAGE)]}
                       for v in compressed] + noise_rows(base),
            "noise": base.noise.label if base.noise is not None else None,
            "refusal_deltas": [{"label": v.label, "cells": [fmt_change(_part(v, m, "refusal")) for m in MEASURES]}
                               for v in compressed],
            "answered_deltas": [{"label": v.label,
                                 "cells": [fmt_change(_part(v, m, "answered")) for m in MEASURES]}
                                for v in compressed],
            "verdicts": [verdicts[v.label] for v in compressed if v.label in verdicts],
            "flips": flip_rows(flips, base.name),
            "radars": [{"label": f["label"], "src": _b64(f["png"]), "file": f.get("file")}
                       for f in figs.get("radars", [])],
            "bars": ({"src": _b64(figs["bars"]["png"]), "file": figs["bars"].get("file")}
                     if figs.get("bars") else None),
            "drill": [{**d, "perspectives": [{**p, "title": TITLES[p["perspective"]]} for p in d["perspectives"]]}
                      for d in drill.get(base.name, [])],
            "paper": paper[i] if i < len(paper) else None,
        })
    settings = table.settings
    return {
        "title": "comptrust report: compressed vs dense",
        "profile": settings.get("profile") or MISSING,
        "scorers": [{"perspective": COLUMNS.get(p, p), "scorer": _scorer_text(s)}
                    for p, s in settings.get("scorers", {}).items()],
        "data": ", ".join(settings.get("data") or []) or MISSING,
        "bootstrap": settings.get("bootstrap_resamples"), "seed": settings.get("bootstrap_seed"),
        "columns": columns, "refusal_columns": columns[:len(MEASURES)], "bases": bases,
        "paper_columns": [{"id": m, "title": COLUMNS[m]} for m in PAPER_MEASURES],
        "detectable_drop": found.get("detectable_drop"), "kinds": list(KINDS),
        "min_units": settings.get("min_units_per_stratum"),
        "findings": found["findings"], "recommendations": found["recommendations"], "caveats": found["caveats"],
        "error_control": found.get("error_control", []),
        "citation": CITATION, "missing": MISSING,
    }


# ---- environments ---------------------------------------------------------------------------


def html_env() -> Environment:
    """Autoescape ON for every template: nothing in a report is trusted markup."""
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = lambda x: MISSING if x is None else f"{x:.1f}"
    env.filters["signed"] = lambda x: MISSING if x is None else f"{x:+.1f}"
    return env


def md_cell(text: Any) -> str:
    """Text safe inside a Markdown table cell (no pipes, no newlines, no raw HTML)."""
    text = MISSING if text is None else str(text)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"\s+", " ", text.replace("|", "\\|")).strip()


def md_fence(text: Any) -> str:
    """A fenced code block that no backtick run inside ``text`` can close."""
    text = text if isinstance(text, str) else json.dumps(text, ensure_ascii=False)
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def md_env() -> Environment:
    # Markdown is not HTML: escaping is done explicitly by the md_cell / md_fence filters.
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=False,  # noqa: S701
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["cell"] = md_cell
    env.filters["fence"] = md_fence
    env.filters["num"] = lambda x: MISSING if x is None else f"{x:.1f}"
    env.filters["signed"] = lambda x: MISSING if x is None else f"{x:+.1f}"
    return env


def render_html(context: dict[str, Any]) -> str:
    return html_env().get_template("report.html.j2").render(**context)


def render_markdown(context: dict[str, Any]) -> str:
    return md_env().get_template("report.md.j2").render(**context)
