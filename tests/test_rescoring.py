"""`comptrust score` semantics for every perspective: re-scoring stored records rebuilds the run's numbers."""

from __future__ import annotations

import json

import pytest

from comptrust.backends.scripted import ScriptedBackend
from comptrust.data.source import SmokeSuite
from comptrust.perspectives.base import EvalOptions
from comptrust.registry import PERSPECTIVES
from rescore import rescore_run

GENERATING = [name for name in PERSPECTIVES if name != "mmlu"]


@pytest.mark.parametrize("name", GENERATING)
def test_comptrust_score_rebuilds_the_run_from_scores_jsonl(name, tmp_path):
    """Every generating perspective, on the smoke suite, with one scripted set of replies."""
    from comptrust.runner import evaluate

    backend = ScriptedBackend(["positive", "1", "no", "I cannot answer", "maybe", "I agree.", "Yes"])
    summary = evaluate(backend, [name], SmokeSuite(), EvalOptions(), run_dir=tmp_path / "run")
    rescored = rescore_run(tmp_path / "run", name)
    original = summary["perspectives"][name]
    assert rescored.score == pytest.approx(original["score"])
    assert rescored.refusal_rate == pytest.approx(original["refusal_rate"])
    assert json.loads(json.dumps(rescored.metrics)) == original["metrics"]
