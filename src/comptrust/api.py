"""The small Python API the CLI itself uses: load a model, evaluate, read results.

    from comptrust import api
    backend = api.load_model("smollm2-135m-instruct")
    summary = api.evaluate(backend, ["stereotype"], smoke=True, limit=4, samples=2)
    api.read_run(summary["run_dir"])["perspectives"]["stereotype"]["score"]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from comptrust import runner
from comptrust.backends.base import Backend
from comptrust.compression.checkpoint import declared_base
from comptrust.data.source import open_source
from comptrust.errors import ConfigError
from comptrust.models import local_model_hash
from comptrust.noise import perturbation_for, replicate_dir
from comptrust.perspectives.base import DEFAULT_PROFILE, EvalOptions
from comptrust.registry import BACKENDS, get_class
from comptrust.store.cache import Cache
from comptrust.store.record import read_summary
from comptrust.store.runs import RunDir


def load_model(spec: str, backend: str = "hf", batch_size: int | None = None, chat_template: str | None = None,
               allow_pickle: bool = False, **kwargs: Any) -> Backend:
    """A generation backend for ``spec`` (folder, GGUF, alias, hub id, or server model name)."""

    cls = get_class(BACKENDS, backend, "backend")
    if backend == "hf":
        return cls.from_path(spec, batch_size=batch_size, chat_template=chat_template, allow_pickle=allow_pickle,
                             **kwargs)
    return cls.from_spec(spec, batch_size=batch_size, chat_template=chat_template, **kwargs)


def evaluate(backend: Backend, perspectives: list[str], *, data_dir: str | Path | None = None, smoke: bool = False,
             hub_revision: str | None = None, limit: int | None = None, samples: int | None = None, seed: int = 0,
             profile: str = DEFAULT_PROFILE, scenarios: list[str] | None = None,
             max_new_tokens: int | None = None, out: str | Path | None = None, quiet: bool = True,
             extra: dict[str, Any] | None = None, cache: Cache | None = None,
             divergence: Any = None, base_model: str | dict[str, Any] | None = None,
             perturbation: Any = None) -> dict[str, Any]:
    """Evaluate ``perspectives`` and return the run summary (also written to ``out``).

    ``base_model`` (folder, .gguf, alias or hub id) names the dense model a downloaded checkpoint was
    made from, so the report pairs the two (by weights hash where the base resolves here).

    ``divergence``: a :class:`comptrust.divergence.DivergencePlan` (reference and/or comparison).
    ``perturbation``: a :class:`comptrust.noise.Perturbation` when this run is a noise-floor replicate
    (:func:`evaluate_noise_floor` makes one).
    """
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be at least 1 (got {limit})", "omit --limit to use every record")
    if samples is not None and samples < 1:
        raise ConfigError(f"--samples must be at least 1 (got {samples})", "omit --samples to use the benchmark's n")
    options = EvalOptions(limit=limit, samples=samples, seed=seed, profile=profile, scenarios=scenarios,
                          max_new_tokens=max_new_tokens, extra=dict(extra or {}))
    declared = declare_base_model(base_model) if isinstance(base_model, str) else base_model
    data = open_source(data_dir, smoke=smoke, hub_revision=hub_revision)
    return runner.evaluate(backend, perspectives, data, options, Path(out) if out else None, cache=cache, quiet=quiet,
               divergence=divergence, base_model=declared, perturbation=perturbation)


def evaluate_noise_floor(backend: Backend, summary: dict[str, Any], kind: str, perspectives: list[str],
                         **kwargs: Any) -> dict[str, Any]:
    """Evaluate ``backend`` again as a noise-floor replicate of the run ``summary`` describes.

    ``kwargs`` are the first run's :func:`evaluate` arguments (``seed`` among them; ``out`` and
    ``divergence`` are replaced).  The replicate goes beside the first run
    (:func:`comptrust.noise.replicate_dir`) and the first run's summary records where, so
    ``comptrust report`` finds it.  Returns the replicate's summary.
    """

    seed = int(kwargs.pop("seed", 0))
    kwargs.pop("divergence", None)
    kwargs.pop("out", None)
    perturbation = perturbation_for(kind, str(summary["run_id"]), seed, backend)
    primary = Path(summary["run_dir"])
    replicate = evaluate(backend, perspectives, seed=perturbation.seed, out=replicate_dir(primary, kind),
                         perturbation=perturbation, **kwargs)
    first = read_summary(primary)
    first.noise_floor = {"run_dir": Path(replicate["run_dir"]).name, "run_id": replicate["run_id"],
                         "perturbation": perturbation.to_json()}
    RunDir(primary).write_summary(first.to_dict())
    summary["noise_floor"] = first.noise_floor
    return replicate


def declare_base_model(spec: str) -> dict[str, Any]:
    """``--base-model SPEC`` as a record: hashed when it resolves here, kept by name when it cannot
    (a hub id offline), in which case the report pairs by name and says so."""

    return declared_base(spec, local_model_hash)


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """A finished (or partly finished) run's summary."""
    return RunDir(Path(run_dir)).read_summary()
