"""Expand a sweep file into artifacts and jobs.

Why merge artifacts here?  A method without calibration (magnitude, RTN) gives
the same weights for every seed, so ``seeds: [0, 1, 2]`` must not compress and
evaluate it three times.  Configs are normalised by
:func:`comptrust.compression.make_config` and merged when equal.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comptrust.backends.base import kv_label
from comptrust.compression import make_config
from comptrust.compression.methods import family_of
from comptrust.errors import ConfigError
from comptrust.registry import PERSPECTIVES, TRUST_PERSPECTIVES, available_perspectives
from comptrust.sweep.config import ModelEntry, SweepConfig
from comptrust.types import stable_hash


@dataclass
class Artifact:
    """One model to evaluate: a base model, dense or compressed with one normalised config."""

    id: str
    model: ModelEntry
    method: str | None = None  # None: the dense baseline
    params: dict[str, Any] = field(default_factory=dict)  # compress_model keyword arguments, seed included
    config: dict[str, Any] | None = None  # normalised CompressionConfig JSON
    seeds: list[int] = field(default_factory=list)  # sweep seeds that map to this artifact
    kv_cache: str | None = None  # KV-cache quantization while generating (int4, int2)
    backend: str | None = None  # overrides the sweep's backend (gguf: llamacpp)

    @property
    def dense(self) -> bool:
        return self.method is None

    def describe(self) -> str:
        extra = kv_label(self.kv_cache) + (f" [{self.backend}]" if self.backend else "")
        if self.dense:
            return f"{self.model.model} (dense){extra}"
        shown = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.model.model} {self.method} ({shown}){extra}"


@dataclass(frozen=True)
class Job:
    """One (artifact, perspective) evaluation; its result lands in the artifact's run folder."""

    artifact: str
    perspective: str

    @property
    def id(self) -> str:
        return f"{self.artifact}/{self.perspective}"


@dataclass
class Plan:
    config: SweepConfig
    sweep_dir: Path
    artifacts: list[Artifact]
    perspectives: list[str]
    source: str = "<sweep>"

    @property
    def jobs(self) -> list[Job]:
        return [Job(a.id, p) for a in self.artifacts for p in self.perspectives]

    def artifact(self, artifact_id: str) -> Artifact:
        return next(a for a in self.artifacts if a.id == artifact_id)

    def backend_name(self, artifact: Artifact) -> str:
        """The artifact's own backend, else llamacpp for GGUF files, else the sweep's."""
        if artifact.backend:
            return artifact.backend
        return "llamacpp" if artifact.method == "gguf" else self.config.backend.name

    def chat_template(self, artifact: Artifact) -> str | None:
        return artifact.model.chat_template or self.config.backend.chat_template

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source, "sweep_dir": str(self.sweep_dir), "perspectives": self.perspectives,
            "artifacts": [{"id": a.id, "model": a.model.model, "method": a.method, "params": a.params,
                           "config": a.config, "seeds": a.seeds, "chat_template": self.chat_template(a),
                           "kv_cache": a.kv_cache, "backend": self.backend_name(a)}
                          for a in self.artifacts],
            "jobs": [j.id for j in self.jobs],
        }


def model_label(entry: ModelEntry) -> str:
    raw = entry.name or Path(entry.model.rstrip("/")).name or entry.model
    return re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-") or "model"


def select_perspectives(config: SweepConfig) -> list[str]:
    available = available_perspectives()
    names = [p for p in TRUST_PERSPECTIVES if p in available] if config.perspectives == "all" \
        else list(config.perspectives)
    names += [b for b in config.benign if b not in names]
    for name in names:
        if name not in PERSPECTIVES or name not in available:
            raise ConfigError(f"unknown perspective {name!r} in the sweep", f"choose from: {', '.join(available)}")
    if not names:
        raise ConfigError("the sweep selects no perspective", "list perspectives (or 'all') in the sweep file")
    return names


def expand_entry(params: dict[str, Any]) -> list[dict[str, Any]]:
    """``{"bits": [3, 4], "group_size": 128}`` -> one dict per combination of list values."""
    keys = list(params)
    values = [v if isinstance(v, list) else [v] for v in params.values()]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]


def _label(method: str, config: dict[str, Any], given: dict[str, Any]) -> str:
    if config.get("gguf_type"):
        return f"{method}-{config['gguf_type']}"
    if family_of(method) == "format":
        label = method + (f"-sq{config['smoothing']:g}" if "smoothing" in given else "")
    elif config.get("bits") is not None:
        label = f"{method}-{config['bits']}bit"
        if "group_size" in given:
            label += f"-g{config.get('group_size')}"
    else:
        pattern = config.get("pattern", "unstructured")
        label = f"{method}-{pattern.replace(':', 'of')}" if pattern != "unstructured" \
            else f"{method}-{round(100 * config['sparsity'])}pct"
    if config.get("calib") is not None:
        label += f"-s{config.get('seed', 0)}"
    return label


def build_plan(config: SweepConfig, source: str = "<sweep>", out: str | Path | None = None) -> Plan:
    """Artifacts (dense first per model, compressed artifacts merged when equal) and perspectives."""
    perspectives = select_perspectives(config)
    artifacts: list[Artifact] = []
    seen: dict[str, Artifact] = {}
    models = config.model_entries()
    labels = [model_label(m) for m in models]
    if len(set(labels)) != len(labels):
        raise ConfigError("two models in the sweep get the same label",
                          "give each model a distinct 'name' in the sweep file")
    for entry, mlabel in zip(models, labels, strict=True):
        if config.dense:
            artifacts.append(Artifact(id=f"{mlabel}-dense", model=entry))
        for c_index, comp in enumerate(config.compressions):
            if comp.method == "dense":
                if comp.params():
                    raise ConfigError(f"compressions[{c_index}] in {source}: method dense takes no compression "
                                      f"parameter ({', '.join(comp.params())})", "keep only kv_cache and backend")
                for kv in comp.kv_caches():
                    art = Artifact(id=f"{mlabel}-dense" + (f"-kv{kv}" if kv else "")
                                   + (f"-{comp.backend}" if comp.backend else ""), model=entry, kv_cache=kv,
                                   backend=comp.backend)
                    if all(a.id != art.id for a in artifacts):
                        artifacts.append(art)
                continue
            for params, kv in itertools.product(expand_entry(comp.params()), comp.kv_caches()):
                for seed in config.seeds:
                    try:
                        normal = make_config(comp.method, seed=seed, **params)
                    except ConfigError as exc:
                        raise ConfigError(f"compressions[{c_index}] in {source}: {exc.problem}", exc.fix) from None
                    cfg = normal.to_json()
                    key = stable_hash([entry.model, cfg, kv, comp.backend])
                    if key in seen:
                        if seed not in seen[key].seeds:
                            seen[key].seeds.append(seed)
                        continue
                    kwargs = dict(params)
                    if normal.calib is not None:
                        kwargs["seed"] = seed
                    label = _label(comp.method, cfg, params) + (f"-kv{kv}" if kv else "") \
                        + (f"-{comp.backend}" if comp.backend else "")
                    art = Artifact(id=f"{mlabel}-{label}", model=entry, method=comp.method, params=kwargs,
                                   config=cfg, seeds=[seed], kv_cache=kv, backend=comp.backend)
                    seen[key] = art
                    artifacts.append(art)
    ids = [a.id for a in artifacts]
    for art in artifacts:  # same readable label, different configs: add the config hash
        if ids.count(art.id) > 1:
            art.id = f"{art.id}-{stable_hash(art.config, 6)}"
    if not artifacts:
        raise ConfigError(f"{source} plans no model to evaluate", "list compressions or set 'dense: true'")
    name = config.name or (Path(source).stem if source != "<sweep>" else "sweep")
    sweep_dir = Path(out or config.out or Path("comptrust-sweeps") / name)
    return Plan(config=config, sweep_dir=sweep_dir, artifacts=artifacts, perspectives=perspectives, source=source)
