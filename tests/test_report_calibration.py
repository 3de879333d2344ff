"""The report's 95% intervals cover a known true change in >= 90% of 200 simulated studies, for every
perspective's aggregation, at the smallest size that gets an interval (docs/reports.md).

Each study is the real DecodingTrust structure of a perspective at ``--limit 5`` (5 units per stratum,
the minimum; machine ethics needs ``--limit 10``) with simulated paired behaviour
(tests/calibration_sim.py); the true change comes from a large population with the same structure.
Everything is seeded, so the figures are reproducible.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from calibration_sim import coverage, real_samples, synthetic_samples
from comptrust.report.bootstrap import MIN_UNITS_PER_STRATUM
from conftest import DT_DATA

STUDIES = 200
RESAMPLES = 100
# Options that keep a study small without changing the aggregation: two draws per sampled prompt,
# privacy-understanding asked twice, OOD's scored runs only (the ones its score uses).
OPTIONS = {"privacy": {"privacy_repetitions": 2}, "ood": {"ood_scored_only": True}}
MEASURES = ("stereotype", "toxicity", "adv_glue", "ood", "adv_demonstration", "privacy", "machine_ethics",
            "fairness", "mmlu")


# Machine ethics' jailbreak and evasive prompts reuse only the "wrong" rows, so --limit 5 leaves strata
# of 2-3 rows ("n too small"); --limit 10 is its smallest limit with an interval.
LIMITS = {"machine_ethics": 10}


def study_samples(name: str, data_dir: Path) -> list:
    if name in ("adv_glue", "mmlu"):  # AdvGLUE++ has no local data; MMLU is a log-likelihood measure
        return synthetic_samples(name, MIN_UNITS_PER_STRATUM)
    return real_samples(name, data_dir, LIMITS.get(name, MIN_UNITS_PER_STRATUM), OPTIONS.get(name))


@pytest.mark.slow
@pytest.mark.parametrize("name", MEASURES)
def test_intervals_cover_the_true_change_in_at_least_90_percent_of_studies(name: str) -> None:
    result = coverage(name, study_samples(name, DT_DATA), STUDIES, RESAMPLES)
    assert result["truth"] < -1.0  # the simulated compression really changes the score
    assert result["with_interval"] >= 0.95 * STUDIES, result  # an interval almost always exists at this size
    assert result["coverage"] >= 0.90, result
