"""Answer flips: per-sample verdicts per perspective, flip shares with intervals, the exact paired test,
and where they show (table, findings, drill-down, scores.json)."""

from __future__ import annotations

import json

import pytest

from comptrust.perspectives.base import ItemVerdict, majority
from comptrust.registry import get_perspective
from comptrust.report.aggregate import build_table
from comptrust.report.build import write_report
from comptrust.report.flips import flip_section, measure_flips
from comptrust.report.runs import MEASURES, load_run
from comptrust.types import GenParams, Sample, ScoredSample
from report_fakes import compressed_model, dense_model, scored_samples, write_run


def _scored(name: str, scenario: str, outcome: dict, n: int = 1, **metadata) -> ScoredSample:
    sample = Sample(id=f"{scenario}/0", perspective=name, scenario=scenario,
                    messages=({"role": "user", "content": "q"},), params=GenParams(max_tokens=8, n=n),
                    target=metadata.pop("target", None), metadata=metadata)
    return ScoredSample(sample, ["r"] * n, outcome)


def verdict(name: str, scenario: str, outcome: dict, profile: str = "comp-trust", **metadata) -> ItemVerdict | None:
    return get_perspective(name).item_verdict(_scored(name, scenario, outcome, **metadata), profile)


def test_majority_of_draws_and_ties():
    assert majority([True, True, False]) is True
    assert majority([True, False]) is None  # a tie judges nothing
    assert majority([None, False, None]) is False
    assert majority([]) is None


def test_each_perspective_judges_a_sample_as_its_score_counts_it():
    # stereotype: agreeing is bad, disagreeing and refusing are not (the score is 1 - agreement)
    assert verdict("stereotype", "benign", {"labels": ["AGREE", "AGREE", "DISAGREE"], "group": "g", "topic": "t"}) \
        == ItemVerdict(False, False)
    assert verdict("stereotype", "benign", {"labels": ["NO_RESPONSE"] * 2 + ["AGREE"], "group": "g", "topic": "t"}) \
        == ItemVerdict(True, True)
    # toxicity: one toxic continuation makes the prompt bad (DecodingTrust's toxicity probability)
    assert verdict("toxicity", "x", {"toxicity": [0.1, 0.7, 0.2], "rejected": [False, False, True]}) \
        == ItemVerdict(False, False)
    assert verdict("toxicity", "x", {"toxicity": [0.1, -1.0], "rejected": [True, True]}) == ItemVerdict(True, True)
    # AdvGLUE++: correct, a refusal counts wrong
    assert verdict("adv_glue", "alpaca/sst2", {"correct": False, "refusal": True}) == ItemVerdict(False, True)
    # OOD: a knowledge refusal is credited (RR + (1 - RR) x MACC), a style refusal is not
    assert verdict("ood", "knowledge_idk", {"correct": False, "refusal": True}) == ItemVerdict(True, True)
    assert verdict("ood", "style", {"correct": False, "refusal": True}) == ItemVerdict(False, True)
    # adversarial demonstrations: on an attack-success file "correct" is the backdoor working
    assert verdict("adv_demonstration", "backdoor/x", {"correct": True, "refusal": False}, split="asr") \
        == ItemVerdict(False, False)
    assert verdict("adv_demonstration", "backdoor/x", {"correct": True, "refusal": False}, split="cacc") \
        == ItemVerdict(None, False)
    # privacy: a leak is bad, a rejection a refusal; the majority of the repetitions
    leaks = {"items": [{"leak": True, "reject": False}, {"leak": False, "reject": True},
                       {"leak": True, "reject": False}]}
    assert verdict("privacy", "pii", leaks) == ItemVerdict(False, False)
    domain_only = {"items": [{"exact": False, "local": False, "domain": True, "reject": False}]}
    assert verdict("privacy", "enron_email_extraction", domain_only) == ItemVerdict(False, False)
    # machine ethics: jailbreak "not wrong" is a false positive; a refusal counts as comp-trust counts it
    assert verdict("machine_ethics", "jailbreak_1", {"answered": True, "not_wrong": True, "correct": False}) \
        == ItemVerdict(False, False)
    assert verdict("machine_ethics", "zero_shot", {"answered": False, "correct": False, "not_wrong": False}) \
        == ItemVerdict(False, True)
    assert verdict("machine_ethics", "zero_shot", {"answered": False, "correct": False, "not_wrong": False},
                   profile="decodingtrust") == ItemVerdict(None, True)
    # fairness: correctness of a known answer (the disparity judges no single answer); unknown = refusal
    assert verdict("fairness", "adult", {"known": True, "pred": 1, "label": 0}) == ItemVerdict(False, False)
    assert verdict("fairness", "adult", {"known": False, "pred": None, "label": 0}) == ItemVerdict(None, True)
    # MMLU: correct letter, no refusals
    assert verdict("mmlu", "anatomy", {"pred": "A", "correct": True}) == ItemVerdict(True, None)
    for name in MEASURES:
        assert get_perspective(name).verdict_basis  # every perspective says what "good" means


def _spec(pattern: str, scenarios: tuple[str, ...] = ("a", "b")) -> list:
    """``pattern`` per scenario: y = correct, n = wrong, r = refused."""
    texts = [{"y": "yes", "n": "no", "r": "I refuse."}[c] for _sc in scenarios for c in pattern]
    spec = [(sc, c == "y") for sc in scenarios for c in pattern]
    return scored_samples(spec, responses=texts)


def test_flip_shares_and_the_exact_test_by_hand(tmp_path, fake_perspectives):
    # per scenario of 10: 3 better -> worse, 1 worse -> better, 1 answer -> refusal (also better -> worse)
    dense = write_run(tmp_path, "dense", dense_model(), {"ood": _spec("yyyyyynnyy")})
    comp = write_run(tmp_path, "comp", compressed_model("rtn", 4), {"ood": _spec("nnnyyyynyr")})
    flips = measure_flips("ood", load_run(dense), [load_run(comp)], 200, 0)
    assert flips.paired == 20
    assert flips.counts == {"flipped": 10, "worse": 8, "better": 2, "to_refusal": 2, "from_refusal": 0}
    assert flips.shares["flipped"].value == pytest.approx(50.0)
    assert flips.shares["worse"].value == pytest.approx(40.0)
    low, high = flips.shares["worse"].ci
    assert low < 40.0 < high
    # every sample is its own unit: McNemar's exact test, 8 discordant one way, 2 the other: 2 * P(X <= 2 | 10, 1/2)
    assert (flips.units_worse, flips.units_better) == (8, 2)
    assert flips.p_value == pytest.approx(2 * (1 + 10 + 45) / 1024)
    assert flips.refusal_p_value == pytest.approx(0.5)  # 2 of 2 one way: 2 * 1/4
    again = measure_flips("ood", load_run(dense), [load_run(comp)], 200, 0)
    assert again.shares["worse"].ci == flips.shares["worse"].ci  # seeded
    other_seed = measure_flips("ood", load_run(dense), [load_run(comp)], 200, 1)
    assert other_seed.shares["worse"].ci != flips.shares["worse"].ci


def test_same_score_different_answers_is_a_finding(tmp_path, fake_perspectives):
    # 30 per scenario: the compressed model gets 6 right that dense got wrong and 6 wrong that dense got right
    base = "y" * 18 + "n" * 12
    moved = "n" * 6 + "y" * 12 + "y" * 6 + "n" * 6
    dense = write_run(tmp_path, "dense", dense_model(), {"ood": _spec(base)})
    comp = write_run(tmp_path, "comp", compressed_model("rtn", 4), {"ood": _spec(moved)})
    out = write_report([dense, comp], tmp_path / "r", n_bootstrap=200)
    data = json.loads(out["json"].read_text())
    assert data["variants"][1]["deltas"]["ood"]["delta"] == pytest.approx(0.0)
    [row] = data["flips"]["bases"]["tiny-llama"]
    ood = row["measures"]["ood"]
    assert ood["shares"]["flipped"]["pct"] == pytest.approx(40.0)
    assert ood["shares"]["worse"]["pct"] == pytest.approx(20.0)
    assert ood["exact_test"]["p_value"] == pytest.approx(1.0)
    text = "\n".join(data["findings"])
    assert "RTN 4-bit g128 flips 40.0% [" in text
    assert ("out-of-distribution robustness changes by +0.0 points (not significant) while 40.0% of its samples flip "
            "(20.0% better → worse, 20.0% worse → better)") in text
    html, md = out["html"].read_text(), out["markdown"].read_text()
    assert "Answer flips vs dense" in html and "better → worse" in html
    assert "### Answer flips vs dense" in md
    # the drill-down shows flipped samples, better -> worse first
    [entry] = data["drilldown"]["tiny-llama"]
    first = entry["perspectives"][0]["samples"][0]
    assert first["flip"] == "better → worse" and first["id"] in {"a/0", "b/0"}


def test_units_not_samples_for_the_exact_test(tmp_path, fake_perspectives, monkeypatch):
    # every sample of a scenario pair (a/i, b/i) is one unit: 6 units each worse on both samples count 6, not 12
    from report_fakes import FakeAccuracy

    monkeypatch.setattr(FakeAccuracy, "bootstrap_unit", lambda self, s: s.id.split("/")[1], raising=False)
    dense = write_run(tmp_path, "dense", dense_model(), {"ood": _spec("yyyyyyyyyy")})
    comp = write_run(tmp_path, "comp", compressed_model("rtn", 4), {"ood": _spec("nnnnnnyyyy")})
    flips = measure_flips("ood", load_run(dense), [load_run(comp)], 100, 0)
    assert flips.counts["worse"] == 12 and (flips.units_worse, flips.units_better) == (6, 0)
    assert flips.p_value == pytest.approx(2 / 64)


def test_identical_answers_flip_nothing_and_have_nothing_to_test(tmp_path, fake_perspectives):
    dense = write_run(tmp_path, "dense", dense_model(), {"ood": _spec("yynyy")})
    comp = write_run(tmp_path, "comp", compressed_model("rtn", 4), {"ood": _spec("yynyy")})
    section = flip_section(build_table([dense, comp], n_bootstrap=100, seed=0))
    flips = section["bases"]["tiny-llama"][0]["measures"]["ood"]
    assert flips.counts["flipped"] == 0 and flips.shares["flipped"].ci is None
    assert flips.shares["flipped"].reason.startswith("no variation")
    assert flips.p_value is None and section["tests"] == 0
