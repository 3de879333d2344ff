"""Run a sweep plan: ``local`` (sequential, in this process) or ``ray`` (tasks on a cluster).

Both executors resume the same way: jobs whose marker says ``done`` are
skipped, everything else runs again and takes what it can from the generation
cache.  A failing job (or artifact) is recorded with its error and the sweep
goes on; the command's exit status says whether anything failed.
"""

from __future__ import annotations

import gc
import os
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from comptrust.errors import BackendError, ComptrustError, ConfigError
from comptrust.registry import get_perspective
from comptrust.store.cache import Cache
from comptrust.sweep.jobs import (
    SweepState,
    backend_settings,
    data_source,
    evaluate_job,
    load_backend,
    materialize,
    merge_summary,
)
from comptrust.sweep.plan import Artifact, Job, Plan
from comptrust.sweep.remote import ReplayBackend, compress_task, row_plan, shard_samples, shard_task

Log = Callable[[str], None]
EXECUTORS = ("local", "ray")


def run_plan(plan: Plan, executor: str = "local", address: str | None = None, log: Log | None = None,
             cache: Cache | None = None) -> dict[str, Any]:
    """Run every pending job; returns ``{"done", "failed", "missing", "ran", "failures"}``."""
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}", f"choose one of: {', '.join(EXECUTORS)}")
    say = log or (lambda _m: None)
    state = SweepState(plan)
    state.write_plan()
    own = cache is None
    cache = cache or Cache()
    try:
        pending = state.pending()
        say(f"{len(plan.jobs) - len(pending)} of {len(plan.jobs)} jobs already done; running {len(pending)}")
        if pending:
            (run_local if executor == "local" else run_ray)(plan, state, pending, cache, say, address)
    finally:
        if own:
            cache.close()
    return state.counts() | {"ran": len(pending), "failures": state.failures()}


def _by_artifact(jobs: list[Job]) -> dict[str, list[Job]]:
    grouped: dict[str, list[Job]] = defaultdict(list)
    for job in jobs:
        grouped[job.artifact].append(job)
    return grouped


def _free(backend: Any) -> None:
    del backend
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


# ---- local ----------------------------------------------------------------------------------


def run_local(plan: Plan, state: SweepState, pending: list[Job], cache: Cache, say: Log,
              _address: str | None = None) -> None:
    """Artifact by artifact: compress (or reuse), load once, evaluate each pending perspective."""
    for artifact_id, jobs in _by_artifact(pending).items():
        artifact = plan.artifact(artifact_id)
        try:
            say(f"{artifact_id}: preparing {artifact.describe()}")
            spec = materialize(artifact, log=lambda m, a=artifact_id: say(f"{a}: {m}"))
            backend = load_backend(plan, artifact, spec)
        except Exception as exc:  # the artifact cannot exist: every job of it fails, the sweep goes on
            for job in jobs:
                state.mark_failed(job, exc)
            say(f"{artifact_id}: FAILED ({_one_line(exc)})")
            continue
        state.record_artifact(artifact_id, model_spec=spec, fingerprint=backend.fingerprint, info=backend.info())
        for job in jobs:
            try:
                entry = evaluate_job(plan, state, job, backend, cache)
                say(f"{job.id}: done (score {entry.get('score')})")
            except Exception as exc:
                state.mark_failed(job, exc)
                merge_summary(plan, state, artifact_id)
                say(f"{job.id}: FAILED ({_one_line(exc)})")
        _free(backend)


def _one_line(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc  # Ray wraps task errors; show the original
    if isinstance(cause, ComptrustError):
        return cause.one_line()
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0] if text else ''}"


# ---- ray ------------------------------------------------------------------------------------


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs the ray package",
                          "pip install 'comptrust[ray]' (ray==2.60.0), or use --executor local") from None
    return ray


def _worker_env() -> dict[str, str]:
    """Environment the driver passes on (a shared COMPTRUST_HOME is how workers find artifacts)."""
    names = ("COMPTRUST_HOME", "COMPTRUST_MMLU_DATA", "HF_HUB_OFFLINE", "HF_HOME")
    return {n: os.environ[n] for n in names if n in os.environ}


class _RayRun:
    """Driver-side bookkeeping: which tasks are in flight and what each one means."""

    def __init__(self, plan: Plan, state: SweepState, cache: Cache, say: Log) -> None:
        self.plan, self.state, self.cache, self.say = plan, state, cache, say
        self.data = data_source(plan)
        self.options = plan.config.eval.to_options()
        self.in_flight: dict[Any, tuple[str, Any]] = {}
        self.shards_left: dict[str, int] = {}
        self.failed_jobs: set[str] = set()
        self.logprobs: dict[str, dict[str, list[float]]] = defaultdict(dict)

    def payload(self, artifact: Artifact, job: Job, spec: str, shard: int, shards: int,
                skip: list[str]) -> dict[str, Any]:
        cfg = self.plan.config
        # the artifact's own backend and KV cache (gguf -> llamacpp, "dense + KV int4"), as the local executor
        return {"model_spec": spec, "backend": backend_settings(self.plan, artifact),
                "chat_template": self.plan.chat_template(artifact), "eval": cfg.eval.model_dump(),
                "perspective": job.perspective, "shard": shard, "shards": shards, "skip": skip}

    def cached_keys(self, artifact_id: str, job: Job, shard: int, shards: int) -> tuple[list[str], bool]:
        """Keys of this shard already in the cache (needs the fingerprint of an earlier run)."""
        record = self.state.artifact_record(artifact_id) or {}
        perspective = get_perspective(job.perspective)
        if "fingerprint" not in record or perspective.kind == "loglik":
            return [], False
        samples = shard_samples(perspective.samples(self.data, self.options), shard, shards)
        keys = [key for _s, _j, key, _r in row_plan(record["fingerprint"], perspective, samples)]
        found = self.cache.get_many(keys)
        return list(found), len(found) == len(keys)

    def fail_job(self, job: Job, exc: BaseException) -> None:
        if job.id not in self.failed_jobs:
            self.failed_jobs.add(job.id)
            self.state.mark_failed(job, getattr(exc, "cause", None) or exc)
            merge_summary(self.plan, self.state, job.artifact)
            self.say(f"{job.id}: FAILED ({_one_line(exc)})")

    def store(self, job: Job, result: dict[str, Any]) -> None:
        for key, sample_id, j, text, pt, ct in result["rows"]:
            self.cache.put(key, result["fingerprint"], job.perspective, sample_id, j, text, pt, ct)
        self.logprobs[job.id].update(result["logprobs"])
        self.state.record_artifact(job.artifact, fingerprint=result["fingerprint"], info=result["info"])

    def finish(self, job: Job) -> None:
        """All shards are in the cache: score and write the run folder here, in the driver."""
        if job.id in self.failed_jobs:
            return
        record = self.state.artifact_record(job.artifact) or {}
        try:
            if "fingerprint" not in record:
                raise BackendError(f"no worker reported a fingerprint for {job.artifact}", "rerun the sweep")
            backend = ReplayBackend(record["fingerprint"], record.get("info", {}), self.logprobs.pop(job.id, {}))
            entry = evaluate_job(self.plan, self.state, job, backend, self.cache)
            self.say(f"{job.id}: done (score {entry.get('score')})")
        except Exception as exc:
            self.fail_job(job, exc)


def run_ray(plan: Plan, state: SweepState, pending: list[Job], cache: Cache, say: Log,
            address: str | None = None) -> None:
    """One Ray task per artifact to compress and per (artifact, perspective, shard) to generate."""
    ray = import_ray()
    rc = plan.config.ray
    if not ray.is_initialized():
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(address=address or rc.address, include_dashboard=False, log_to_driver=False)
    options = {"num_cpus": rc.num_cpus, "num_gpus": rc.num_gpus, "max_retries": rc.max_retries,
               "runtime_env": {"env_vars": _worker_env()}}
    compress_remote = ray.remote(compress_task).options(**options)
    shard_remote = ray.remote(shard_task).options(**options)
    run = _RayRun(plan, state, cache, say)
    grouped = _by_artifact(pending)

    def submit_shards(artifact: Artifact, spec: str) -> None:
        state.record_artifact(artifact.id, model_spec=spec)
        for job in grouped[artifact.id]:
            loglik = get_perspective(job.perspective).kind == "loglik"
            shards = 1 if loglik else rc.shards
            run.shards_left[job.id] = shards
            for shard in range(shards):
                skip, complete = run.cached_keys(artifact.id, job, shard, shards)
                if complete:
                    run.shards_left[job.id] -= 1
                    continue
                ref = shard_remote.remote(run.payload(artifact, job, spec, shard, shards, skip))
                run.in_flight[ref] = ("shard", job)
            if run.shards_left[job.id] == 0:
                run.finish(job)

    for artifact_id in grouped:
        artifact = plan.artifact(artifact_id)
        if artifact.dense:
            submit_shards(artifact, artifact.model.model)
        else:
            payload = {"model": artifact.model.model, "method": artifact.method, "params": artifact.params}
            run.in_flight[compress_remote.remote(payload)] = ("compress", artifact)
            say(f"{artifact_id}: compressing on a worker")

    while run.in_flight:
        ready, _ = ray.wait(list(run.in_flight), num_returns=1)
        ref = ready[0]
        kind, what = run.in_flight.pop(ref)
        try:
            result = ray.get(ref)
        except Exception as exc:  # a task error (RayTaskError wraps the original) or a lost worker
            if kind == "compress":
                for job in grouped[what.id]:
                    run.fail_job(job, exc)
            else:
                run.fail_job(what, exc)
            continue
        if kind == "compress":
            say(f"{what.id}: compressed -> {result}")
            submit_shards(what, result)
            continue
        run.store(what, result)
        run.shards_left[what.id] -= 1
        if run.shards_left[what.id] == 0:
            run.finish(what)
