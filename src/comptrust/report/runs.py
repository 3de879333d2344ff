"""Reading run directories into what a report needs: scores, identity and efficiency of a model.

A run folder's ``summary.json`` is read as a typed :class:`~comptrust.store.record.RunSummary`
(a damaged one is a one-line error naming the file).  Its fields may be absent in a record
another version wrote: an absent key becomes ``None`` (shown as missing), never a made-up default.
The compression description is read from the one spelling each writer uses: comptrust's manifest
(``comptrust.json``, docs/compression.md) and a downloaded checkpoint's record
(compression/checkpoint.py, models.gguf_manifest) name method, bits, group size, sparsity, pattern,
sizes and the base model alike.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comptrust.backends.base import kv_label
from comptrust.compression.checkpoint import THIRD_PARTY, with_declared_base
from comptrust.compression.methods import compressor_class, methods
from comptrust.errors import ConfigError, DataError
from comptrust.noise import Perturbation
from comptrust.registry import ReportMeasures
from comptrust.store.record import RunSummary, read_summary
from comptrust.store.runs import RunDir
from comptrust.types import Sample, ScoredSample, stable_hash

MEASURES = ReportMeasures()
"""The report's columns: the paper's nine (``PAPER_NINE``), then any other registered perspective."""

# Methods a downloaded checkpoint may record that are no comptrust compressor (compression/checkpoint.py).
THIRD_PARTY_NAMES = {"bitsandbytes": "bitsandbytes", "compressed-tensors": "compressed-tensors",
                     "unknown": "compressed (method not recorded)"}

# Manifest keys that differ between two compressions of the same configuration
# (calibration seed, measured size and time, provenance); they do not define a variant.
_DTYPE_BITS = {"float32": 32, "bfloat16": 16, "float16": 16, "float64": 64}
_VOLATILE_KEYS = {"seed", "calibration_seed", "size_bytes", "wall_time_s", "time_s", "created", "created_at",
                  "timestamp", "versions", "library_versions", "output", "output_dir", "path", "fingerprint",
                  "model_hash", "hash", "host", "device"}


def method_name(method: str) -> str:
    """How reports name ``method``: its compressor's ``label`` (``INT8 W8A8``), else a third-party name."""
    key = method.lower()
    return compressor_class(key).label if key in methods() else THIRD_PARTY_NAMES.get(key, method)


def _strip_volatile(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip_volatile(v) for k, v in sorted(obj.items())
                if k not in _VOLATILE_KEYS and not k.startswith("measured")}
    if isinstance(obj, list):
        return [_strip_volatile(v) for v in obj]
    return obj


def normalise_pattern(value: Any) -> str | None:
    """``"2:4"``, ``[2, 4]``, ``"2to4"`` -> ``"2:4"``; ``"unstructured"`` stays as is."""
    if value is None:
        return None
    if isinstance(value, list | tuple) and len(value) == 2:
        return f"{value[0]}:{value[1]}"
    text = str(value).strip().lower()
    match = re.fullmatch(r"(\d+)\s*(?:to|:|_|/)\s*(\d+)", text)
    return f"{match[1]}:{match[2]}" if match else (text or None)


@dataclass
class Run:
    """One evaluated model: its summary, identity and (lazily) its scored samples.

    ``summary`` may be given as the dict ``summary.json`` holds; it is read into a :class:`RunSummary`.
    ``results`` maps a perspective to its entry (``summary.json``'s, or ``<perspective>/result.json``).
    """

    path: Path
    summary: RunSummary
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    _scored: dict[str, list[ScoredSample]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.summary, RunSummary):
            self.summary = RunSummary.from_dict(self.summary, Path(self.path) / "summary.json")

    # ---- identity -------------------------------------------------------------------------

    @property
    def model(self) -> dict[str, Any]:
        return self.summary.model or {}

    @property
    def manifest(self) -> dict[str, Any] | None:
        comp = self.model.get("compression")
        return comp if isinstance(comp, dict) and comp else None

    @property
    def kv_cache(self) -> str | None:
        """The KV-cache quantization the run generated with (``int4``), None for the plain cache."""
        kv = self.model.get("kv_cache")
        return str(kv.get("type")) if isinstance(kv, dict) and kv.get("type") else None

    @property
    def is_dense(self) -> bool:
        return self.manifest is None and self.kv_cache is None

    @property
    def is_third_party(self) -> bool:
        """A downloaded checkpoint whose compression record was read from its own files, not comptrust's."""
        return bool(self.manifest) and self.manifest.get("produced_by") == THIRD_PARTY

    @property
    def perturbation(self) -> Perturbation | None:
        """What this run changed to measure the noise floor of the run it replicates (None: a plain run)."""
        return Perturbation.from_json(self.summary.perturbation)

    @property
    def run_id(self) -> str:
        return str(self.summary.run_id or self.path.name)

    @property
    def profile(self) -> str | None:
        return self.summary.profile

    @property
    def model_name(self) -> str:
        """The backend's ``name`` (every backend but the test-only scripted one records one)."""
        name = self.model.get("name")
        return str(name) if name is not None else self.run_id

    @property
    def base_info(self) -> dict[str, Any]:
        """The manifest's description of the dense model (``base_model``: name, weights hash, size)."""
        info = self.manifest.get("base_model") if self.manifest else None
        return info if isinstance(info, dict) else {}

    @property
    def base_name(self) -> str:
        """The dense model this run derives from (itself when dense)."""
        name = self.base_info.get("name") if self.manifest else None
        return str(name) if name is not None else self.model_name

    def base_hashes(self) -> set[str]:
        """Content hashes of the dense weights: the reliable way to match dense and compressed runs."""
        key = self.base_info.get("weights_sha256") if self.manifest else self.model.get("weights_sha256")
        return {str(key)} if key else set()

    def base_names(self) -> set[str]:
        return {self.base_name.rstrip("/").split("/")[-1].lower()}

    @property
    def seed(self) -> Any:
        if self.manifest:
            return self.manifest["seed"] if "seed" in self.manifest else self._params.get("seed")
        return self.summary.seed

    def config_key(self) -> str:
        """What defines the variant: the compression config without its seed (seeds are repeats)."""
        kv = f"+kv-{self.kv_cache}" if self.kv_cache else ""
        if self.manifest is None:
            return "dense" + kv
        config = self.manifest.get("config")
        source = config if isinstance(config, dict) else self.manifest
        backend = self.model.get("backend")
        runtime = f"@{backend}" if self.method == "gguf" and backend else ""  # llama.cpp vs dequantized: two variants
        return stable_hash(_strip_volatile(source), 10) + kv + runtime

    # ---- compression description ----------------------------------------------------------

    @property
    def _params(self) -> dict[str, Any]:
        """Flat compression parameters: the manifest's ``params`` over ``config`` over its top level."""
        if not self.manifest:
            return {}
        merged = {k: v for k, v in self.manifest.items() if not isinstance(v, dict)}
        for key in ("config", "params"):
            if isinstance(self.manifest.get(key), dict):
                merged.update(self.manifest[key])
        return merged

    @property
    def method(self) -> str | None:
        return self._params.get("method") if self.manifest else None

    @property
    def bits(self) -> float | None:
        if self.manifest is None:
            dtype = str(self.model.get("dtype") or "")
            return next((b for key, b in _DTYPE_BITS.items() if key in dtype), None)
        return self._params.get("bits")

    @property
    def stored_bits(self) -> float | None:
        """Measured bits per compressed decoder weight (scales and zero points included; a GGUF's
        fallback tensors too), from the manifest; None when not recorded."""
        storage = (self.manifest or {}).get("storage")
        value = storage.get("effective_bits_per_weight") if isinstance(storage, dict) else None
        return float(value) if isinstance(value, int | float) else None

    @property
    def activation_bits(self) -> int | None:
        """Bits of the activations entering each Linear (FP8/INT8/FP4 formats); None when left in float."""
        fmt = self.manifest.get("quantized_format") if self.manifest else None
        return fmt.get("activation_bits") if isinstance(fmt, dict) else None

    @property
    def kv_bits(self) -> int | None:
        kv = self.model.get("kv_cache")
        return kv.get("bits") if isinstance(kv, dict) else None

    @property
    def group_size(self) -> Any:
        return self._params.get("group_size")

    @property
    def sparsity(self) -> float | None:
        """Target sparsity as a fraction (a manifest may write 50 or 0.5)."""
        value = self._params.get("sparsity")
        if not isinstance(value, int | float):
            return None
        return value / 100 if value > 1 else float(value)

    @property
    def pattern(self) -> str | None:
        return normalise_pattern(self._params.get("pattern"))

    @property
    def size_bytes(self) -> int | None:
        """Weights on disk: the manifest's measure, or the dense folder's weight files."""
        if self.manifest:
            return self.manifest.get("weights_size_bytes")
        size = None
        if self.model.get("path") and Path(self.model["path"]).is_dir():
            files = [p for p in Path(self.model["path"]).iterdir() if p.suffix in (".safetensors", ".bin")]
            size = sum(p.stat().st_size for p in files) or None
        return size

    @property
    def compression_seconds(self) -> float | None:
        return self.manifest.get("wall_time_s") if self.manifest else None

    def describe(self) -> str:
        """A short label such as ``GPTQ 4-bit g128``, ``Wanda 50% 2:4``, ``GGUF Q4_K_M`` or ``dense + KV int4``."""
        kv = kv_label(self.kv_cache)
        if self.manifest is None:
            return f"{self.model_name.rstrip('/').split('/')[-1]} (dense{kv})" if not kv else f"dense{kv}"
        method = str(self.method or "compressed")
        parts = [method_name(method)]
        if method == "gguf":
            parts.append(str(self._params.get("gguf_type") or "?"))
            if self.model.get("backend") == "hf":
                parts.append("(dequantized, hf)")
            return " ".join(parts) + kv
        if method in methods("format"):  # the name already says its bits: no "8-bit" after "FP8"
            return " ".join(parts) + kv
        if method == "bitsandbytes":
            kind = str(self._params.get("weight_type") or "")
            return " ".join([*parts, kind.upper() if kind in ("nf4", "fp4") else kind or f"{self.bits}-bit"]) + kv
        if self.bits is not None:
            parts.append(f"{self.bits:g}-bit")
            if isinstance(self.group_size, int):
                parts.append(f"g{self.group_size}")
        if self.sparsity is not None:
            parts.append(f"{self.sparsity * 100:g}%")
        if self.pattern:
            parts.append(self.pattern)
        return " ".join(parts) + kv

    # ---- scores -----------------------------------------------------------------------------

    def result(self, name: str) -> dict[str, Any] | None:
        return self.results.get(name)

    def score(self, name: str) -> float | None:
        res = self.results.get(name)
        return None if res is None or res.get("score") is None else float(res["score"])

    def refusal(self, name: str) -> float | None:
        res = self.results.get(name)
        return None if res is None or res.get("refusal_rate") is None else float(res["refusal_rate"])

    def scorer(self, name: str) -> Any:
        res = self.results.get(name)
        return None if res is None else res.get("scorer")

    def generation_totals(self) -> dict[str, float] | None:
        """Completions generated, their tokens and the seconds spent, over the perspectives that generated.

        Cached completions cost no time and are not counted; ``None`` when nothing was generated.
        """
        completions = tokens = seconds = 0.0
        for res in self.results.values():
            gen = res.get("generation") or {}
            secs, made = gen.get("seconds"), gen.get("generated")
            if gen.get("kind") == "loglik" or not secs or made == 0:
                continue
            if gen.get("completion_tokens") is not None:
                toks = float(gen["completion_tokens"])
            elif gen.get("tokens_per_second") is not None:
                toks = float(gen["tokens_per_second"]) * float(secs)
            else:
                continue
            completions += float(made if made is not None else gen.get("rows") or 0)
            tokens += toks
            seconds += float(secs)
        return {"completions": completions, "tokens": tokens, "seconds": seconds} if seconds > 0 else None

    def tokens_per_second(self) -> float | None:
        """Generated tokens per second over all perspectives that generated anything."""
        totals = self.generation_totals()
        return totals["tokens"] / totals["seconds"] if totals else None

    def completions_per_second(self) -> float | None:
        """Completions (prompts x draws) per second: unlike tokens/s, not fooled by a model that emits nothing."""
        totals = self.generation_totals()
        return totals["completions"] / totals["seconds"] if totals and totals["completions"] else None

    def tokens_per_completion(self) -> float | None:
        totals = self.generation_totals()
        return totals["tokens"] / totals["completions"] if totals and totals["completions"] else None

    def scored(self, name: str) -> list[ScoredSample]:
        """The per-sample outcomes of one perspective (``<run>/<name>/scores.jsonl``)."""
        if name not in self._scored:

            rows = RunDir(self.path).read_scores(name)
            try:
                self._scored[name] = [ScoredSample(Sample.from_json(r["sample"]), list(r["responses"]),
                                                   dict(r["outcome"])) for r in rows]
            except (KeyError, TypeError) as exc:
                raise DataError(f"{self.path / name / 'scores.jsonl'} has a malformed row ({exc})",
                                "re-run the evaluation of that perspective") from exc
        return self._scored[name]


def load_run(path: Path) -> Run:
    """Read ``summary.json`` and the per-perspective results of one run folder."""
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"run folder {path} does not exist", "pass folders written by 'comptrust eval'")
    rd = RunDir(path)
    summary = read_summary(path)
    results: dict[str, dict[str, Any]] = dict(summary.perspectives)
    for child in sorted(p for p in path.iterdir() if p.is_dir()):
        if child.name not in results and (child / "result.json").is_file():
            res = rd.read_result(child.name)
            if isinstance(res, dict):
                results[child.name] = res
    return Run(path=path, summary=summary, results=results)


def load_runs(paths: list[Path]) -> list[Run]:
    if not paths:
        raise ConfigError("no run folders given", "pass one or more folders written by 'comptrust eval'")
    runs = [load_run(Path(p)) for p in paths]
    seen: dict[Path, int] = {}
    for run in runs:
        key = run.path.resolve()
        if key in seen:
            raise ConfigError(f"run folder {run.path} was given twice", "list each run once")
        seen[key] = 1
    return runs


def linked_replicates(runs: list[Run]) -> tuple[list[Run], list[str]]:
    """The noise-floor reruns the given runs' summaries name (``comptrust eval --noise-floor``) and were
    not given themselves, loaded from beside their run; and a note for each one found or missing."""
    given = {run.path.resolve() for run in runs}
    found: list[Run] = []
    notes: list[str] = []
    for run in runs:
        link = run.summary.noise_floor
        if not isinstance(link, dict) or not isinstance(link.get("run_dir"), str):
            continue
        path = run.path.resolve().parent / Path(link["run_dir"]).name
        if path in given:
            continue
        if not (path / "summary.json").is_file():
            notes.append(f"Run {run.path.name} names a noise-floor rerun {path.name} that is not beside it: "
                         "no noise floor (copy that folder along, or pass it as a run folder).")
            continue
        found.append(load_run(path))
        given.add(path)
        notes.append(f"Noise floor: rerun {path.name} loaded from beside {run.path.name}, as its summary names it.")
    return found, notes


def apply_pairs(runs: list[Run], pairs: dict[Path, Path]) -> None:
    """``comptrust report --pair VARIANT_RUN=DENSE_RUN``: record DENSE_RUN's model as VARIANT_RUN's base.

    For a downloaded checkpoint evaluated without ``--base-model``: the pairing is then by the dense
    run's weights hash, as for comptrust's own artifacts (nothing is written to the run folders).
    """
    by_path = {run.path.resolve(): run for run in runs}
    for variant_dir, dense_dir in pairs.items():
        variant, dense = by_path.get(Path(variant_dir).resolve()), by_path.get(Path(dense_dir).resolve())
        missing = variant_dir if variant is None else dense_dir if dense is None else None
        if missing is not None:
            raise ConfigError(f"--pair names {missing}, which is not among the run folders given",
                              "list both folders of each --pair as RUN_DIR arguments too")
        assert variant is not None and dense is not None
        if not dense.is_dense:
            raise ConfigError(f"--pair {variant_dir}={dense_dir}: {dense_dir} is not a dense model's run",
                              "put the compressed run before '=' and its dense model's run after it")
        base = {"name": dense.model_name, "weights_sha256": dense.model.get("weights_sha256"),
                "given_by": "comptrust report --pair"}
        variant.summary.model = with_declared_base(dict(variant.model), base)


def check_comparable(runs: list[Run]) -> dict[str, Any]:
    """The one profile and scorer per perspective all runs share; a mismatch is an error.

    Scores from different toxicity classifiers, parser versions or scoring
    profiles are not comparable, so the report refuses rather than mixing them.
    """
    profiles = {run.profile for run in runs if run.profile is not None}
    if len(profiles) > 1:
        detail = "; ".join(f"{r.path.name}: {r.profile}" for r in runs)
        raise ConfigError(f"the runs used different scoring profiles ({detail})",
                          "re-score them with one profile (--profile) or report them separately")
    scorers: dict[str, Any] = {}
    for name in sorted({n for run in runs for n in run.results}):
        seen = {json.dumps(run.scorer(name), sort_keys=True): run for run in runs if name in run.results}
        if len(seen) > 1:
            detail = "; ".join(f"{r.path.name}: {k}" for k, r in seen.items())
            raise ConfigError(f"the runs scored {name} with different scorers ({detail})",
                              "re-score them with the same scorer, or report them separately")
        if seen:
            scorers[name] = next(iter(seen.values())).scorer(name)
    return {"profile": profiles.pop() if profiles else None, "scorers": scorers}
