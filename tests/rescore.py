"""Score records as `comptrust score` does: one record with given responses, or a run's stored records
(shared by the perspective tests)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from comptrust.perspectives.base import EvalOptions, Perspective
from comptrust.types import PerspectiveResult, ScoredSample


def score_record(perspective: Perspective, scenario: str, record: Any, responses: list[str], index: int = 0,
                 options: EvalOptions | None = None, metadata: dict[str, Any] | None = None,
                 profile: str = "comp-trust") -> ScoredSample:
    """``record``'s prompt (``sample_from_record``) answered with ``responses`` and parsed by ``score``;
    ``metadata`` is added to the sample first (what the runner records, e.g. fairness's ``n_planned``)."""
    sample = perspective.sample_from_record(scenario, record, index, options or EvalOptions())
    sample.metadata.update(metadata or {})
    return ScoredSample(sample, responses, perspective.score(sample, responses, profile))


def rescore_run(run_dir: Path, name: str, options: EvalOptions | None = None) -> PerspectiveResult:
    """Rebuild every sample of ``name`` from ``run_dir/name/scores.jsonl`` and score it again."""
    from comptrust.scoring import score_lines

    rows = [json.loads(line) for line in (run_dir / name / "scores.jsonl").read_text().splitlines()]
    assert rows, f"{run_dir / name / 'scores.jsonl'} is empty"
    lines = [{"perspective": name, "scenario": r["sample"]["scenario"], "record": r["sample"]["record"],
              "responses": r["responses"], "metadata": r["sample"]["metadata"]} for r in rows]
    return score_lines(lines, options or EvalOptions())[name]
