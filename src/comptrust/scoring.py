"""Re-score responses without a model (``comptrust score``).

Input lines: ``{"perspective", "scenario", "record", "responses"[, "metadata"]}``
where ``record`` is the raw benchmark record.  This is how users re-score after a
parser fix, or score outputs produced by another tool.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from comptrust.errors import DataError
from comptrust.perspectives.base import EvalOptions, check_profile
from comptrust.registry import get_perspective
from comptrust.runner import score_samples
from comptrust.store import Cache
from comptrust.types import PerspectiveResult

REQUIRED = ("perspective", "scenario", "record", "responses")


def read_response_lines(path: Path) -> list[dict[str, Any]]:
    """Parse and validate the JSONL input; errors name the file, line and fix."""
    if not path.is_file():
        raise DataError(f"responses file {path} does not exist", "pass an existing JSONL file with --responses")
    lines = []
    with path.open(encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                item = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno} is not valid JSON ({exc.msg})",
                                "write one JSON object per line") from exc
            missing = [k for k in REQUIRED if k not in item] if isinstance(item, dict) else list(REQUIRED)
            if missing:
                raise DataError(f"{path}:{lineno} lacks {', '.join(missing)}",
                                'each line needs {"perspective", "scenario", "record", "responses"}')
            if not isinstance(item["responses"], list) or not all(isinstance(r, str) for r in item["responses"]):
                raise DataError(f"{path}:{lineno}: responses must be a list of strings", "fix that line")
            lines.append(item)
    return lines


def score_lines(lines: list[dict[str, Any]], options: EvalOptions,
                cache: Cache | None = None) -> dict[str, PerspectiveResult]:
    """Group lines by perspective, rebuild each sample from its record, score and aggregate.

    External scores (e.g. Perspective API) go through the shared cache, so
    re-scoring the same texts costs no quota.
    """
    check_profile(options.profile)
    own_cache = cache is None
    cache = cache or Cache()
    try:
        return _score_grouped(lines, options, cache)
    finally:
        if own_cache:
            cache.close()


def _score_grouped(lines: list[dict[str, Any]], options: EvalOptions, cache: Cache) -> dict[str, PerspectiveResult]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in lines:
        grouped[item["perspective"]].append(item)
    results: dict[str, PerspectiveResult] = {}
    for name, items in grouped.items():
        perspective = get_perspective(name)
        perspective.prepare(options, cache)
        counters: dict[str, int] = defaultdict(int)
        samples, responses = [], []
        for item in items:
            scenario = item["scenario"]
            index = counters[scenario]
            counters[scenario] += 1
            sample = perspective.sample_from_record(scenario, item["record"], index, options)
            if item.get("metadata"):
                sample.metadata.update(item["metadata"])
            samples.append(sample)
            responses.append(item["responses"])
        scored = score_samples(perspective, samples, responses, options.profile)
        results[name] = perspective.aggregate(scored, options.profile, options)
    return results
