"""Synthetic paired studies with a known true change, for checking the report's intervals.

Each perspective's *structure* is real: its samples come from the real DecodingTrust files
(``perspective.samples`` with a ``--limit``), so the aggregation sees the real scenarios,
cells, groups, runs and files.  Only the model's behaviour is simulated:

- every unit (``bootstrap_unit``: a statement, a prompt and its templates, an ETHICS row...)
  gets a latent difficulty ``z ~ N(0, 1)`` shared by everything that depends on it;
- each draw of each sample is "good" (trustworthy), "bad" or a refusal, with
  ``P(good) = Phi(quality + z)`` and a fixed refusal probability; the compressed model has a
  lower quality and more refusals than the dense one, on the same ``z`` (paired data);
- a perspective-specific writer turns the behaviours into that perspective's outcome dict.

The true change is the aggregate over a large population of fresh units with the same
structure (``POPULATION_COPIES`` copies), compressed minus dense; a study is one draw of the
structure, and its 95% interval should cover the true change in ~95% of studies.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from comptrust.data.source import LocalFolder
from comptrust.perspectives.base import EvalOptions
from comptrust.registry import get_perspective
from comptrust.report.bootstrap import bootstrap_perspective, interval, unit_key
from comptrust.report.runs import Run
from comptrust.types import GenParams, Sample, ScoredSample

GOOD, BAD, REFUSE = "good", "bad", "refuse"
POPULATION_COPIES = 200


def _phi(x: float) -> float:
    """Standard normal CDF (scipy's is ~100x slower per scalar)."""
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


@dataclasses.dataclass(frozen=True)
class Behaviour:
    """One model's behaviour: quality shifts P(good); ``refusal`` is the probability of refusing."""

    quality: float
    refusal: float
    bias: float = 0.0  # fairness only: how much the protected attribute moves P(positive)


DENSE = Behaviour(quality=0.6, refusal=0.05, bias=0.4)
COMPRESSED = Behaviour(quality=0.2, refusal=0.15, bias=0.9)


def _draws(rng: np.random.Generator, z: float, model: Behaviour, n: int) -> list[str]:
    out = []
    for _ in range(n):
        if rng.random() < model.refusal:
            out.append(REFUSE)
        else:
            out.append(GOOD if rng.random() < _phi(model.quality + z) else BAD)
    return out


# ---- outcome writers: behaviours of one sample's draws -> that perspective's outcome ----------

def _stereotype(sample: Sample, kinds: list[str], rng: np.random.Generator) -> dict[str, Any]:
    label = {GOOD: "DISAGREE", BAD: "AGREE", REFUSE: "NO_RESPONSE"}
    return {"labels": [label[k] for k in kinds], "group": sample.metadata["group"], "topic": sample.metadata["topic"]}


def _toxicity(sample: Sample, kinds: list[str], rng: np.random.Generator) -> dict[str, Any]:
    tox = [float(rng.uniform(0.0, 0.3) if k == GOOD else rng.uniform(0.4, 1.0) if k == BAD else rng.uniform(0, .1))
           for k in kinds]
    return {"toxicity": tox, "rejected": [k == REFUSE for k in kinds], "max_toxicity": max(tox),
            "scorer": "offline", "stripped": True}


def _correct_refusal(sample: Sample, kinds: list[str], rng: np.random.Generator) -> dict[str, Any]:
    k = kinds[0]
    return {"correct": k == GOOD, "refusal": k == REFUSE, "prediction": -1 if k == REFUSE else int(k == GOOD),
            "label": sample.target, "digit": None, "pred": k, "pre": k, "unknown": False}


def _adv_demonstration(sample: Sample, kinds: list[str], rng: np.random.Generator) -> dict[str, Any]:
    """On a backdoor attack-success file "correct" means the backdoor worked: the good model resists it."""
    out = _correct_refusal(sample, kinds, rng)
    if sample.metadata.get("split") == "asr":
        out["correct"] = kinds[0] == BAD
    return out


def _privacy(sample: Sample, kinds: list[str], rng: np.random.Generator) -> dict[str, Any]:
    if sample.scenario == "enron_email_extraction":
        items = [{"exact": k == BAD, "local": k == BAD, "domain": k == BAD, "reject": k == REFUSE} for k in kinds]
    else:
        items = [{"leak": k == BAD, "reject": k == REFUSE} for k in kinds]
    return {"items": items}


def _machine_ethics(sample: Sample, kinds: list[str], rng: np.random.Generator) -> dict[str, Any]:
    k = kinds[0]
    label = sample.target
    if sample.scenario in ("zero_shot", "few_shot"):
        pred = None if k == REFUSE else (label if k == GOOD else ("not wrong" if label == "wrong" else "wrong"))
        return {"pred": pred, "answered": pred is not None, "label": label, "correct": k == GOOD,
                "not_wrong": pred == "not wrong"}
    pred = None if k == REFUSE else ("wrong" if k == GOOD else "not wrong")
    return {"pred": pred, "answered": pred is not None, "label": label, "correct": pred == label,
            "not_wrong": pred == "not wrong"}


def _mmlu(sample: Sample, kinds: list[str], rng: np.random.Generator) -> dict[str, Any]:
    return {"pred": "A" if kinds[0] == GOOD else "B", "correct": kinds[0] == GOOD}


Writer = Callable[[Sample, list[str], np.random.Generator], dict[str, Any]]
WRITERS: dict[str, Writer] = {
    "stereotype": _stereotype, "toxicity": _toxicity, "adv_glue": _correct_refusal, "ood": _correct_refusal,
    "adv_demonstration": _adv_demonstration, "privacy": _privacy, "machine_ethics": _machine_ethics,
    "mmlu": _mmlu,
}


def _fairness_outcomes(samples: list[Sample], z: dict[str, float], model: Behaviour,
                       rng: np.random.Generator, perspective: Any) -> list[dict[str, Any]]:
    """Fairness needs the attribute to move the prediction: P(1) = Phi(z + bias * (attr - 0.5))."""
    out = []
    for s in samples:
        attr = s.metadata["attr"]
        if rng.random() < model.refusal:
            pred = None
        else:
            pred = int(rng.random() < _phi(0.3 * z[unit_key(perspective, s)] + model.bias * (attr - 0.5)))
        out.append({"pred": pred, "known": pred is not None, "coin_flip": False, "label": s.target, "attr": attr,
                    "dataset": s.metadata["dataset"]})
    return out


# ---- structures ----------------------------------------------------------------------------------

def synthetic_samples(name: str, per_scenario: int) -> list[Sample]:
    """AdvGLUE++ (no local data) and MMLU (a log-likelihood measure): samples built by hand."""
    params = GenParams(max_tokens=8)
    perspective = get_perspective(name)
    scenarios = perspective.scenarios[:19]  # AdvGLUE++: its 9 cells; MMLU: a third of its 57 subjects
    return [Sample(id=f"{sc}/{i}", perspective=name, scenario=sc, messages=({"role": "user", "content": f"{sc} {i}"},),
                   params=params, target=i % 2) for sc in scenarios for i in range(per_scenario)]


def real_samples(name: str, data_dir: Path, per_scenario: int, options: dict[str, Any] | None = None) -> list[Sample]:
    perspective = get_perspective(name)
    opts = EvalOptions(limit=per_scenario, samples=2, extra=dict(options or {}))
    return perspective.samples(LocalFolder(data_dir), opts)


def simulate(perspective: Any, samples: list[Sample], model: Behaviour, rng: np.random.Generator,
             z: dict[str, float] | None = None) -> tuple[list[ScoredSample], dict[str, float]]:
    """Scored samples of one model; ``z`` (unit -> difficulty) is drawn when not given, so two
    models simulated with the same ``z`` are paired."""
    if z is None:
        keys = sorted({unit_key(perspective, s) for s in samples})
        z = dict(zip(keys, rng.standard_normal(len(keys)).tolist(), strict=True))
    if perspective.name == "fairness":
        outcomes = _fairness_outcomes(samples, z, model, rng, perspective)
        return [ScoredSample(s, ["yes"], o) for s, o in zip(samples, outcomes, strict=True)], z
    writer = WRITERS[perspective.name]
    scored = []
    for s in samples:
        kinds = _draws(rng, z[unit_key(perspective, s)], model, s.params.n)
        scored.append(ScoredSample(s, [f"response {k}" for k in kinds], writer(s, kinds, rng)))
    return scored, z


def population_change(perspective: Any, samples: list[Sample], profile: str, options: EvalOptions,
                      seed: int, copies: int = POPULATION_COPIES) -> float:
    """The true change: aggregates over ``copies`` fresh sets of units with the study's structure."""
    rng = np.random.default_rng(seed)
    dense: list[ScoredSample] = []
    comp: list[ScoredSample] = []
    for _ in range(copies):
        d, z = simulate(perspective, samples, DENSE, rng)
        c, _ = simulate(perspective, samples, COMPRESSED, rng, z)
        dense += d
        comp += c
    return (perspective.aggregate(comp, profile, options).score
            - perspective.aggregate(dense, profile, options).score)


def _run(tag: str, name: str, scored: list[ScoredSample], score: float, profile: str) -> Run:
    run = Run(path=Path(f"/simulated/{tag}"), summary={"profile": profile, "options": {}},
              results={name: {"score": score}})
    run._scored[name] = scored
    return run


def coverage(name: str, samples: list[Sample], studies: int, resamples: int, seed: int = 0,
             profile: str = "comp-trust") -> dict[str, Any]:
    """Share of ``studies`` whose 95% interval of the change covers the true change."""
    perspective = get_perspective(name)
    options = EvalOptions()
    truth = population_change(perspective, samples, profile, options, seed + 10_000)
    rng = np.random.default_rng(seed)
    covered = with_interval = 0
    widths = []
    for i in range(studies):
        dense, z = simulate(perspective, samples, DENSE, rng)
        comp, _ = simulate(perspective, samples, COMPRESSED, rng, z)
        runs = [_run(f"{i}/dense", name, dense, perspective.aggregate(dense, profile, options).score, profile),
                _run(f"{i}/comp", name, comp, perspective.aggregate(comp, profile, options).score, profile)]
        boot = bootstrap_perspective(name, runs, resamples, seed + i, quantities=("score",))
        reps = boot.replicates.get("score", {})
        if len(reps) < 2:
            continue
        path = str(runs[0].path)
        ci, _ = interval(reps[str(runs[1].path)] - reps[path], units=boot.units[path], strata=boot.strata[path])
        if ci is None:
            continue
        with_interval += 1
        covered += ci[0] <= truth <= ci[1]
        widths.append(ci[1] - ci[0])
    return {"truth": truth, "studies": studies, "with_interval": with_interval,
            "coverage": covered / with_interval if with_interval else None,
            "mean_width": float(np.mean(widths)) if widths else None}
