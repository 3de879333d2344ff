"""Run perspectives on a backend: samples -> cached batched generation -> score -> store.

Generation goes through the SQLite cache row by row, so a run killed at any
point and started again with the same command regenerates nothing it already
has and ends with exactly the scores an uninterrupted run would produce.

``summary.json`` says where the wall time went (``timing``): startup and imports,
model resolution (conversion) and loading, then per perspective prefill, decode,
the rest of generation (tokenizing, cache lookups and writes), log-likelihoods,
scoring and writing.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from comptrust import __version__
from comptrust.backends.base import Backend, LoglikelihoodBackend, row_seed
from comptrust.compression.checkpoint import with_declared_base
from comptrust.data.source import DataSource
from comptrust.noise import Perturbation, batch_layout, cache_model
from comptrust.perspectives.base import EvalOptions, Perspective, check_profile, check_scenarios, options_for
from comptrust.progress import Progress
from comptrust.registry import get_perspective
from comptrust.runtime.allocator import allocator_info
from comptrust.runtime.threads import threads_info
from comptrust.store.cache import Cache, completion_key, loglik_key
from comptrust.store.record import PerspectiveEntry, RunSpec, RunSummary
from comptrust.store.runs import RunDir
from comptrust.types import Completion, GenRow, PerspectiveResult, Sample, ScoredSample, stable_hash


def generate_cached(backend: Backend, perspective: Perspective, samples: Sequence[Sample], cache: Cache,
                    progress: Progress, perturbation: Perturbation | None = None
                    ) -> tuple[list[list[str]], dict[str, Any]]:
    """Responses for every sample (``n`` each), generating only what the cache lacks.

    A greedy completion's key does not carry the run seed (its text does not depend on it), so a
    run at another seed reuses it.  A batch-layout noise replicate (``perturbation``) keys its
    completions apart and generates them in its own order.
    """
    model = cache_model(backend.fingerprint, perturbation)
    keyed: list[tuple[Sample, int, str]] = []
    for s in samples:
        for j in range(s.params.n):
            keyed.append((s, j, completion_key(model, perspective.name, perspective.version, s, j)))
    found = cache.get_many(k for _, _, k in keyed)
    texts: dict[str, str] = {k: v[0] for k, v in found.items()}
    missing = [(s, j, k) for s, j, k in keyed if k not in found]
    if perturbation is not None:
        missing = perturbation.shuffled(missing, perspective.name)
    rows = [GenRow(messages=s.messages, params=s.params, sample_index=j,
                   row_seed=row_seed(s.params.seed, s.id, s.prompt_hash, j)) for s, j, _ in missing]
    generated_tokens = 0
    started = time.perf_counter()
    task = progress.task(f"{perspective.name}: generating", total=len(keyed), completed=len(keyed) - len(missing))

    def on_result(i: int, completion: Completion) -> None:
        nonlocal generated_tokens
        s, j, key = missing[i]
        # The stored text: another run sharing this cache may have stored this key first.
        texts[key] = cache.put(key, model, perspective.name, s.id, j, completion.text,
                               completion.prompt_tokens, completion.completion_tokens)
        generated_tokens += completion.completion_tokens
        progress.advance(task)

    before = _scheduler_seconds(backend)
    if rows:
        backend.generate(rows, on_result=on_result)
    seconds = time.perf_counter() - started
    after = _scheduler_seconds(backend)
    progress.done(task)
    responses: dict[str, list[str]] = {s.id: [] for s in samples}
    for s, _j, key in keyed:
        responses[s.id].append(texts[key])
    stats = {"rows": len(keyed), "cached": len(keyed) - len(missing), "generated": len(missing),
             "seconds": round(seconds, 3), "completion_tokens": generated_tokens,
             "tokens_per_second": round(generated_tokens / seconds, 2) if rows and seconds > 0 else None}
    if before is not None and after is not None:  # continuous batching says how long prefill and decode took
        stats["prefill_seconds"] = round(after[0] - before[0], 3)
        stats["decode_seconds"] = round(after[1] - before[1], 3)
    return [responses[s.id] for s in samples], stats


def _scheduler_seconds(backend: Backend) -> tuple[float, float] | None:
    """(prefill, decode) seconds a backend has spent so far, where it counts them (the hf backend)."""
    stats = getattr(backend, "stats", None)
    if stats is None or not hasattr(stats, "prefill_seconds"):
        return None
    return stats.prefill_seconds, stats.decode_seconds


def process_started_at() -> float | None:
    """When this process started (seconds since the epoch), from /proc on Linux; None elsewhere."""
    try:
        ticks = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
        boot = next(int(line.split()[1]) for line in open("/proc/stat") if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


class Timing:
    """Wall time by phase, for ``summary.json``: a user sees where a run's time went."""

    PHASES = ("prefill", "decode", "generation_other", "loglik", "scoring", "writing")

    def __init__(self, backend: Backend) -> None:
        self.started = time.perf_counter()
        self.started_at = time.time()
        self.totals = dict.fromkeys(self.PHASES, 0.0)
        self.loading = dict(getattr(backend, "timings", None) or {})

    def add(self, phase: str, seconds: float) -> None:
        self.totals[phase] += seconds

    def add_generation(self, stats: dict[str, Any]) -> dict[str, float]:
        """Split one perspective's generation (or log-likelihood) time into phases."""
        if stats.get("kind") == "loglik":
            parts = {"loglik": stats["seconds"]}
        elif "prefill_seconds" in stats:
            prefill, decode = stats["prefill_seconds"], stats["decode_seconds"]
            parts = {"prefill": prefill, "decode": decode,
                     "generation_other": max(0.0, stats["seconds"] - prefill - decode)}
        else:  # a backend that does not split its time (static batches, servers)
            parts = {"generation_other": stats["seconds"]}
        for phase, seconds in parts.items():
            self.add(phase, seconds)
        return parts

    def summary(self) -> dict[str, Any]:
        """Seconds per phase; ``startup_and_imports`` runs from process start to the model load (Linux)."""
        out: dict[str, Any] = {}
        started = process_started_at()
        load_started = self.loading.get("load_started_at")
        if started is not None and load_started is not None and load_started >= started:
            out["startup_and_imports"] = load_started - started + self.loading.get("imports", 0.0)
        for name in ("model_resolve", "model_load"):
            if name in self.loading:
                out[name] = self.loading[name]
        out |= self.totals
        out["run_total"] = time.perf_counter() - self.started
        if started is not None:
            out["process_total"] = time.time() - started
        return {k: round(v, 3) for k, v in out.items()}


def score_samples(perspective: Perspective, samples: Sequence[Sample], responses: Sequence[list[str]],
                  profile: str) -> list[ScoredSample]:
    """Per-sample outcomes; perspectives with a batched scorer expose ``score_many``."""
    pairs = list(zip(samples, responses, strict=True))
    if hasattr(perspective, "score_many"):
        outcomes = perspective.score_many(pairs, profile)
    else:
        outcomes = [perspective.score(s, r, profile) for s, r in pairs]
    return [ScoredSample(s, list(r), o) for (s, r), o in zip(pairs, outcomes, strict=True)]


def run_spec(backend: Backend, perspectives: Sequence[str], data: DataSource, options: EvalOptions,
             base_model: dict[str, Any] | None = None) -> RunSpec:
    """Everything that determines a run's numbers, plus the environment it ran in.

    ``base_model``: the dense model the user says this one derives from (``--base-model``).
    """
    import numpy
    import torch


    return RunSpec(
        comptrust_version=__version__,
        model=with_declared_base(backend.info(), base_model),
        perspectives=list(perspectives),
        data=data.describe(),
        options=asdict(options),
        deviations=options.deviations(),
        profile=options.profile,
        seed=options.seed,
        versions={"python": platform.python_version(), "torch": torch.__version__,
                  "numpy": numpy.__version__, "platform": platform.platform()},
        threads=threads_info(),
        allocator=allocator_info(),
    )


def run_id(spec: RunSpec | dict) -> str:
    spec = spec.to_dict() if isinstance(spec, RunSpec) else spec
    identity = [spec["model"]["fingerprint"], spec["perspectives"], spec["options"],
                {k: v for k, v in spec["data"].items() if k != "resolved_commit"}]
    if spec.get("perturbation"):  # a noise-floor replicate is a run of its own
        identity.append(spec["perturbation"])
    return stable_hash(identity, 12)


def results_identity(spec: RunSpec | dict) -> str:
    """What every result in one run folder shares: model, data and options (not the perspective list,
    so a sweep can add perspectives to a folder one at a time).  ``spec`` may be another version's."""
    spec = spec.to_dict() if isinstance(spec, RunSpec) else spec
    identity = [spec["model"]["fingerprint"], spec["options"],
                {k: v for k, v in spec["data"].items() if k != "resolved_commit"}]
    if spec.get("perturbation"):
        identity.append(spec["perturbation"])
    return stable_hash(identity, 12)


def claim_run_dir(run: RunDir, spec: RunSpec) -> Path | None:
    """Make ``run`` this run's folder; results of another model, data or options are moved aside.

    Why: the folder is read as one run (``report`` also picks up perspective folders the summary
    does not list), so a rerun with other options killed half way must not leave old and new
    results side by side.  Returns where the old results went.
    """
    old = run.read_spec_if_any()
    try:
        same = old is not None and results_identity(old) == results_identity(spec)
    except (KeyError, TypeError, AttributeError):  # a spec from another comptrust version
        same = False
    if old is None or same:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return run.set_aside(f"superseded-{old.get('run_id', 'unknown')}-{stamp}")


def default_run_dir(backend: Backend, spec: RunSpec) -> Path:
    name = str(spec.model.get("name", backend.name)).replace("/", "_")
    return Path("comptrust-runs") / f"{name}-{run_id(spec)}"


class CachedLoglikelihood:
    """A backend's ``choice_logprobs`` through the cache, keyed by its fingerprint and the prompt.

    Why?  Full MMLU is 14,042 questions x 4 choices of forward passes: a rerun, or a run killed
    half way, must not compute them again.  Each call (one chunk of questions) is committed at
    once; the values come back from JSON bit for bit, so a cached run scores exactly as a fresh one.
    """

    def __init__(self, inner: LoglikelihoodBackend, cache: Cache, perturbation: Perturbation | None = None) -> None:
        self.inner, self.cache = inner, cache
        self.name = getattr(inner, "name", type(inner).__name__)
        # a batch-layout noise replicate computes afresh, under its own keys
        self.fingerprint: str = cache_model(inner.fingerprint, perturbation)  # type: ignore[attr-defined]
        self.computed = 0
        self.from_cache = 0

    def choice_logprobs(self, prompts: list[str], choices: list[str]) -> list[list[float]]:
        keys = [loglik_key(p, choices) for p in prompts]
        found = self.cache.get_logliks(self.fingerprint, keys)
        missing = list({k: i for i, k in enumerate(keys) if k not in found}.values())
        self.from_cache += len(prompts) - len(missing)
        if missing:
            fresh = self.inner.choice_logprobs([prompts[i] for i in missing], choices)
            new = {keys[i]: [float(x) for x in lps] for i, lps in zip(missing, fresh, strict=True)}
            self.cache.put_logliks(self.fingerprint, new)
            found.update(new)
            self.computed += len(missing)
        return [found[k] for k in keys]


def evaluate(backend: Backend, perspectives: Sequence[str], data: DataSource, options: EvalOptions,
             run_dir: Path | None = None, cache: Cache | None = None, quiet: bool = True,
             divergence: Any = None, base_model: dict[str, Any] | None = None,
             perturbation: Perturbation | None = None) -> dict[str, Any]:
    """Evaluate ``perspectives`` and write the run directory; returns the summary
    (:meth:`comptrust.store.record.RunSummary.to_dict`, as ``summary.json`` has it).

    ``divergence``: a :class:`comptrust.divergence.DivergencePlan` (``--divergence``,
    ``--divergence-from``), run after each generating perspective is written.
    ``perturbation``: this run is a noise-floor replicate (:mod:`comptrust.noise`), recorded as such.
    """
    check_profile(options.profile)
    instances = [get_perspective(p) for p in perspectives]  # fail on a bad name before any work
    check_scenarios(instances, options)
    if divergence is not None:
        divergence.prepare(backend, [p.name for p in instances if p.kind != "loglik"])
    spec = run_spec(backend, perspectives, data, options, base_model)
    if perturbation is not None:
        spec.perturbation = perturbation.to_json()
    spec.run_id = run_id(spec)
    run = RunDir(run_dir or default_run_dir(backend, spec)).prepare()
    moved = claim_run_dir(run, spec)
    if moved is not None and not quiet:
        print(f"{run.root} held results of another model, data or options: moved them to {moved}", file=sys.stderr)
    run.write_spec(spec.to_dict())
    own_cache = cache is None
    cache = cache or Cache()
    summary = RunSummary.from_spec(spec, run.root, moved)
    timing = Timing(backend)
    try:
        with Progress(quiet=quiet) as progress, batch_layout(backend, perturbation):
            for perspective in instances:
                own = options_for(perspective, options, perspectives)
                if own is None:
                    continue  # --scenarios selected nothing of this perspective
                result, scored, gen_stats = _evaluate_one(perspective, backend, data, own, cache, progress,
                                                          perturbation)
                entry = PerspectiveEntry(
                    result=result, scorer=perspective.scorer_info(options), options=asdict(own), generation=gen_stats,
                    timing=timing.add_generation(gen_stats) | {"scoring": gen_stats.pop("scoring_seconds")})
                timing.add("scoring", entry.timing["scoring"])
                writing = time.perf_counter()
                run.write_perspective(
                    perspective.name,
                    generations=[{"sample_id": s.sample.id, "scenario": s.sample.scenario,
                                  "responses": s.responses} for s in scored],
                    scores=[{"sample": s.sample.to_json(), "responses": s.responses, "outcome": s.outcome}
                            for s in scored],
                    result=entry.to_dict(),
                )
                if divergence is not None and perspective.kind != "loglik":
                    with progress.status(f"{perspective.name}: divergence from dense (teacher forcing)"):
                        cost = divergence.after_perspective(backend, perspective.name, scored,
                                                            run.perspective_dir(perspective.name), spec.model)
                    if cost:
                        entry.divergence = cost
                summary.data = data.describe()  # now with the commit the hub downloads resolved to
                summary.finished = False
                entry.timing["writing"] = time.perf_counter() - writing
                timing.add("writing", entry.timing["writing"])
                entry.timing = {k: round(v, 3) for k, v in entry.timing.items()}
                summary.perspectives[perspective.name] = entry.to_dict()
                summary.timing = timing.summary()
                run.write_summary(summary.to_dict())  # after every perspective: nothing computed is lost
        summary.finished = True
        summary.timing = timing.summary()
        run.write_summary(summary.to_dict())
        spec.data = summary.data
        run.write_spec(spec.to_dict())
    finally:
        if own_cache:
            cache.close()
    return summary.to_dict()


def _evaluate_one(perspective: Perspective, backend: Backend, data: DataSource, options: EvalOptions,
                  cache: Cache, progress: Progress, perturbation: Perturbation | None = None
                  ) -> tuple[PerspectiveResult, list[ScoredSample], dict]:
    perspective.prepare(options, cache)
    if perspective.kind == "loglik":
        started = time.perf_counter()
        cached = (CachedLoglikelihood(backend, cache, perturbation) if isinstance(backend, LoglikelihoodBackend)
                  else None)
        scored, result = perspective.evaluate_loglik(cached or backend, data, options)
        return result, scored, {"rows": len(scored), "seconds": round(time.perf_counter() - started, 3),
                                "kind": "loglik", "tokens_per_second": None,
                                "cached": cached.from_cache if cached else 0,
                                "computed": cached.computed if cached else 0, "scoring_seconds": 0.0}
    samples = perspective.samples(data, options)
    responses, gen_stats = generate_cached(backend, perspective, samples, cache, progress, perturbation)
    started = time.perf_counter()
    with progress.status(f"{perspective.name}: scoring {len(samples)} samples"):
        scored = score_samples(perspective, samples, responses, options.profile)
        result = perspective.aggregate(scored, options.profile, options)
    gen_stats["scoring_seconds"] = time.perf_counter() - started
    return result, scored, gen_stats
