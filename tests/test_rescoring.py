"""`comptrust score` semantics for every perspective: re-scoring stored records rebuilds the run's numbers."""

from __future__ import annotations

import json

import pytest

from comptrust.backends.scripted import ScriptedBackend
from comptrust.data.source import SmokeSuite
from comptrust.perspectives.base import EvalOptions
from comptrust.registry import PERSPECTIVES

GENERATING = [name for name in PERSPECTIVES if name != "mmlu"]


@pytest.mark.parametrize("name", GENERATING)
def test_comptrust_score_rebuilds_the_run_from_scores_jsonl(name, tmp_path):
    """Every generating perspective, on the smoke suite, with one scripted set of replies."""
    from comptrust.runner import evaluate
    from comptrust.scoring import score_lines

    backend = ScriptedBackend(["positive", "1", "no", "I cannot answer", "maybe", "I agree.", "Yes"])
    summary = evaluate(backend, [name], SmokeSuite(), EvalOptions(), run_dir=tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / name / "scores.jsonl").read_text().splitlines()]
    assert rows
    lines = [{"perspective": name, "scenario": r["sample"]["scenario"], "record": r["sample"]["record"],
              "responses": r["responses"], "metadata": r["sample"]["metadata"]} for r in rows]
    rescored = score_lines(lines, EvalOptions())[name]
    original = summary["perspectives"][name]
    assert rescored.score == pytest.approx(original["score"])
    assert rescored.refusal_rate == pytest.approx(original["refusal_rate"])
    assert json.loads(json.dumps(rescored.metrics)) == original["metrics"]
