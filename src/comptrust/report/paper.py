"""The paper's published numbers, and how our variants compare with them.

Source: Hong et al., "Decoding Compressed Trust: Scrutinizing the
Trustworthiness of Efficient LLMs Under Compression", ICML 2024.  The package
carries its own copy (``paper_results.csv`` beside this module, citation in its
header).  Where our base model is one the paper evaluated, our scores sit next
to the paper's; otherwise the paper's *changes* for the same compression
configuration on its models are shown as a reference point.
"""

from __future__ import annotations

import csv
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comptrust.errors import DataError
from comptrust.registry import PAPER_NINE, PERSPECTIVES, ClassAttributes
from comptrust.report.aggregate import AVERAGE, Base, Table, Variant
from comptrust.report.runs import MEASURES

PAPER_CSV = Path(__file__).with_name("paper_results.csv")
CITATION = ('Hong et al., "Decoding Compressed Trust: Scrutinizing the Trustworthiness of Efficient LLMs '
            'Under Compression", ICML 2024')
# Each measure's table header (and the paper CSV's column): its perspective's ``column`` (perspectives/*.py).
COLUMNS = ClassAttributes(PERSPECTIVES, "column", extra={AVERAGE: "Average"})
PAPER_MEASURES = (*PAPER_NINE, AVERAGE)  # the paper table's columns, in its order
_METHODS = {"awq": "awq", "gptq": "gptq", "mag": "magnitude", "magnitude": "magnitude",
            "sparsegpt": "sparsegpt", "wanda": "wanda", "rtn": "rtn"}
_SEED = re.compile(r"_?(?:seed(\d+)|(\d+)seed)$")


@dataclass
class PaperRow:
    base: str
    model: str
    method: str | None
    bits: float | None
    sparsity: float | None
    pattern: str | None
    seed: str | None
    group_size: int | None = None
    scores: dict[str, float] = field(default_factory=dict)
    refusals: dict[str, float] = field(default_factory=dict)

    @property
    def family(self) -> str:
        """The model name without its seed suffix: rows of one configuration trained with several seeds."""
        return _SEED.sub("", self.model)

    def config(self) -> tuple[Any, ...]:
        return (self.method, self.bits, self.sparsity, self.pattern)


def _parse(row: dict[str, str]) -> PaperRow:
    model = row["Model"].split("/", 1)[1] if row["Model"].startswith(("hf/", "openai/")) else row["Model"]
    method = _METHODS.get(row["Method Subtype"].strip().lower()) if row["Compression Method"] != "none" else None
    bits = sparsity = pattern = None
    suffix = model.split("@", 1)[1] if "@" in model else ""
    seed_match = _SEED.search(suffix)
    if row["Compression Method"] == "quantization":
        bits = float(row["Sparsity/bits"])
    elif row["Compression Method"] == "pruning":
        m = re.match(r"(0\.\d+)_(\d+)to(\d+)", suffix)
        if m:
            sparsity, pattern = float(m[1]), f"{m[2]}:{m[3]}"
    group = re.search(r"(\d+)g(?:_|$)", suffix) if bits is not None else None
    scores = {m: float(row[COLUMNS[m]]) for m in PAPER_MEASURES}
    refusals = {m: float(row[f"{COLUMNS[m]} Ref"]) for m in PAPER_MEASURES if f"{COLUMNS[m]} Ref" in row}
    return PaperRow(row["Base Model"], model, method, bits, sparsity, pattern,
                    (seed_match[1] or seed_match[2]) if seed_match else None,
                    int(group[1]) if group else None, scores, refusals)


def load_paper(path: Path = PAPER_CSV) -> list[PaperRow]:
    """Rows of the paper's table (lines starting with ``#`` are the citation header)."""
    try:
        lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln and not ln.startswith("#")]
        return [_parse(r) for r in csv.DictReader(lines)]
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"cannot read the paper's results from {path} ({exc})",
                        "reinstall comptrust; the file ships with the package") from exc


def _norm(name: str) -> set[str]:
    name = name.strip().rstrip("/").lower()
    return {name, name.split("/")[-1]}


def _variant_config(v: Variant) -> tuple[Any, ...]:
    eff = v.efficiency()
    bits = float(eff["bits"]) if eff["bits"] is not None and eff["sparsity"] is None else None
    sparsity = round(float(eff["sparsity"]), 3) if eff["sparsity"] is not None else None
    pattern = eff["pattern"] if eff["pattern"] not in (None, "unstructured", "0:0") else None
    return ((eff["method"] or "").lower() or None, bits, sparsity, pattern)


def _mean_rows(rows: list[PaperRow]) -> dict[str, float]:
    return {m: statistics.fmean(r.scores[m] for r in rows) for m in PAPER_MEASURES}


def _mean_refusals(rows: list[PaperRow]) -> dict[str, float]:
    keys = set.intersection(*(set(r.refusals) for r in rows)) if rows else set()
    return {m: statistics.fmean(r.refusals[m] for r in rows) for m in PAPER_MEASURES if m in keys}


def _differences(v: Variant, rows: list[PaperRow]) -> list[str]:
    """Why our numbers may legitimately differ from this paper row: group size, data, sample counts."""
    notes = []
    groups = {r.group_size for r in rows if r.group_size is not None}
    ours = v.runs[0].group_size
    if groups and isinstance(ours, int) and ours not in groups:
        notes.append(f"group size: ours {ours}, paper {', '.join(str(g) for g in sorted(groups))}")
    kinds = {str((r.summary.data or {}).get("kind")) for r in v.runs if isinstance(r.summary.data, dict)}
    if "smoke" in kinds:
        notes.append("ours on the smoke suite, not the benchmark")
    limits = {(r.summary.options or {}).get("limit") for r in v.runs} - {None}
    if limits:
        notes.append(f"ours on --limit {', '.join(str(x) for x in sorted(limits))} prompts per scenario")
    return notes


def _match(v: Variant, family: str, members: list[PaperRow]) -> dict[str, Any]:
    ours = {m: v.cells[m].mean for m in PAPER_MEASURES}
    paper = _mean_rows(members)
    return {"variant": v.label, "paper_model": family, "n_rows": len(members), "ours": ours, "paper": paper,
            "diff": {m: None if ours[m] is None else ours[m] - paper[m] for m in PAPER_MEASURES},
            "our_refusals": {m: v.refusals[m].mean for m in PAPER_MEASURES if m in v.refusals},
            "paper_refusals": _mean_refusals(members), "notes": _differences(v, members)}


def _families(rows: list[PaperRow]) -> dict[str, list[PaperRow]]:
    out: dict[str, list[PaperRow]] = {}
    for r in rows:
        out.setdefault(r.family, []).append(r)
    return out


def compare_base(base: Base, rows: list[PaperRow]) -> dict[str, Any]:
    """Our rows beside the paper's for one base model (exact match), or the paper's changes for reference."""
    dense_rows = [r for r in rows if r.method is None and _norm(r.model) & _norm(base.name)]
    compressed = [v for v in base.variants if not v.is_dense]
    out: dict[str, Any] = {"base": base.name, "paper_base": dense_rows[0].base if dense_rows else None,
                           "matches": [], "reference": [], "unmatched": []}
    if dense_rows:
        paper_dense = dense_rows[0]
        same_base = [r for r in rows if r.base == paper_dense.base]
        if base.dense:
            out["matches"].append(_match(base.dense, paper_dense.model, [paper_dense]))
        for v in compressed:
            cfg = _variant_config(v)
            found = _families([r for r in same_base if r.config() == cfg])
            for family, members in found.items():
                out["matches"].append(_match(v, family, members))
            if not found:
                out["unmatched"].append(v.label)
        return out
    dense_by_base = {r.base: r for r in rows if r.method is None}
    for v in compressed:
        cfg = _variant_config(v)
        for family, members in _families([r for r in rows if r.config() == cfg]).items():
            dense = dense_by_base.get(members[0].base)
            if dense is None:
                continue
            paper = _mean_rows(members)
            out["reference"].append({"variant": v.label, "paper_base": members[0].base, "paper_model": family,
                                     "n_rows": len(members),
                                     "paper_delta": {m: paper[m] - dense.scores[m] for m in PAPER_MEASURES},
                                     "our_delta": {m: (v.deltas[m].value if m in v.deltas else None)
                                                   for m in PAPER_MEASURES}})
    return out


def compare(table: Table, rows: list[PaperRow] | None = None) -> list[dict[str, Any]]:
    rows = load_paper() if rows is None else rows
    return [compare_base(b, rows) for b in table.bases]


__all__ = ["CITATION", "COLUMNS", "MEASURES", "PaperRow", "compare", "load_paper"]
