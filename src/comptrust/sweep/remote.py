"""Work that runs inside a Ray task: compress an artifact, or generate one perspective shard.

Tasks never touch the sweep folder or the SQLite cache: they return plain data
(completions keyed exactly as :func:`comptrust.runner.generate_cached` keys
them, or recorded log-likelihoods) and the driver stores it.  A loaded backend
is kept per worker process, so shards of the same artifact that land on the
same worker load the weights once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from comptrust import api
from comptrust.backends.base import row_seed
from comptrust.compression.pipeline import compress_model
from comptrust.data.source import open_source
from comptrust.errors import BackendError
from comptrust.registry import get_perspective
from comptrust.store.cache import completion_key, loglik_key
from comptrust.sweep.config import EvalSection
from comptrust.types import GenRow, Sample, stable_hash

_LOADED: dict[str, Any] = {}


def row_plan(fingerprint: str, perspective: Any, samples: Sequence[Sample]) -> list[tuple[Sample, int, str, GenRow]]:
    """Every (sample, draw) with its cache key and generation row, as the runner builds them."""
    out = []
    for s in samples:
        for j in range(s.params.n):
            key = completion_key(fingerprint, perspective.name, perspective.version, s, j)
            out.append((s, j, key, GenRow(messages=s.messages, params=s.params, sample_index=j,
                                          row_seed=row_seed(s.params.seed, s.id, s.prompt_hash, j))))
    return out


def shard_samples(samples: list[Sample], shard: int, shards: int) -> list[Sample]:
    """Round-robin split: every shard gets a similar mix of scenarios and lengths."""
    return samples[shard::shards]


class RecordingBackend:
    """Wraps a log-likelihood backend and keeps every answer it gave (sent back to the driver)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.fingerprint = inner.fingerprint
        self.recorded: dict[str, list[float]] = {}

    def info(self) -> dict[str, Any]:
        return self.inner.info()

    def generate(self, rows: Any, on_result: Any = None) -> Any:
        return self.inner.generate(rows, on_result)

    def choice_logprobs(self, prompts: list[str], choices: list[str]) -> list[list[float]]:
        out = self.inner.choice_logprobs(prompts, choices)
        for prompt, lps in zip(prompts, out, strict=True):
            self.recorded[loglik_key(prompt, choices)] = [float(x) for x in lps]
        return out


class ReplayBackend:
    """The driver's stand-in for a remote backend: same fingerprint, answers only from what came back."""

    def __init__(self, fingerprint: str, info: dict[str, Any], logprobs: dict[str, list[float]] | None = None):
        self.fingerprint = fingerprint
        self.name = str(info.get("backend", "replay"))
        self._info = dict(info)
        self.logprobs = logprobs or {}

    def info(self) -> dict[str, Any]:
        return dict(self._info)

    def generate(self, rows: Any, on_result: Any = None) -> Any:
        raise BackendError(f"{len(rows)} completions are missing after every shard finished",
                           "rerun the sweep; if it persists, the workers report different fingerprints")

    def choice_logprobs(self, prompts: list[str], choices: list[str]) -> list[list[float]]:
        try:
            return [self.logprobs[loglik_key(p, choices)] for p in prompts]
        except KeyError:
            raise BackendError("a log-likelihood answer did not come back from the workers",
                               "rerun the sweep") from None


def compress_task(payload: dict[str, Any]) -> str:
    return str(compress_model(payload["model"], payload["method"], **payload["params"]))


def _backend(payload: dict[str, Any]) -> Any:
    b = payload["backend"]
    key = stable_hash([payload["model_spec"], b, payload["chat_template"]])
    if key not in _LOADED:
        _LOADED.clear()  # one model per worker process at a time: weights are large
        _LOADED[key] = api.load_model(payload["model_spec"], backend=b["name"], batch_size=b["batch_size"],
                                      chat_template=payload["chat_template"], **b["options"])
    return _LOADED[key]


def shard_task(payload: dict[str, Any]) -> dict[str, Any]:
    """Generate one shard of one perspective for one artifact; returns what the driver stores."""
    import time

    ev = EvalSection.model_validate(payload["eval"])  # the driver sent ``model_dump()``
    backend = _backend(payload)
    data = open_source(ev.data_dir, smoke=ev.smoke, hub_revision=ev.hub_revision)
    options = ev.to_options()
    perspective = get_perspective(payload["perspective"])
    out: dict[str, Any] = {"fingerprint": backend.fingerprint, "info": backend.info(), "rows": [],
                           "logprobs": {}, "seconds": 0.0, "completion_tokens": 0}
    started = time.perf_counter()
    if perspective.kind == "loglik":
        recorder = RecordingBackend(backend)
        perspective.evaluate_loglik(recorder, data, options)
        out["logprobs"] = recorder.recorded
    else:
        samples = shard_samples(perspective.samples(data, options), payload["shard"], payload["shards"])
        skip = set(payload.get("skip") or ())
        todo = [(s, j, key, row) for s, j, key, row in row_plan(backend.fingerprint, perspective, samples)
                if key not in skip]
        if todo:
            completions = backend.generate([row for *_, row in todo])
            for (s, j, key, _row), c in zip(todo, completions, strict=True):
                out["rows"].append([key, s.id, j, c.text, c.prompt_tokens, c.completion_tokens])
                out["completion_tokens"] += c.completion_tokens
    out["seconds"] = round(time.perf_counter() - started, 3)
    return out
