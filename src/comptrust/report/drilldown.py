"""Drill-down: the samples that flipped, then those whose outcome changed most, dense vs compressed.

A score is an average; the reader wants to see *why* it moved.  For each
perspective we pair samples by id and rank them by how much their parsed
outcome changed.  A perspective may define ``outcome_change(a, b) -> float``;
otherwise a generic distance over the outcome's fields is used.
"""

from __future__ import annotations

import json
from typing import Any

from comptrust.registry import get_perspective
from comptrust.report.aggregate import Base, Variant
from comptrust.report.flips import flip_kind, flip_label
from comptrust.report.runs import MEASURES, Run

MAX_TEXT = 700  # characters of one message or response shown
MAX_RESPONSES = 3


def _leaf_change(a: Any, b: Any) -> float:
    """0 (same) .. 1 (completely different) for two outcome values."""
    if isinstance(a, bool) or isinstance(b, bool):
        return 0.0 if a == b else 1.0
    if isinstance(a, int | float) and isinstance(b, int | float):
        scale = max(abs(a), abs(b), 1.0)
        return min(abs(a - b) / scale, 1.0)
    if isinstance(a, dict) and isinstance(b, dict):
        return outcome_change(a, b)
    if isinstance(a, list) and isinstance(b, list):
        if not a and not b:
            return 0.0
        if len(a) != len(b):
            return 1.0
        return sum(_leaf_change(x, y) for x, y in zip(a, b, strict=True)) / len(a)
    return 0.0 if a == b else 1.0


def outcome_change(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Mean change over the union of an outcome's fields (a field present on one side only counts 1)."""
    keys = set(a) | set(b)
    if not keys:
        return 0.0
    return sum(_leaf_change(a.get(k), b.get(k)) if k in a and k in b else 1.0 for k in keys) / len(keys)


def _clip(text: Any, limit: int = MAX_TEXT) -> str:
    text = text if isinstance(text, str) else json.dumps(text, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + f" … [{len(text) - limit} more characters]"


def _responses(responses: list[str]) -> dict[str, Any]:
    return {"shown": [_clip(r) for r in responses[:MAX_RESPONSES]],
            "more": max(0, len(responses) - MAX_RESPONSES)}


def _change_fn(name: str) -> Any:
    try:
        hook = getattr(get_perspective(name), "outcome_change", None)
    except Exception:  # an unknown perspective still gets the generic distance  # noqa: BLE001
        hook = None
    return hook if callable(hook) else outcome_change


def _verdict_fn(name: str) -> Any:
    """The perspective's ``item_verdict`` (``None`` for an unknown perspective)."""
    try:
        hook = getattr(get_perspective(name), "item_verdict", None)
    except Exception:  # noqa: BLE001
        hook = None
    return hook if callable(hook) else None


def changed_samples(dense: Run, compressed: Run, name: str, top: int = 3) -> list[dict[str, Any]]:
    """The ``top`` samples of perspective ``name`` whose outcome changed most (unchanged ones never).

    Flipped samples (their verdict changed: better -> worse, answer -> refusal, ...; :mod:`.flips`)
    come first, better -> worse before the others, each labelled; then other changed outcomes.
    """
    dense_by_id = {s.sample.id: s for s in dense.scored(name)}
    if not dense_by_id:
        return []
    change = _change_fn(name)
    judge = _verdict_fn(name)
    ranked = []
    for item in compressed.scored(name):
        other = dense_by_id.get(item.sample.id)
        if other is None:
            continue
        amount = float(change(other.outcome, item.outcome))
        kind = None
        if judge is not None:
            try:
                kind = flip_kind(judge(other, dense.profile or "comp-trust"),
                                 judge(item, compressed.profile or "comp-trust"))
            except Exception:  # a malformed stored outcome: ranked by its outcome change only  # noqa: BLE001
                kind = None
        label = flip_label(kind)
        if amount > 0 or label:
            rank = 0 if kind and kind["worse"] else 1 if label else 2
            ranked.append((rank, amount, item.sample.id, other, item, label))
    ranked.sort(key=lambda t: (t[0], -t[1], t[2]))
    out = []
    for _rank, amount, sample_id, before, after, label in ranked[:top]:
        out.append({"id": sample_id, "scenario": after.sample.scenario, "change": round(amount, 3), "flip": label,
                    "messages": [{"role": m.get("role", "?"), "content": _clip(m.get("content", ""))}
                                 for m in after.sample.messages],
                    "target": _clip(after.sample.target) if after.sample.target is not None else None,
                    "dense": {"responses": _responses(before.responses),
                              "outcome": _clip(before.outcome, 1500)},
                    "compressed": {"responses": _responses(after.responses),
                                   "outcome": _clip(after.outcome, 1500)}})
    return out


def drilldown(base: Base, top: int = 3) -> list[dict[str, Any]]:
    """Per compressed variant (its first run) and perspective, the most changed samples vs the dense run."""
    dense: Variant | None = base.dense
    if dense is None:
        return []
    out = []
    for v in base.compressed():
        sections = []
        for name in MEASURES:
            if name in v.runs[0].results and name in dense.runs[0].results:
                samples = changed_samples(dense.runs[0], v.runs[0], name, top)
                if samples:
                    sections.append({"perspective": name, "samples": samples})
        out.append({"variant": v.label, "dense": dense.label, "run": str(v.runs[0].path),
                    "perspectives": sections})
    return out
