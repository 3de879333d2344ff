"""``compress_model``: validate, reuse or compress, measure, save atomically with a manifest.

An artifact's key hashes the base model's weights (and tokenizer, which decides
the calibration tokens) with the normalised config, so asking twice for the same
compression returns the first artifact instead of spending minutes again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from comptrust.compression.awq import awq_mappings
from comptrust.compression.base import (
    MANIFEST_NAME,
    MANIFEST_VERSION,
    artifact_files_problem,
    file_records,
    load_manifest,
    write_manifest,
)
from comptrust.compression.calibration import build_calibration, source_fingerprint
from comptrust.compression.config import CompressionConfig, make_config
from comptrust.compression.engine import _quiet_env
from comptrust.compression.formats import describe_format
from comptrust.compression.gguf import GGUFCompressor, copy_tokenizer
from comptrust.compression.methods import compressor_class, family_of
from comptrust.compression.moe import expert_save_names
from comptrust.errors import ConfigError, DataError, ModelError
from comptrust.gguf.header import describe_gguf, gguf_in
from comptrust.gguf.tools import CONVERTER_INCOMPATIBLE, converter_supports, require_gguf_tools
from comptrust.model_files import check_model_files, weights_fingerprint
from comptrust.models import load_causal_lm, resolve_model
from comptrust.store.files import building, exclusive, remove_leftovers
from comptrust.store.paths import comptrust_home
from comptrust.types import stable_hash

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
                   "chat_template.jinja", "vocab.json", "merges.txt")
# Non-deterministic by nature; everything else in an artifact is a function of (base, config).
VOLATILE_FIELDS = ("wall_time_s", "peak_memory", "created_utc", "path")


def artifacts_dir() -> Path:
    return comptrust_home() / "artifacts"


def compress_model(model_path: str | Path, method: str, out_dir: str | Path | None = None, *,
                   force: bool = False, log: Callable[[str], None] | None = None, **params: Any) -> Path:
    """Compress ``model_path`` with ``method`` and return the artifact folder.

    Without ``out_dir`` the artifact lives in ``$COMPTRUST_HOME/artifacts`` keyed by
    content hash.  An ``out_dir`` that already holds this exact compression is
    returned as is; one holding anything else is an error unless ``force``.
    """
    say = log or (lambda _msg: None)
    config = make_config(method, **params)  # fail on bad options before loading anything
    base = _resolve(model_path)
    key = artifact_key(base, config)
    out = Path(out_dir).expanduser() if out_dir is not None else artifacts_dir() / f"{_slug(base.name)}-{method}-{key}"
    if out.resolve() == base.resolve() or base.resolve().is_relative_to(out.resolve()):
        raise ConfigError(f"--out {out} would overwrite the base model", "choose another --out folder")
    remove_leftovers(out)  # staging or set-aside folders of killed compressions (they can be gigabytes)
    if _reusable(out, key):
        # Before the checks, which may import llm-compressor: the vllm environment has none and
        # evaluates artifacts compressed in the main one (requirements/vllm-env.txt).
        say(f"reusing {out} (same model and config, key {key})")
        return out
    require_engine(method, config.gguf_type)
    check_architecture(base, method, config)
    preflight_group_size(base, config)
    # One process at a time per output folder: a second one waits, then reuses the first one's artifact.
    with exclusive(f"artifact-{stable_hash(str(out.resolve()), 16)}"):
        if _reusable(out, key):
            say(f"reusing {out} (compressed meanwhile by another process, key {key})")
            return out
        if _manifest_key(out) == key:
            say(f"replacing the incomplete artifact {out}")  # same compression: what the user asked for
        elif out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
            raise ConfigError(f"{out} already exists and holds something else",
                              "choose another --out, delete it, or pass --force to overwrite")
        # Built in a hidden sibling and renamed into place when complete: a kill at any point
        # leaves no folder at ``out`` that the reuse check above could accept.
        with building(out) as staged:
            if family_of(method) == "file":
                save_gguf_artifact(base, config, staged, key, say)
            else:
                save_artifact(run_compression(base, config, say), staged, base, key)
    say(f"wrote {out}")
    return out


def _resolve(model_path: str | Path) -> Path:

    return resolve_model(str(model_path)).path


# llm-compressor 0.14.0.1 registers Gemma 2/3 with its default SmoothQuant mappings, which take
# post_attention_layernorm to feed the MLP; in Gemma it normalises the attention output, and resolving fails.
SMOOTHQUANT_BROKEN = ("Gemma2ForCausalLM", "Gemma3ForCausalLM")


def check_architecture(base: Path, method: str, compression: CompressionConfig | None = None) -> str:
    """The model's architecture, if llm-compressor can compress it; else a one-line ModelError."""
    import json

    config = json.loads((base / "config.json").read_text(encoding="utf-8"))
    arch = (config.get("architectures") or [""])[0]
    if not arch.endswith("ForCausalLM") or config.get("is_encoder_decoder"):
        raise ModelError(f"unsupported architecture {arch or config.get('model_type')!r}: comptrust compresses "
                         "decoder-only causal LMs", "pass a *ForCausalLM model such as Llama, Mistral or Qwen2")
    if method == "awq":
        if awq_mappings(arch) is None:
            raise ModelError(f"AWQ has no layer mappings for {arch} in llm-compressor or comptrust",
                             "use gptq or rtn for this model")
    if method == "w8a8" and compression is not None and (compression.smoothing or 0) > 0:
        _quiet_env()
        from llmcompressor.modifiers.transform.smoothquant.utils import MAPPINGS_REGISTRY

        if arch not in MAPPINGS_REGISTRY or arch in SMOOTHQUANT_BROKEN:
            raise ModelError(f"SmoothQuant has no usable layer mappings for {arch} in llm-compressor",
                             "pass --smoothing 0 (GPTQ W8A8 without smoothing)")
    if family_of(method) == "format" and is_moe(config):
        # transformers 5.17 reloads a compressed MoE's experts fused: fp8 experts then run without their
        # activation quantization, w8a8 (int8) and nvfp4 (packed fp4) experts fail to load or load wrong.
        raise ModelError(f"{method} cannot be evaluated faithfully on the mixture-of-experts {arch}: transformers "
                         "reloads its experts fused, without their activation quantization",
                         "use rtn, gptq or awq (weight-only) or a pruning method for MoE models")
    if family_of(method) == "file":

        if not converter_supports(arch):
            raise ModelError(f"llama.cpp's converter has no GGUF conversion for {arch}",
                             "use an HF method (gptq, awq, fp8, ...) for this model")
        if arch in CONVERTER_INCOMPATIBLE:
            raise ModelError(f"llama.cpp's converter cannot convert {arch} under this transformers: "
                             f"{CONVERTER_INCOMPATIBLE[arch]}", "use an HF method (gptq, awq, fp8, ...) for this "
                             "model, or convert it with llama.cpp beside transformers 4 and pass the .gguf")
    return arch


def is_moe(config: dict[str, Any]) -> bool:
    """Whether a config.json describes a mixture-of-experts model (Mixtral, Qwen-MoE, OLMoE, ...)."""
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    keys = ("num_local_experts", "num_experts", "n_routed_experts")
    return any(isinstance(text.get(k), int) and text[k] > 1 for k in keys)


def preflight_group_size(base: Path, config: CompressionConfig) -> None:
    """Fail on a group size that does not fit before loading any weights (meta-device model)."""
    fmt = compressor_class(config.method).format
    fixed = fmt.group if fmt is not None else None  # a format's own group size (nvfp4: 16), not --group-size
    if fixed is None and (config.kind != "quantization" or config.group_size in (None, "auto", "channel")):
        return
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from comptrust.compression.measure import indivisible_layers, resolve_group_size

    try:
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(base))
    except Exception:  # an odd config: the real load below reports it properly
        return
    if fixed is None:
        resolve_group_size(skeleton, config.group_size)  # type: ignore[arg-type]
        return
    bad = indivisible_layers(skeleton, fixed)
    if bad:
        raise ConfigError(f"{config.method} quantizes groups of {fixed} inputs, and {fixed} does not divide the "
                          f"input width of {bad}",
                          "this model cannot be stored in that format; try fp8, w8a8 or gptq --group-size auto")


def artifact_key(base: Path, config: CompressionConfig) -> str:
    """Hash of the base weights, tokenizer files and normalised config."""

    tok = hashlib.sha256()
    for name in TOKENIZER_FILES:
        if (base / name).is_file():
            tok.update(name.encode() + b"\0" + (base / name).read_bytes())
    data = None
    if config.calib is not None:
        data = source_fingerprint(config.calib)
    return stable_hash({"weights": weights_fingerprint(base), "tokenizer": tok.hexdigest()[:16],
                        "config": config.to_json(), "calibration_text": data,
                        "manifest_version": MANIFEST_VERSION})


def require_engine(method: str, gguf_type: str | None = None) -> None:
    """A one-line error where llm-compressor (or llama.cpp for gguf) is missing and ``method`` needs it."""
    import importlib.util

    if family_of(method) == "file":

        require_gguf_tools(gguf_type or "")
        return
    if not compressor_class(method).uses_llmcompressor:  # comptrust's own code (magnitude)
        return
    try:
        present = importlib.util.find_spec("llmcompressor") is not None
    except (ImportError, ValueError):  # a blocked or half-installed package
        present = False
    if not present:
        raise ConfigError(f"compressing with {method} needs llm-compressor, which this environment lacks",
                          "compress in the main environment (make install; or comptrust sweep --compress-only) "
                          "and evaluate the artifact here")


def _manifest_key(out: Path) -> str | None:
    """The key recorded in ``out``'s manifest, if it has a readable one."""
    if not (out / MANIFEST_NAME).is_file():
        return None
    try:
        return load_manifest(out).get("key")
    except DataError:
        return None


def _reusable(out: Path, key: str) -> bool:
    """``out`` is a complete artifact of this exact compression: key, recorded file sizes and weight headers."""

    if _manifest_key(out) != key or not (any(out.glob("*.safetensors")) or any(out.glob("*.gguf"))):
        return False
    if artifact_files_problem(out, load_manifest(out)) is not None:
        return False
    try:
        check_model_files(out, "")
    except DataError:
        return False
    return True


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "model"


def load_for_compression(base: Path) -> tuple[Any, Any, Any]:
    """Model (on CPU; llm-compressor moves layers to the GPU itself), tokenizer, original dtype."""
    import torch
    from transformers import AutoConfig, AutoTokenizer


    try:
        hf_config = AutoConfig.from_pretrained(base)
        original = getattr(hf_config, "dtype", None) or torch.float32
        if isinstance(original, str):
            original = getattr(torch, original, torch.float32)
        # CPUs are slow and lossy in half precision: compress in float32 there.
        dtype = original if torch.cuda.is_available() else torch.float32
        model = load_causal_lm(base, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(base)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"cannot load {base} with transformers ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:160]})", "pass a complete Hugging Face model folder") from None
    model.eval()
    return model, tokenizer, original


@dataclasses.dataclass
class InMemory:
    """A compressed model before saving (tests compare its logits with the reloaded artifact)."""

    model: Any
    tokenizer: Any
    config: CompressionConfig  # group size resolved
    requested: CompressionConfig
    calibration: Any
    facts: dict[str, Any]
    wall_time_s: float
    sparsity: dict[str, Any] | None
    layers: dict[str, int]
    params: int
    saves_compressed: bool
    dense: dict[str, Any] | None = None  # ignore patterns and the modules they kept dense


def run_compression(base: Path, config: CompressionConfig, say: Callable[[str], None] | None = None) -> InMemory:
    """Load ``base`` and compress it in memory (nothing is written)."""
    import torch

    from comptrust.compression.measure import dense_modules, layer_sizes, resolve_group_size, sparsity_report
    say = say or (lambda _msg: None)
    compressor = compressor_class(config.method)()
    say(f"loading {base}")
    model, tokenizer, original_dtype = load_for_compression(base)
    resolved = config
    if config.group_size is not None:
        resolved = dataclasses.replace(config, group_size=resolve_group_size(model, config.group_size))
    calibration = None
    if compressor.needs_calibration:
        assert config.calib is not None
        calibration = build_calibration(tokenizer, config.calib, config.seed)
        say(f"calibration: {len(calibration.input_ids)} samples of {config.calib.seqlen} tokens "
            f"from {config.calib.source}")
    params = layer_sizes(model)[1]
    torch.manual_seed(config.seed)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    say(f"compressing with {config.method}")
    start = time.perf_counter()
    facts = compressor.compress(model, resolved, calibration)
    wall = time.perf_counter() - start
    # After compressing: llm-compressor linearizes a MoE's fused experts into one Linear per expert,
    # which are then among the compressed layers (before saving, which packs the weights).
    layers = layer_sizes(model)[0]
    dense = dense_modules(model)
    sparsity = sparsity_report(model, config.nm) if config.kind == "pruning" else None
    if config.kind == "pruning" and model.dtype != original_dtype:
        model.to(original_dtype)  # zeros stay zeros; the artifact keeps the base model's precision
    return InMemory(model, tokenizer, resolved, config, calibration, facts, wall, sparsity, layers, params,
                    compressor.saves_compressed, dense)


def save_artifact(result: InMemory, out: Path, base: Path, key: str) -> None:
    """Write the HF folder (compressed-tensors when quantized) and its manifest into ``out``."""
    from comptrust.compression.measure import dir_size, storage_report, weights_size

    dtype = str(result.model.dtype).removeprefix("torch.")
    expert_save_names(result.model)  # Mixtral's per-expert tensors under its checkpoints' names (w1/w2/w3)
    with warnings.catch_warnings():
        # llm-compressor keeps weights "offloaded" to CPU; transformers warns about that on every save
        warnings.filterwarnings("ignore", message="Attempting to save a model with offloaded modules")
        if result.saves_compressed:
            result.model.save_pretrained(out, save_compressed=True)
        else:
            result.model.save_pretrained(out)
    result.tokenizer.save_pretrained(out)
    manifest = artifact_manifest(
        base, key, result.requested, _params(result.config),
        calibration=result.calibration.description if result.calibration else None, sparsity=result.sparsity,
        storage=storage_report(out, result.layers, result.params), weights_bytes=weights_size(out),
        folder_bytes=dir_size(out), dtype=dtype, wall_time_s=result.wall_time_s, engine=result.facts,
        dense=result.dense)
    manifest["files"] = file_records(out)
    write_manifest(out, manifest)  # last: a folder without it is never mistaken for an artifact


def artifact_manifest(base: Path, key: str, config: CompressionConfig, params: dict[str, Any], *,
                      calibration: dict[str, Any] | None, sparsity: dict[str, Any] | None, storage: dict[str, Any],
                      weights_bytes: int, folder_bytes: int, dtype: str, wall_time_s: float,
                      engine: dict[str, Any], dense: dict[str, Any] | None = None) -> dict[str, Any]:
    """``comptrust.json``: the same fields for every method (Hugging Face folder or GGUF file).

    ``ignored`` lists the patterns every modifier was given, ``dense_modules`` the modules of this model
    they kept dense (lm_head, MoE routers); a GGUF has neither (its ``engine.tensor_types`` says what
    llama.cpp stored each tensor as).
    """
    import torch

    from comptrust.compression.measure import describe_base, library_versions, peak_memory

    base_info = describe_base(base, weights_fingerprint(base))
    return {
        "format": "comptrust-artifact", "manifest_version": MANIFEST_VERSION, "key": key,
        "method": config.method, "kind": config.kind, "config": config.to_json(),
        "params": params, "seed": config.seed, "calibration": calibration,
        "base_model": base_info, "ignored": dense["patterns"] if dense else [],
        "dense_modules": dense["modules"] if dense else None, "sparsity": sparsity, "storage": storage,
        "size_bytes": folder_bytes, "weights_size_bytes": weights_bytes,
        "compression_ratio": round(base_info["size_bytes"] / max(1, weights_bytes), 4),
        "dtype": dtype, "device": "cuda" if torch.cuda.is_available() else "cpu",
        "wall_time_s": round(wall_time_s, 3), "peak_memory": peak_memory(), "engine": engine,
        "library_versions": library_versions(), **_format_block(config),
        "created_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def save_gguf_artifact(base: Path, config: CompressionConfig, out: Path, key: str,
                       say: Callable[[str], None]) -> None:
    """``--method gguf``: the .gguf file, the base tokenizer beside it, and the manifest."""
    from comptrust.compression.measure import dir_size

    start = time.perf_counter()
    facts = GGUFCompressor().write(base, config, out, say)
    wall = time.perf_counter() - start
    copy_tokenizer(base, out, TOKENIZER_FILES)
    path = gguf_in(out)
    assert path is not None
    info = describe_gguf(path)
    facts |= {"file": info["file"], "tensor_types": info["tensor_types"], "gguf_type": info["gguf_type"]}
    manifest = artifact_manifest(base, key, config, _params(config), calibration=None, sparsity=None,
                                 storage=info["storage"], weights_bytes=info["file_size_bytes"],
                                 folder_bytes=dir_size(out), dtype=config.gguf_type or "", wall_time_s=wall,
                                 engine=facts)
    manifest["files"] = file_records(out)
    write_manifest(out, manifest)  # last: a folder without it is never mistaken for an artifact


def _format_block(config: CompressionConfig) -> dict[str, Any]:
    """``quantized_format``: what a deployed format quantizes and which runtime its numbers stand for."""
    if family_of(config.method) not in ("format", "file"):
        return {}
    return {"quantized_format": describe_format(config.method, config.gguf_type)}


def _params(config: CompressionConfig) -> dict[str, Any]:
    """The parameters actually used (group size resolved), flat, for tables and reports."""
    data = config.to_json()
    data.pop("calib", None)
    return data


def stable_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """A manifest without the fields that legitimately differ between identical runs."""
    return {k: v for k, v in manifest.items() if k not in VOLATILE_FIELDS}
