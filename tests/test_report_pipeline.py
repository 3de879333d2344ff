"""End to end: real runner + real stereotype perspective on the smoke suite -> report.

Unlike the other report tests, nothing here is fabricated: the run folders are
written by ``comptrust.runner.evaluate`` and the bootstrap re-aggregates with
the real ``StereotypePerspective``.
"""

from __future__ import annotations

import json
from pathlib import Path

from comptrust.backends.scripted import ScriptedBackend
from comptrust.data.source import SmokeSuite
from comptrust.perspectives.base import EvalOptions
from comptrust.report.build import write_report
from comptrust.runner import evaluate


class ModelBackend(ScriptedBackend):
    """A scripted model that reports a model identity (and compression manifest) like HFBackend."""

    def __init__(self, responder, model):
        super().__init__(responder, label=json.dumps(model, sort_keys=True))
        self._model = model

    def info(self):
        return {**super().info(), **self._model}


def run(tmp_path: Path, name: str, responder, model) -> Path:
    out = tmp_path / name
    evaluate(ModelBackend(responder, model), ["stereotype"], SmokeSuite(), EvalOptions(samples=3, seed=0), out)
    return out


def test_report_from_real_runs_of_the_stereotype_perspective(tmp_path):
    dense = run(tmp_path, "dense", lambda row: "I disagree. That is a stereotype.",
                {"name": "tiny", "weights_sha256": "w-dense", "dtype": "torch.float32", "compression": None})
    manifest = {"method": "magnitude", "kind": "pruning", "seed": 0,
                "config": {"method": "magnitude", "sparsity": 0.5, "pattern": "2:4", "seed": 0},
                "base_model": {"name": "tiny", "weights_sha256": "w-dense", "size_bytes": 1000},
                "weights_size_bytes": 1000, "wall_time_s": 0.4}
    # The pruned model agrees with the statement about one group (women and algebra) only.
    pruned = run(tmp_path, "pruned",
                 lambda row: "I agree." if "Women are worse" in row.messages[-1]["content"] else "I disagree.",
                 {"name": "tiny-pruned", "weights_sha256": "w-pruned", "compression": manifest})
    paths = write_report([pruned, dense], tmp_path / "report", n_bootstrap=100, seed=0)
    data = json.loads(paths["json"].read_text())
    dense_row, pruned_row = data["variants"]
    assert dense_row["dense"] and dense_row["label"] == "tiny (dense)"
    assert pruned_row["label"] == "Magnitude 50% 2:4"
    assert dense_row["scores"]["stereotype"]["mean"] == 100.0
    assert dense_row["scores"]["stereotype"]["partial"] is True  # the smoke suite fills few cells
    delta = pruned_row["deltas"]["stereotype"]
    assert delta["delta"] < 0 and delta["ci95"] is not None and delta["paired"] is True
    assert delta["ci95"][0] <= delta["delta"] <= delta["ci95"][1]
    assert data["settings"]["scorers"]["stereotype"]["parser"] == "stereotype@v1"
    assert data["settings"]["profile"] == "comp-trust"
    assert any("smoke suite" in c for c in data["caveats"])
    [drill] = data["drilldown"]["tiny"]
    [section] = drill["perspectives"]
    assert section["perspective"] == "stereotype" and section["samples"]
    for sample in section["samples"]:  # only prompts whose parsed labels changed are shown
        assert sample["compressed"]["responses"]["shown"][0] == "I agree."
        assert "Women are worse" in sample["messages"][-1]["content"]
    html = paths["html"].read_text()
    assert "comp-trust" in html and "stereotype@v1" in html


def test_report_re_aggregates_a_perspective_with_the_scenarios_it_ran_under_its_own_name(tmp_path) -> None:
    """`eval --scenarios mmlu:anatomy,fairness:...`: MMLU's interval needs its own scenarios, unprefixed."""
    from comptrust.registry import get_perspective
    from comptrust.report.bootstrap import eval_options
    from comptrust.report.runs import Run

    summary = {"options": {"limit": 5, "scenarios": ["fairness:zero_shot_br_0.5", "mmlu:anatomy", "mmlu:marketing"]},
               "perspectives": {"fairness": {}, "mmlu": {}}}
    run = Run(path=tmp_path, summary=summary, results={})
    assert eval_options(run, get_perspective("mmlu")).scenarios == ["anatomy", "marketing"]
    assert eval_options(run, get_perspective("fairness")).scenarios == ["zero_shot_br_0.5"]
    assert eval_options(run).scenarios == summary["options"]["scenarios"]
