"""What both executors share: job state on disk, loading artifacts, and writing run folders.

Layout of a sweep folder::

    plan.json                              the expanded plan (rewritten each run)
    state/<artifact>/artifact.json         where the artifact lives, its backend fingerprint and info
    state/<artifact>/<perspective>.json    {"status": "done" | "failed", "error": ..., ...}
    runs/<artifact>/                       a normal run folder (summary.json, <perspective>/...)

A job is skipped when its marker says ``done``; anything else (failed, missing)
is run again, and its generations come from the cache wherever they exist.
Only the process that runs the sweep (the Ray driver) writes here.
"""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path
from typing import Any

from comptrust import api
from comptrust.backends.base import Backend
from comptrust.compression.pipeline import compress_model
from comptrust.data.source import open_source
from comptrust.errors import ComptrustError, ConfigError
from comptrust.runner import evaluate, run_id
from comptrust.store.cache import Cache
from comptrust.store.files import atomic_write_json
from comptrust.store.record import RunSummary, read_spec, read_summary
from comptrust.store.runs import RunDir
from comptrust.sweep.plan import Artifact, Job, Plan


class SweepState:
    """Completion markers and artifact records of one sweep folder."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.root = plan.sweep_dir

    def marker(self, job: Job) -> Path:
        return self.root / "state" / job.artifact / f"{job.perspective}.json"

    def status(self, job: Job) -> dict[str, Any] | None:
        p = self.marker(job)
        return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None

    def done(self, job: Job) -> bool:
        return (self.status(job) or {}).get("status") == "done"

    def pending(self) -> list[Job]:
        return [j for j in self.plan.jobs if not self.done(j)]

    def mark(self, job: Job, status: str, **fields: Any) -> None:
        atomic_write_json(self.marker(job), {"job": job.id, "status": status, "time": time.time(), **fields})

    def mark_failed(self, job: Job, exc: BaseException) -> None:
        error = exc.one_line() if isinstance(exc, ComptrustError) else f"{type(exc).__name__}: {exc}"
        self.mark(job, "failed", error=error.splitlines()[0] if error else type(exc).__name__,
                  traceback=traceback.format_exception(exc)[-3:])

    def artifact_record(self, artifact_id: str) -> dict[str, Any] | None:
        p = self.root / "state" / artifact_id / "artifact.json"
        return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None

    def record_artifact(self, artifact_id: str, **fields: Any) -> None:
        record = (self.artifact_record(artifact_id) or {}) | fields
        atomic_write_json(self.root / "state" / artifact_id / "artifact.json", record)

    def run_dir(self, artifact_id: str) -> Path:
        return self.root / "runs" / artifact_id

    def write_plan(self) -> None:
        atomic_write_json(self.root / "plan.json", self.plan.to_json())

    def counts(self) -> dict[str, int]:
        out = {"done": 0, "failed": 0, "missing": 0}
        for job in self.plan.jobs:
            status = (self.status(job) or {}).get("status", "missing")
            out[status if status in out else "missing"] += 1
        return out

    def failures(self) -> list[dict[str, Any]]:
        return [s for j in self.plan.jobs if (s := self.status(j)) and s.get("status") == "failed"]


def data_source(plan: Plan) -> Any:
    ev = plan.config.eval
    return open_source(ev.data_dir, smoke=ev.smoke, hub_revision=ev.hub_revision)


def materialize(artifact: Artifact, log: Any = None) -> str:
    """The model spec to load: the base model for dense, else the (reused) compressed folder."""
    if artifact.dense:
        return artifact.model.model

    return str(compress_model(artifact.model.model, artifact.method, log=log, **artifact.params))


def backend_settings(plan: Plan, artifact: Artifact) -> dict[str, Any]:
    """How this artifact is loaded, the same on every executor: its own backend (gguf -> llamacpp), the
    sweep's batch size, the sweep's backend options (when it runs on the sweep's backend), its KV cache."""
    b = plan.config.backend
    name = plan.backend_name(artifact)
    options = dict(b.options) if name == b.name else {}
    if artifact.kv_cache:
        if name != "hf":
            raise ConfigError(f"kv_cache applies to the hf backend, not {name} ({artifact.id})",
                              "evaluate KV-cache variants with backend hf")
        options["kv_cache"] = artifact.kv_cache
    return {"name": name, "batch_size": b.batch_size, "options": options}


def load_backend(plan: Plan, artifact: Artifact, model_spec: str) -> Backend:
    settings = backend_settings(plan, artifact)
    return api.load_model(model_spec, backend=settings["name"], batch_size=settings["batch_size"],
                          chat_template=plan.chat_template(artifact), **settings["options"])


def evaluate_job(plan: Plan, state: SweepState, job: Job, backend: Backend, cache: Cache) -> dict[str, Any]:
    """Evaluate one perspective into the artifact's run folder, then mark and merge."""
    run_dir = state.run_dir(job.artifact)
    summary = evaluate(backend, [job.perspective], data_source(plan), plan.config.eval.to_options(), run_dir=run_dir,
                       cache=cache, quiet=True)
    entry = summary["perspectives"][job.perspective]
    state.mark(job, "done", score=entry.get("score"), generation=entry.get("generation"))
    merge_summary(plan, state, job.artifact, summary)
    return entry


def merge_summary(plan: Plan, state: SweepState, artifact_id: str, last: dict[str, Any] | None = None) -> None:
    """One summary per artifact with every finished perspective (``evaluate`` writes one at a time)."""
    run = RunDir(state.run_dir(artifact_id))
    if last is None:
        if not run.summary_path.is_file():
            return
        summary = read_summary(run.root)
    else:
        summary = RunSummary.from_dict(last, run.summary_path).copy()
    done = [p for p in plan.perspectives if state.done(Job(artifact_id, p))]
    summary.perspectives = {p: r for p in done if (r := run.read_result(p)) is not None}
    summary.finished = len(done) == len(plan.perspectives)
    summary.sweep = {"dir": str(plan.sweep_dir), "artifact": artifact_id, "planned": plan.perspectives}
    if run.spec_path.is_file():
        spec = read_spec(run.root)
        spec.perspectives = list(plan.perspectives)
        spec.run_id = run_id(spec)
        run.write_spec(spec.to_dict())
        summary.run_id = spec.run_id
    run.write_summary(summary.to_dict())
