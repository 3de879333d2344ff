"""Fabricated run folders for report tests, in the exact format the runner writes.

``FakeAccuracy`` is a tiny perspective (score = % correct, two scenarios that
must both be present) that tests register under real perspective ids by
monkeypatching ``comptrust.registry.PERSPECTIVES`` (:func:`register_fakes`, the
``fake_perspectives`` fixture of conftest.py), so the report's bootstrap
re-aggregates through the registry exactly as it does for real perspectives.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from comptrust import registry
from comptrust.perspectives.base import Perspective
from comptrust.report.runs import MEASURES
from comptrust.types import GenParams, PerspectiveResult, Sample, ScoredSample

PARAMS = GenParams(max_tokens=8)


class FakeAccuracy(Perspective):
    """Score = 100 x share of samples answered correctly; needs both scenarios."""

    name = "fake"
    version = 1
    scenarios = ("a", "b")

    def load_records(self, data, scenario, options):  # pragma: no cover - reports never load data
        raise NotImplementedError

    def sample_from_record(self, scenario, record, index, options):  # pragma: no cover
        raise NotImplementedError

    def score(self, sample: Sample, responses: list[str], profile: str) -> dict[str, Any]:
        return {"correct": responses[0] == sample.target, "refused": responses[0] == "I refuse."}

    def aggregate(self, scored: list[ScoredSample], profile: str, options=None) -> PerspectiveResult:
        present = {s.sample.scenario for s in scored}
        missing = [s for s in self.scenarios if s not in present]
        if missing:  # a stratified bootstrap must never get here
            return PerspectiveResult(self.name, self.version, profile, None, None, partial=True, missing=missing)
        correct = sum(s.outcome["correct"] for s in scored) / len(scored)
        refused = sum(s.outcome["refused"] for s in scored) / len(scored)
        return PerspectiveResult(self.name, self.version, profile, 100 * correct, 100 * refused,
                                 n_samples=len(scored))

    def answered_only(self, scored: list[ScoredSample], profile: str) -> list[ScoredSample]:
        return [s for s in scored if not s.outcome["refused"]]


class FakeRefusalCredit(FakeAccuracy):
    """Like DecodingTrust's fairness or stereotype: a refusal is never a biased answer, so refusing
    raises the score.  Score = 100 x (1 - share of "biased" answers)."""

    def score(self, sample: Sample, responses: list[str], profile: str) -> dict[str, Any]:
        return {"correct": responses[0] != "biased", "refused": responses[0] == "I refuse."}


def _standing_in(fake: type[FakeAccuracy], name: str) -> type[FakeAccuracy]:
    """``fake``'s scoring under the real perspective ``name``'s title and column: the report names each
    measure by its registered class, so a fake registered for it must be named as it is."""
    real = registry.get_class(registry.PERSPECTIVES, name, "perspective")  # read at import, before any patching
    return type(f"{fake.__name__}_{name}", (fake,), {"title": real.title, "column": real.column})


# Registry entries are import paths, so each stand-in is an attribute of this module (FakeAccuracy_toxicity, ...).
for _fake in (FakeAccuracy, FakeRefusalCredit):
    for _name in MEASURES:
        _cls = _standing_in(_fake, _name)
        globals()[_cls.__name__] = _cls


def register_fakes(monkeypatch: Any, fakes: dict[str, type[FakeAccuracy]] | None = None) -> None:
    """Every measure of the report aggregates through ``FakeAccuracy``, or the class ``fakes`` gives for it."""
    for name in MEASURES:
        fake = (fakes or {}).get(name, FakeAccuracy)
        monkeypatch.setitem(registry.PERSPECTIVES, name, f"{__name__}:{fake.__name__}_{name}")


def dense_model(name: str = "tiny-llama", sha: str = "base-sha") -> dict[str, Any]:
    return {"backend": "hf", "fingerprint": f"hf-{sha}-tmpl-float32", "name": name, "weights_sha256": sha,
            "dtype": "torch.float32", "compression": None}


def compressed_model(method: str = "gptq", bits: int | None = 4, seed: int = 0, base_sha: str = "base-sha",
                     sparsity: float | None = None, pattern: str | None = None,
                     base_name: str = "tiny-llama", group_size: int = 128) -> dict[str, Any]:
    config: dict[str, Any] = {"method": method, "seed": seed}
    if bits is not None:
        config.update(bits=bits, group_size=group_size)
    if sparsity is not None:
        config.update(sparsity=sparsity, pattern=pattern or "unstructured")
    manifest = {"format": "comptrust-artifact", "method": method, "config": config, "params": dict(config),
                "seed": seed, "base_model": {"name": base_name, "weights_sha256": base_sha, "size_bytes": 4_000_000},
                "weights_size_bytes": 1_250_000, "size_bytes": 1_300_000, "wall_time_s": 12.5,
                "sparsity": {"overall": sparsity} if sparsity else None}
    return {"backend": "hf", "fingerprint": f"hf-{method}{bits}{seed}", "name": f"{base_name}-{method}",
            "weights_sha256": f"{method}-{bits}-{seed}", "dtype": "torch.float32", "compression": manifest}


def scored_samples(spec: list[tuple[str, bool]], responses: list[str] | None = None,
                   fake: Perspective | None = None) -> list[ScoredSample]:
    """``[(scenario, correct), ...]`` -> scored samples (ids ``<scenario>/<i>``, same ids across runs).

    ``responses`` (one per sample) replaces the default "yes"/"no" answers."""
    fake = fake or FakeAccuracy()
    out = []
    counters: dict[str, int] = {}
    for k, (scenario, correct) in enumerate(spec):
        i = counters.get(scenario, 0)
        counters[scenario] = i + 1
        sample = Sample(id=f"{scenario}/{i}", perspective="fake", scenario=scenario,
                        messages=({"role": "user", "content": f"Question {scenario}/{i}: say yes."},),
                        params=PARAMS, target="yes")
        texts = [responses[k]] if responses else ["yes" if correct else "no"]
        out.append(ScoredSample(sample, texts, fake.score(sample, texts, "comp-trust")))
    return out


def write_run(root: Path, name: str, model: dict[str, Any], measures: dict[str, Any], *,
              profile: str = "comp-trust", scorers: dict[str, Any] | None = None, data_kind: str = "local",
              tokens_per_second: float | None = 40.0, finished: bool = True,
              options: dict[str, Any] | None = None, aggregator: Perspective | None = None) -> Path:
    """A run folder: ``measures`` maps a perspective id to a list of ScoredSample (written to
    scores.jsonl and aggregated by FakeAccuracy, or by ``aggregator``) or to a plain score (no
    per-sample file)."""
    run = root / name
    run.mkdir(parents=True)
    perspectives: dict[str, Any] = {}
    for pname, value in measures.items():
        if isinstance(value, list):
            result = (aggregator or FakeAccuracy()).aggregate(value, profile).to_json()  # both fakes alike
            result["perspective"] = pname
            (run / pname).mkdir()
            with (run / pname / "scores.jsonl").open("w", encoding="utf-8") as fh:
                for s in value:
                    fh.write(json.dumps({"sample": s.sample.to_json(), "responses": s.responses,
                                         "outcome": s.outcome}) + "\n")
        elif isinstance(value, dict):
            result = value
        else:
            result = PerspectiveResult(pname, 1, profile, float(value), 1.0, n_samples=100).to_json()
        result["scorer"] = (scorers or {}).get(pname, {"parser": f"{pname}@v1"})
        result["generation"] = {"rows": 10, "cached": 0, "generated": 10, "seconds": 2.0,
                                "completion_tokens": 2.0 * (tokens_per_second or 0),
                                "tokens_per_second": tokens_per_second}
        perspectives[pname] = result
        (run / pname).mkdir(exist_ok=True)
        (run / pname / "result.json").write_text(json.dumps(result), encoding="utf-8")
    summary = {"run_id": name, "model": model, "data": {"kind": data_kind}, "options": {"seed": 0, **(options or {})},
               "profile": profile, "seed": 0, "versions": {}, "run_dir": str(run), "perspectives": perspectives,
               "finished": finished}
    (run / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return run
