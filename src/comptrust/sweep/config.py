"""The sweep file: a typed, strict schema so a typo fails before hours of GPU time.

Every section forbids unknown keys; a bad file becomes one ``ConfigError``
line naming the key and the file.  List values inside a compression entry
(``bits: [3, 4, 8]``) expand into one configuration per value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from comptrust.backends.base import KV_CACHE_CHOICES
from comptrust.chat import TEMPLATES
from comptrust.errors import ConfigError
from comptrust.perspectives.base import DEFAULT_PROFILE, PROFILES, EvalOptions

Scalar = int | float | str | bool
KVCache = Literal[("none", *KV_CACHE_CHOICES)]  # type: ignore[valid-type]  # "none": the plain cache


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelEntry(_Strict):
    """A base model: folder, .gguf, hub id or alias; ``name`` labels its artifacts and run folders."""

    model: str
    name: str | None = None
    chat_template: Literal[TEMPLATES] | None = None  # type: ignore[valid-type]


class CompressionEntry(_Strict):
    """One method with its parameters; any parameter given as a list is swept.

    ``method: dense`` means the base weights (with ``kv_cache``: "dense + KV int4").  ``kv_cache``
    quantizes the KV cache while generating (hf backend); ``backend`` overrides the sweep's backend
    for these artifacts (gguf defaults to llamacpp, llama.cpp's own kernels).
    """

    method: str
    bits: int | list[int] | None = None
    group_size: int | str | list[int | str] | None = None
    symmetric: bool | None = None
    act_order: bool | None = None
    damp: float | None = None
    sparsity: float | list[float] | None = None
    pattern: str | list[str] | None = None
    calib_source: str | None = None
    calib_file: str | None = None
    calib_samples: int | None = None
    calib_seqlen: int | None = None
    calib_chat_template: bool | None = None
    type: str | list[str] | None = None  # gguf: llama.cpp type(s), e.g. Q4_K_M
    smoothing: float | list[float] | None = None  # w8a8: SmoothQuant strength
    kv_cache: KVCache | list[KVCache] | None = None  # type: ignore[valid-type]
    backend: Literal["hf", "llamacpp", "vllm"] | None = None

    def params(self) -> dict[str, Any]:
        """Compression parameters (``type`` becomes ``gguf_type``); the evaluation keys are not among them."""
        data = {k: v for k, v in self.model_dump(exclude={"method", "kv_cache", "backend"}).items() if v is not None}
        if "type" in data:
            data["gguf_type"] = data.pop("type")
        return data

    def kv_caches(self) -> list[str | None]:
        values = self.kv_cache if isinstance(self.kv_cache, list) else [self.kv_cache]
        return [None if v in (None, "none") else v for v in values]


class EvalSection(_Strict):
    """What ``comptrust eval`` would take: data source, caps and scoring profile."""

    smoke: bool = False
    data_dir: str | None = None
    hub_revision: str | None = None
    limit: int | None = Field(default=None, ge=1)
    samples: int | None = Field(default=None, ge=1)
    max_new_tokens: int | None = Field(default=None, ge=1)
    profile: Literal[PROFILES] = DEFAULT_PROFILE  # type: ignore[valid-type]
    seed: int = 0
    options: dict[str, Any] = Field(default_factory=dict)

    def to_options(self) -> EvalOptions:
        """The options every job of the sweep evaluates with (local and Ray executors, the dry run's counts)."""
        return EvalOptions(limit=self.limit, samples=self.samples, seed=self.seed, profile=self.profile,
                           max_new_tokens=self.max_new_tokens, extra=dict(self.options))


class BackendSection(_Strict):
    """How jobs generate: ``hf`` (transformers) or ``vllm``; ``options`` go to the backend's loader."""

    name: Literal["hf", "vllm", "llamacpp"] = "hf"
    batch_size: int | None = Field(default=None, ge=1)
    chat_template: Literal[TEMPLATES] | None = None  # type: ignore[valid-type]
    tokens_per_second: float | None = Field(default=None, gt=0)
    options: dict[str, Any] = Field(default_factory=dict)


class RaySection(_Strict):
    """Resources of each Ray task and how many shards a perspective's prompts are split into."""

    address: str | None = None
    num_cpus: float = Field(default=1, ge=0)
    num_gpus: float = Field(default=0, ge=0)
    shards: int = Field(default=1, ge=1)
    max_retries: int = Field(default=0, ge=0)


class SweepConfig(_Strict):
    """The whole grid: models x compressions x seeds x perspectives (+ benign measures)."""

    name: str | None = None
    out: str | None = None
    models: list[ModelEntry | str] = Field(min_length=1)
    compressions: list[CompressionEntry] = Field(default_factory=list)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    dense: bool = True
    perspectives: list[str] | Literal["all"] = "all"
    benign: list[str] = Field(default_factory=list)
    eval: EvalSection = Field(default_factory=EvalSection)
    backend: BackendSection = Field(default_factory=BackendSection)
    ray: RaySection = Field(default_factory=RaySection)

    @field_validator("models")
    @classmethod
    def _models(cls, value: list[ModelEntry | str]) -> list[ModelEntry | str]:
        return [ModelEntry(model=v) if isinstance(v, str) else v for v in value]

    def model_entries(self) -> list[ModelEntry]:
        return [m if isinstance(m, ModelEntry) else ModelEntry(model=m) for m in self.models]


def _where(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("ModelEntry", "str", "list[str]", "literal['all']") or "[" in str(part):
            continue  # pydantic's union-branch labels are not keys the user wrote
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def validation_message(exc: ValidationError, where: str) -> ConfigError:
    """The first problem of a pydantic error as one line naming the key and the file."""
    errors = exc.errors()
    extra = [e for e in errors if e["type"] == "extra_forbidden"]
    err = extra[0] if extra else errors[0]
    key = _where(tuple(err["loc"]))
    if err["type"] == "extra_forbidden":
        return ConfigError(f"unknown key {key!r} in {where}", "see docs/scale.md for the sweep file's keys")
    if err["type"] == "missing":
        return ConfigError(f"missing key {key!r} in {where}", "see examples/sweeps/ for complete files")
    return ConfigError(f"bad value for {key!r} in {where}: {err['msg']}", "see docs/scale.md for allowed values")


def parse_sweep(data: Any, where: str = "<sweep>") -> SweepConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{where} is not a mapping of keys to values", "see examples/sweeps/ for the format")
    try:
        return SweepConfig.model_validate(data)
    except ValidationError as exc:
        raise validation_message(exc, where) from None


def load_sweep(path: str | Path) -> SweepConfig:
    """Read and validate a sweep YAML file."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"sweep file {p} does not exist", "pass the path of a sweep YAML file")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        problem = str(getattr(exc, "problem", None) or exc).splitlines()[0]
        raise ConfigError(f"{p}{at} is not valid YAML ({problem})", "fix the YAML syntax") from None
    return parse_sweep(data, str(p))
