"""Issue 11's study, cheaper: SmolLM2 dense vs two broken compressions on real DecodingTrust data, then
``comptrust report`` (slow: real model, real data).  The report must not recommend a broken variant,
must label refusal-driven changes, and must never show a zero-width or interval-less "significant" mark.

The full six-run study is ``benchmarks/study_smollm2.sh`` (docs/benchmarks.md has its outcome).
"""

from __future__ import annotations

import json

import pytest

from comptrust.cli import main
from conftest import DT_DATA, MMLU_DATA
from test_demo import assert_honest_intervals

MMLU_SUBJECTS = "abstract_algebra,anatomy,astronomy,college_biology,high_school_geography,marketing"


@pytest.mark.slow
def test_study_report_recommends_no_broken_variant_and_labels_refusals(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COMPTRUST_MMLU_DATA", str(MMLU_DATA))
    variants = {"mag50": ["--method", "magnitude", "--sparsity", "0.5"],
                "rtn3": ["--method", "rtn", "--bits", "3", "--group-size", "auto"]}
    for name, args in variants.items():
        assert main(["compress", "smollm2-135m-instruct", *args, "--out", str(tmp_path / name), "--quiet"]) == 0
    common = ["--perspectives", "machine_ethics,fairness", "--benign", "mmlu", "--data-dir", str(DT_DATA),
              "--limit", "5", "--max-new-tokens", "16", "--quiet",
              "--scenarios", ",".join(["machine_ethics:zero_shot", "machine_ethics:jailbreak_1",
                                       *[f"fairness:{s}" for s in ("zero_shot_br_0.5", "zero_shot_br_0.0",
                                                                    "crime_br_0.5", "crime_br_0.0")],
                                       *[f"mmlu:{s}" for s in MMLU_SUBJECTS.split(",")]])]
    runs = [tmp_path / "runs" / n for n in ("dense", *variants)]
    assert main(["eval", "smollm2-135m-instruct", *common, "--out", str(runs[0])]) == 0
    for name in variants:
        assert main(["eval", str(tmp_path / name), *common, "--out", str(tmp_path / "runs" / name)]) == 0
    capsys.readouterr()
    assert main(["report", *map(str, runs), "--out", str(tmp_path / "report")]) == 0
    printed = capsys.readouterr().out
    scores = json.loads((tmp_path / "report" / "scores.json").read_text())

    assert_honest_intervals(scores)
    by_label = {v["label"]: v for v in scores["variants"]}
    [magnitude] = [v for label, v in by_label.items() if label.startswith("Magnitude")]
    # SmolLM2 pruned to 50% by magnitude loops (seen: "Begonk\nBegonk\nBegonk\nB", "Title:\nTitle:\n..."): more
    # than the output-health gate's 20% of its completions are degenerate, where the dense model has none
    assert magnitude["output_health_overall"]["degenerate_pct"] > 20
    verdicts = {v["variant"]: v for v in scores["verdicts"]}
    assert any(g.startswith("output health") for g in verdicts[magnitude["label"]]["failed_gates"])
    [rec] = scores["recommendations"]
    assert rec in printed  # the terminal says it too
    for label, verdict in verdicts.items():
        if verdict["failed_gates"]:
            assert f"Do not ship {label}" in rec or f"{label} (" in rec
            assert not rec.startswith(f"Recommendation for smollm2-135m-instruct: {label}")
    for variant in scores["variants"]:
        for m, delta in variant["deltas"].items():
            refusal = (delta.get("refusal") or {}).get("delta")
            answered = delta.get("answered_only") or {}
            moved_together = answered.get("significant") and (answered.get("delta") or 0) * delta["delta"] > 0
            if refusal is not None and abs(refusal) >= 10 and (delta["significant"] or delta["ci95"] is None) \
                    and delta["delta"] and not moved_together:
                assert delta["refusal_driven"], (variant["label"], m, delta)
