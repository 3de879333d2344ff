"""Report aggregation: numbers worked out by hand, bootstrap behaviour, grouping and refusals to mix."""

from __future__ import annotations

import csv
import json
import statistics

import pytest

from comptrust.errors import ConfigError
from comptrust.report.aggregate import AVERAGE, average_of_nine, build_table
from comptrust.report.build import write_report
from comptrust.report.findings import findings
from comptrust.report.paper import load_paper
from comptrust.report.runs import MEASURES
from report_fakes import compressed_model, dense_model, scored_samples, write_run

DENSE_FIXED = {"toxicity": 80.0, "stereotype": 90.0, "adv_glue": 40.0, "adv_demonstration": 60.0, "privacy": 70.0,
               "machine_ethics": 50.0, "fairness": 85.0, "mmlu": 45.0}
COMP_FIXED = {"toxicity": 78.0, "stereotype": 88.0, "adv_glue": 41.0, "adv_demonstration": 59.0, "privacy": 70.0,
              "machine_ethics": 30.0, "fairness": 86.0, "mmlu": 44.5}


pytestmark = pytest.mark.usefixtures("fake_perspectives")


def outcomes(correct_a: int, n_a: int, correct_b: int, n_b: int) -> list:
    return scored_samples([("a", i < correct_a) for i in range(n_a)] + [("b", i < correct_b) for i in range(n_b)])


def test_average_of_nine_by_hand_and_needs_all_nine():
    scores = {"toxicity": 80, "stereotype": 90, "adv_glue": 40, "ood": 87.5, "adv_demonstration": 60,
              "privacy": 70, "machine_ethics": 50, "fairness": 85, "mmlu": 45}
    assert average_of_nine(scores) == pytest.approx(607.5 / 9)
    assert average_of_nine({**scores, "privacy": None}) is None
    assert average_of_nine({k: v for k, v in scores.items() if k != "mmlu"}) is None


def test_average_of_nine_reproduces_the_papers_average_column():
    rows = load_paper()
    assert len(rows) == 50
    for row in rows:
        ours = average_of_nine({m: row.scores[m] for m in MEASURES})
        assert ours == pytest.approx(row.scores[AVERAGE], abs=0.06), row.model


def test_table_scores_deltas_and_average_by_hand(tmp_path):
    dense = write_run(tmp_path, "dense", dense_model(), {**DENSE_FIXED, "ood": outcomes(4, 5, 5, 5)})
    comp = write_run(tmp_path, "gptq4", compressed_model("gptq", 4), {**COMP_FIXED, "ood": outcomes(2, 5, 2, 5)})
    table = build_table([comp, dense], n_bootstrap=50, seed=0)
    [base] = table.bases
    d, c = base.variants  # dense first although given second
    assert d.is_dense and d.label == "tiny-llama (dense)"
    assert c.label == "GPTQ 4-bit g128"
    assert d.cells["ood"].mean == pytest.approx(90.0)  # 9 of 10 correct
    assert c.cells["ood"].mean == pytest.approx(40.0)  # 4 of 10 correct
    assert c.deltas["ood"].value == pytest.approx(-50.0)
    assert c.deltas["machine_ethics"].value == pytest.approx(-20.0)
    assert d.cells[AVERAGE].mean == pytest.approx(610.0 / 9)
    assert c.cells[AVERAGE].mean == pytest.approx(536.5 / 9)
    assert c.deltas[AVERAGE].value == pytest.approx((536.5 - 610.0) / 9)
    # ood has per-sample scores, so it gets an interval containing the point estimate; fixed scores cannot
    low, high = c.deltas["ood"].ci
    assert low <= -50.0 <= high
    assert c.deltas["toxicity"].ci is None and "scores.jsonl" in c.deltas["toxicity"].note
    eff = c.efficiency()
    assert (eff["bits"], eff["size_bytes"], eff["compression_s"], eff["tokens_per_s"]) == (4, 1_250_000, 12.5, 40.0)
    assert d.efficiency()["size_bytes"] == 4_000_000  # the dense size recorded in the compressed manifest
    assert d.efficiency()["bits"] == 32


def test_bootstrap_is_reproducible_under_a_seed(tmp_path):
    dense = write_run(tmp_path, "dense", dense_model(), {"ood": outcomes(30, 40, 25, 40)})
    comp = write_run(tmp_path, "comp", compressed_model("rtn", 8), {"ood": outcomes(22, 40, 27, 40)})

    def ci(seed):
        return build_table([dense, comp], n_bootstrap=200, seed=seed).bases[0].variants[1].deltas["ood"].ci

    assert ci(7) == ci(7)
    assert ci(7) != ci(8)


def test_identical_answers_give_no_variation_and_are_never_significant(tmp_path):
    dense = write_run(tmp_path, "dense", dense_model(), {"ood": outcomes(13, 20, 7, 20)})
    comp = write_run(tmp_path, "comp", compressed_model("awq", 4), {"ood": outcomes(13, 20, 7, 20)})
    delta = build_table([dense, comp], n_bootstrap=100, seed=1).bases[0].variants[1].deltas["ood"]
    assert delta.value == 0 and delta.ci is None and delta.paired is True  # never a zero-width interval
    assert delta.reason.startswith("no variation") and delta.significant is None
    assert delta.detectable is None  # no power claim without an interval


def test_a_scenario_with_too_few_units_gets_no_interval_and_says_n_too_small(tmp_path):
    # Scenario "b" has one prompt: it always resamples to itself, so any interval would be too narrow.
    dense = write_run(tmp_path, "dense", dense_model(), {"ood": outcomes(10, 30, 1, 1)})
    comp = write_run(tmp_path, "comp", compressed_model("awq", 4), {"ood": outcomes(5, 30, 0, 1)})
    table = build_table([dense, comp], n_bootstrap=200, seed=0)
    dense_v, comp_v = table.bases[0].variants
    delta = comp_v.deltas["ood"]
    assert delta.ci is None and delta.significant is None
    assert delta.reason.startswith("n too small: 1 unit(s) in b")
    assert dense_v.cells["ood"].ci is None and dense_v.cells["ood"].reason.startswith("n too small")
    found = findings(table)
    assert any("no interval, so no claim either way, for out-of-distribution robustness (n too small)" in f
               for f in found["findings"])


def test_significant_drop_findings_and_mmlu_warning(tmp_path):
    dense = write_run(tmp_path, "dense", dense_model(), {"ood": outcomes(20, 20, 20, 20), "mmlu": 45.0})
    good = write_run(tmp_path, "g4", compressed_model("gptq", 4), {"ood": outcomes(19, 20, 20, 20), "mmlu": 45.0})
    bad = write_run(tmp_path, "g3", compressed_model("gptq", 3), {"ood": outcomes(5, 20, 5, 20), "mmlu": 44.5})
    table = build_table([dense, good, bad], n_bootstrap=200, seed=0)
    g4, g3 = table.bases[0].variants[1:]
    assert g3.deltas["ood"].significant is True and g3.deltas["ood"].value == pytest.approx(-75.0)
    assert g4.deltas["ood"].significant is False
    found = findings(table)
    text = "\n".join(found["findings"])
    assert "GPTQ 3-bit g128 loses 75.0 points of out-of-distribution robustness (100.0 → 25.0" in text
    assert "GPTQ 4-bit g128: no significant change on the one measure with an interval" in text
    assert "MMLU barely moves (-0.5 points) while out-of-distribution robustness falls 75.0" in text


def test_calibration_seeds_form_one_row_with_mean_and_std(tmp_path):
    dense = write_run(tmp_path, "dense", dense_model(), {"fairness": 85.0})
    runs = [write_run(tmp_path, f"s{seed}", compressed_model("gptq", 3, seed=seed), {"fairness": value})
            for seed, value in ((0, 80.0), (1, 83.0), (2, 86.0))]
    table = build_table([dense, *runs], n_bootstrap=0)
    [_, variant] = table.bases[0].variants
    assert variant.label == "GPTQ 3-bit g128 (3 seeds)" and variant.seeds == [0, 1, 2]
    assert variant.cells["fairness"].mean == pytest.approx(83.0)
    assert variant.cells["fairness"].std == pytest.approx(statistics.stdev([80, 83, 86]))  # = 3.0
    assert variant.deltas["fairness"].value == pytest.approx(-2.0)
    assert variant.deltas["fairness"].std == pytest.approx(3.0)


def test_missing_and_partial_perspectives_are_never_zero(tmp_path):
    partial = {"perspective": "toxicity", "version": 1, "profile": "comp-trust", "score": 70.0,
               "refusal_rate": 2.0, "partial": True, "missing": ["toxic-gpt4 prompts"], "n_samples": 10}
    dense = write_run(tmp_path, "dense", dense_model(), {**DENSE_FIXED, "ood": 60.0})
    comp = write_run(tmp_path, "comp", compressed_model("awq", 4),
                     {**{k: v for k, v in COMP_FIXED.items() if k != "privacy"}, "ood": 55.0, "toxicity": partial})
    out = write_report([dense, comp], tmp_path / "report", n_bootstrap=0)
    data = json.loads(out["json"].read_text())
    variant = data["variants"][1]
    assert variant["scores"]["privacy"]["mean"] is None
    assert variant["scores"][AVERAGE]["mean"] is None  # needs all nine
    assert "privacy" not in variant["deltas"]
    assert variant["scores"]["toxicity"]["partial"] is True
    rows = list(csv.DictReader(out["csv"].open()))
    assert rows[1]["privacy"] == "" and rows[1][AVERAGE] == "" and rows[1]["partial"] == "toxicity"
    assert float(rows[0][AVERAGE]) == pytest.approx((sum(DENSE_FIXED.values()) + 60) / 9)
    html = out["html"].read_text()
    assert 'title="missing: not scored in this run">—</td>' in html
    assert "70.0 †" in html
    assert "not compared on privacy" in html


def test_different_scorers_or_profiles_are_refused(tmp_path):
    dense = write_run(tmp_path, "dense", dense_model(), {"toxicity": 80.0},
                      scorers={"toxicity": {"parser": "toxicity@v1", "classifier": "offline"}})
    comp = write_run(tmp_path, "comp", compressed_model(), {"toxicity": 70.0},
                     scorers={"toxicity": {"parser": "toxicity@v1", "classifier": "perspective-api"}})
    with pytest.raises(ConfigError, match="scored toxicity with different scorers"):
        build_table([dense, comp])
    other = write_run(tmp_path, "dt", compressed_model(), {"fairness": 70.0}, profile="decodingtrust")
    dense2 = write_run(tmp_path, "dense2", dense_model(), {"fairness": 80.0})
    with pytest.raises(ConfigError, match="different scoring profiles"):
        build_table([dense2, other])


def test_compressed_without_its_dense_run_gets_no_deltas(tmp_path):
    dense = write_run(tmp_path, "dense", dense_model(sha="one"), {"ood": 50.0})
    orphan = write_run(tmp_path, "orphan", compressed_model(base_sha="two", base_name="other-model"), {"ood": 40.0})
    table = build_table([dense, orphan], n_bootstrap=0)
    assert [b.name for b in table.bases] == ["tiny-llama", "other-model"]
    assert table.bases[1].variants[0].deltas == {}
    assert any("No dense run of base model other-model" in n for n in table.notes)


def test_paper_comparison_same_base_and_reference(tmp_path):
    dense = write_run(tmp_path, "dense", dense_model(name="meta-llama/Llama-2-13b-chat-hf", sha="L"), {"ood": 60.0})
    gptq3 = write_run(tmp_path, "gptq3", compressed_model("gptq", 3, base_sha="L", base_name="Llama-2-13b-chat-hf"),
                      {"ood": 40.0})
    tiny = write_run(tmp_path, "tiny", dense_model(), {"machine_ethics": 50.0})
    wanda = write_run(tmp_path, "wanda", compressed_model("wanda", None, sparsity=0.5, pattern="2:4"),
                      {"machine_ethics": 45.0})
    out = write_report([dense, gptq3, tiny, wanda], tmp_path / "r", n_bootstrap=0)
    paper = json.loads(out["json"].read_text())["paper"]
    llama, small = paper
    assert llama["paper_base"] == "LLAMA2 13b Chat"
    match = next(m for m in llama["matches"] if m["variant"] == "GPTQ 3-bit g128")
    assert match["n_rows"] == 3  # the paper's three calibration seeds, averaged
    assert match["paper"]["ood"] == pytest.approx((33.2 + 30.1 + 34.0) / 3)
    assert match["ours"]["ood"] == 40.0
    assert match["diff"]["ood"] == pytest.approx(40.0 - (33.2 + 30.1 + 34.0) / 3)
    assert match["diff"]["toxicity"] is None  # not scored by us: no difference, never against 0
    assert match["notes"] == []  # same group size (128), full data
    assert set(match["paper_refusals"]) >= {"ood", "fairness"}
    g64 = write_run(tmp_path, "g64", compressed_model("gptq", 4, base_sha="L", base_name="Llama-2-13b-chat-hf",
                                                      group_size=64), {"ood": 50.0}, options={"limit": 20})
    llama = json.loads(write_report([dense, g64], tmp_path / "r2", n_bootstrap=0)["json"].read_text())["paper"][0]
    [match] = [m for m in llama["matches"] if m["variant"] == "GPTQ 4-bit g64"]
    assert match["notes"] == ["group size: ours 64, paper 128", "ours on --limit 20 prompts per scenario"]
    assert small["matches"] == []
    ref = next(r for r in small["reference"] if r["paper_base"] == "LLAMA2 13b Chat")
    assert ref["paper_delta"]["machine_ethics"] == pytest.approx(30.5 - 62.3)
    assert ref["our_delta"]["machine_ethics"] == pytest.approx(-5.0)
    assert {r["paper_base"] for r in small["reference"]} == {"LLAMA2 13b Chat", "LLAMA2 13b", "Vicuna 13b Chat"}


def test_drilldown_shows_changed_samples_only(tmp_path):
    dense = write_run(tmp_path, "dense", dense_model(), {"ood": outcomes(4, 4, 4, 4)})
    comp = write_run(tmp_path, "comp", compressed_model(), {"ood": outcomes(4, 4, 3, 4)})
    out = write_report([dense, comp], tmp_path / "r", n_bootstrap=0)
    [entry] = json.loads(out["json"].read_text())["drilldown"]["tiny-llama"]
    [section] = entry["perspectives"]
    assert section["perspective"] == "ood"
    assert [s["id"] for s in section["samples"]] == ["b/3"]
    sample = section["samples"][0]
    assert sample["dense"]["responses"]["shown"] == ["yes"] and sample["compressed"]["responses"]["shown"] == ["no"]
    assert '"correct": false' in sample["compressed"]["outcome"]
