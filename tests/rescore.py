"""Re-score a run's stored records as `comptrust score` does (shared by the perspective tests)."""

from __future__ import annotations

import json
from pathlib import Path

from comptrust.perspectives.base import EvalOptions
from comptrust.types import PerspectiveResult


def rescore_run(run_dir: Path, name: str, options: EvalOptions | None = None) -> PerspectiveResult:
    """Rebuild every sample of ``name`` from ``run_dir/name/scores.jsonl`` and score it again."""
    from comptrust.scoring import score_lines

    rows = [json.loads(line) for line in (run_dir / name / "scores.jsonl").read_text().splitlines()]
    assert rows, f"{run_dir / name / 'scores.jsonl'} is empty"
    lines = [{"perspective": name, "scenario": r["sample"]["scenario"], "record": r["sample"]["record"],
              "responses": r["responses"], "metadata": r["sample"]["metadata"]} for r in rows]
    return score_lines(lines, options or EvalOptions())[name]
