"""Decisions with error control: Holm-corrected marks and the non-inferiority recommendation, by hand and
calibrated by simulation (tests/decision_sim.py; docs/reports.md, "Error control", states the rates)."""

from __future__ import annotations

import html
import json

import numpy as np
import pytest
from scipy.stats import binom

from comptrust.report import aggregate
from comptrust.report.aggregate import Base, Delta, Variant, build_table
from comptrust.report.bootstrap import bootstrap_perspective
from comptrust.report.build import write_report
from comptrust.report.decisions import noninferiority
from comptrust.report.error_control import holm
from decision_sim import fast_bootstrap, memory_run, study
from report_fakes import compressed_model, dense_model, scored_samples, write_run

pytestmark = pytest.mark.usefixtures("fake_perspectives")


def test_holm_by_hand():
    adjusted, rejected = holm([0.01, 0.04, 0.03, 0.005])
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.06 (monotone)
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert rejected == [True, False, False, True]
    assert holm([]) == ([], [])


def _variant(label: str, sha: str, changes: dict[str, tuple[float, float]]) -> Variant:
    run = memory_run(aggregate.Path(f"/sim/{label}"), compressed_model("rtn", 4, seed=0) | {"weights_sha256": sha}, {})
    v = Variant(key=label, label=label, base="b", runs=[run])
    for m, (value, se) in changes.items():  # se is the widened standard error; df large: ~normal
        v.deltas[m] = Delta(value, (value - 2 * se, value + 2 * se), None, se, 10_000, measure=m)
    return v


def test_non_inferiority_is_intersection_union_over_measures_and_holm_over_variants():
    dense = Variant(key="d", label="dense", base="b", runs=[memory_run(aggregate.Path("/sim/d"), dense_model(), {})])
    # one-sided p of H0 delta <= -5 for (0, se 2): P(Z > 2.5) = 0.0062; for (-1.5, 2): P(Z > 1.75) = 0.0401
    good = _variant("good", "g", {"ood": (0.0, 2.0), "mmlu": (0.0, 2.0)})
    fair = _variant("fair", "f", {"ood": (-1.5, 2.0), "mmlu": (0.0, 1.0)})
    base = Base(name="b", hashes=set(), names=set(), variants=[dense, good, fair])
    tests = noninferiority(base, 5.0)
    # the IUT p of a variant is its worst measure's (no correction across measures); Holm over the variants:
    # 0.0062 <= 0.05/2, then 0.0401 <= 0.05/1
    assert tests["good"].p_value == pytest.approx(0.00621, abs=1e-4) and tests["good"].level == pytest.approx(0.025)
    assert tests["fair"].p_value == pytest.approx(0.04006, abs=1e-4) and tests["fair"].level == pytest.approx(0.05)
    assert tests["good"].passed and tests["fair"].passed
    assert tests["fair"].measures["ood"]["lower_bound"] == pytest.approx(-1.5 - 1.645 * 2.0, abs=0.01)
    # a third variant that cannot be shown: Holm's steps become 0.05/3, 0.05/2 and "fair" (0.0401 > 0.025) fails
    bad = _variant("bad", "x", {"ood": (-4.0, 2.0)})
    tests = noninferiority(Base(name="b", hashes=set(), names=set(), variants=[dense, good, fair, bad]), 5.0)
    assert tests["good"].passed and tests["good"].level == pytest.approx(0.05 / 3)
    assert not tests["fair"].passed and not tests["bad"].passed and tests["bad"].failing() == ["ood"]


def test_the_fast_bootstrap_matches_the_real_one(tmp_path):
    def answers(every_a: int, every_b: int) -> list:
        return scored_samples([("a", i % every_a > 0) for i in range(60)] + [("b", i % every_b > 0) for i in range(60)])

    runs = [memory_run(tmp_path / "d", dense_model(), {"ood": answers(3, 4)}),
            memory_run(tmp_path / "c", compressed_model(), {"ood": answers(5, 2)})]
    real = bootstrap_perspective("ood", runs, 2000, 0)
    fast = fast_bootstrap("ood", runs, 2000, 0)
    for b in (real, fast):
        diff = b.replicates["score"][str(runs[1].path)] - b.replicates["score"][str(runs[0].path)]
        b.spread = float(np.std(diff))
    assert fast.spread == pytest.approx(real.spread, rel=0.1)
    assert (fast.units, fast.strata) == (real.units, real.strata)


def test_the_report_says_which_correction_it_applied(tmp_path):
    def answers(wrong: set[int], n: int = 40) -> list:
        return scored_samples([(sc, i not in wrong) for sc in ("a", "b") for i in range(n)])

    dense = write_run(tmp_path, "dense", dense_model(), {"ood": answers({1, 2}), "mmlu": answers({3})})
    comp = write_run(tmp_path, "comp", compressed_model("rtn", 3),
                     {"ood": answers(set(range(20))), "mmlu": answers({3})})
    out = write_report([dense, comp], tmp_path / "r", n_bootstrap=200)
    data = json.loads(out["json"].read_text())
    assert data["settings"]["multiplicity"]["method"] == "holm" and data["settings"]["multiplicity"]["tests"] == 1
    ood = data["variants"][1]["deltas"]["ood"]
    assert ood["significant"] and ood["p_holm"] == pytest.approx(ood["p_value"])  # a family of one
    assert ood["detectable_drop_80pct_power_corrected"] == pytest.approx(ood["detectable_drop_80pct_power"], rel=1e-3)
    [verdict] = data["verdicts"]
    assert verdict["noninferiority"]["correction"].startswith("Holm over 1 variant(s)")
    said = "Holm's procedure over the report's 1 score change(s)"
    assert any(said in e for e in data["error_control"])
    assert said in html.unescape(out["html"].read_text()) and said in out["markdown"].read_text()


# ---- calibration by simulation --------------------------------------------------------------------------


def _not_above(errors: int, studies: int, rate: float = 0.05) -> bool:
    """The observed count is consistent with a true rate <= ``rate`` (exact one-sided binomial test at 1%)."""
    return binom.sf(errors - 1, studies, rate) > 0.01


@pytest.mark.slow
def test_under_a_true_null_the_report_errs_in_at_most_5_percent_of_studies(tmp_path):
    """Three variants that behave as the dense model (independent answers, same accuracy) on two measures:
    a study errs when any variant fails a gate or any change is marked (family-wise)."""
    studies = 300
    results = [study(tmp_path, s, 300, [{}, {}, {}]) for s in range(studies)]
    errors = sum(any(v["broken"] or v["marked"] for v in r["variants"].values()) for r in results)
    assert errors <= 0.05 * studies  # measured: 4.3% (docs/reports.md, also the smaller size where it is 6%)
    assert _not_above(errors, studies)


@pytest.mark.slow
def test_a_real_10_point_drop_is_caught_at_the_power_the_report_claims(tmp_path):
    """One of three variants truly 10 points worse on one measure, at a size where the report claims about
    80% power for a 10-point drop: it is never recommended, and where the report claims 80% power for a
    corrected mark (the tooltip's "after Holm's correction"), the mark comes at least that often."""
    results = [study(tmp_path, s, 150, [{}, {"ood": -10.0}, {}]) for s in range(200)]
    worse = [r["variants"]["v1"] for r in results]
    assert np.mean([not v["recommended"] for v in worse]) >= 0.8  # measured: 100%
    claimed = [v for v in worse if v["detectable"]["ood"] <= 10.0]  # the per-comparison claim
    assert len(claimed) >= 50
    assert np.mean([not v["recommended"] for v in claimed]) >= 0.8
    corrected = [v for v in worse if v["detectable_corrected"]["ood"] <= 10.0]
    big = [study(tmp_path, 1000 + s, 260, [{}, {"ood": -10.0}, {}])["variants"]["v1"] for s in range(100)]
    corrected += [v for v in big if v["detectable_corrected"]["ood"] <= 10.0]
    assert len(corrected) >= 50
    assert np.mean(["ood" in v["marked"] for v in corrected]) >= 0.8  # measured: 81% of 72


@pytest.mark.slow
def test_non_inferiority_recommends_a_variant_within_the_margin_and_rarely_one_at_the_margin(tmp_path):
    at_zero = [study(tmp_path, s, 800, [{}])["variants"]["v0"]["recommended"] for s in range(100)]
    assert np.mean(at_zero) >= 0.8  # measured: 91%
    at_margin = [study(tmp_path, 500 + s, 800, [{"ood": -5.0}])["variants"]["v0"]["recommended"] for s in range(200)]
    errors = int(np.sum(at_margin))
    # at the margin the test is exactly at its level: 5% is the expected rate, so the check is that the count
    # is consistent with a rate <= 5% (measured: 12 of 200 at 800 prompts; 10 of 300 at 1,500 with 100 resamples)
    assert _not_above(errors, len(at_margin)) and errors <= 0.075 * len(at_margin)


def test_build_table_still_runs_the_real_bootstrap(tmp_path):
    """The simulation patches build_table's bootstrap only inside a study; outside it the real one runs."""
    dense = write_run(tmp_path, "dense", dense_model(), {"ood": scored_samples([("a", True), ("b", True)] * 6)})
    comp = write_run(tmp_path, "comp", compressed_model(),
                     {"ood": scored_samples([("a", i % 2 == 0) for i in range(6)]
                                            + [("b", i % 3 > 0) for i in range(6)])})
    assert aggregate.bootstrap_perspective is bootstrap_perspective
    assert build_table([dense, comp], n_bootstrap=50).bases[0].variants[1].deltas["ood"].ci is not None
