"""Re-score responses without a model (``comptrust score``).

Input lines: ``{"perspective", "scenario", "record", "responses"[, "metadata"]}``
where ``record`` is the raw benchmark record.  This is how users re-score after a
parser fix, or score outputs produced by another tool.

Input is untrusted: every line is checked where it is read, and a malformed one is
a :class:`DataError` naming ``file:line`` and the field, never a traceback.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from comptrust.data import records as R
from comptrust.errors import ComptrustError, DataError
from comptrust.perspectives.base import EvalOptions, check_profile
from comptrust.registry import PERSPECTIVES, get_perspective
from comptrust.runner import score_samples
from comptrust.store.cache import Cache
from comptrust.types import PerspectiveResult

REQUIRED = ("perspective", "scenario", "record", "responses")
LINE_FIX = "fix that line (records are what comptrust writes to <run>/<perspective>/scores.jsonl)"
WHERE = "_where"  # where a line came from ("file:line"); set by read_response_lines, not by users


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
            with R.located(f"{path}:{lineno}", LINE_FIX):
                check_line(item)
            lines.append({**item, WHERE: f"{path}:{lineno}"})
    return lines


def check_line(item: dict[str, Any]) -> None:
    """The line's own fields, typed; the record is checked by its perspective."""
    name = R.text(item, "perspective")
    if name not in PERSPECTIVES:
        raise R.RecordError(f"field 'perspective' names no perspective ({name!r})",
                            f"use one of: {', '.join(PERSPECTIVES)}")
    R.text(item, "scenario")
    responses = R.get(item, "responses")
    if not isinstance(responses, list) or not all(isinstance(r, str) for r in responses):
        raise R.RecordError(f"field 'responses' must be a list of strings, got {R.describe(responses)}")
    if "metadata" in item and item["metadata"] is not None:
        R.mapping(item, "metadata")


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
    for number, item in enumerate(lines, 1):
        where = str(item.get(WHERE, f"input line {number}"))
        with R.located(where, LINE_FIX):
            check_line(item)
        grouped[item["perspective"]].append({**item, WHERE: where})
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
            with _at_line(item[WHERE], name):
                sample = perspective.sample_from_record(scenario, item["record"], index, options)
            if item.get("metadata"):
                sample.metadata.update(item["metadata"])
            samples.append(sample)
            responses.append(item["responses"])
        with _at_line(f"{items[0][WHERE].rsplit(':', 1)[0]} ({name} lines)", name):
            scored = score_samples(perspective, samples, responses, options.profile)
            results[name] = perspective.aggregate(scored, options.profile, options)
    return results


@contextmanager
def _at_line(where: str, perspective: str) -> Iterator[None]:
    """Any problem with one input becomes a one-line error naming where it came from.

    The perspectives check the fields they need; this also catches what slips past them
    (a wrong type deep inside a record or its metadata), so imported data never ends in a traceback.
    """
    try:
        yield
    except R.RecordError as exc:
        raise exc.at(where, exc.fix or LINE_FIX) from None
    except ComptrustError as exc:
        raise type(exc)(f"{where}: {exc.problem}", exc.fix) from exc
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise DataError(f"{where}: the {perspective} record or metadata is malformed ({type(exc).__name__}: {exc})",
                        LINE_FIX) from exc
