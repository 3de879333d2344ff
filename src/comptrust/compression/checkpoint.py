"""What a downloaded checkpoint says about its own compression, as a compression record.

Most users do not compress themselves: they compare the AWQ, GPTQ, FP8,
compressed-tensors or GGUF release they downloaded with its base model.  Such a
checkpoint has no ``comptrust.json``, but it describes itself: ``config.json``'s
``quantization_config`` (every transformers quantizer writes one), llm-compressor's
``recipe.yaml`` (which algorithm made it), the model card's ``base_model`` and a
GGUF's header.  This module turns those into the same record comptrust's own
manifests give the report (method, bits, group size, activation and KV formats),
marked ``"produced_by": "third party"`` so nobody mistakes it for comptrust's
measurement.  Nothing here imports a model or a quantization library.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from comptrust.errors import ConfigError, ModelError
from comptrust.model_files import weights_fingerprint

THIRD_PARTY = "third party"
RECORD_FORMAT = "checkpoint-record"
# llm-compressor modifier -> comptrust method (recipe.yaml names the algorithm that made the weights).
RECIPE_METHODS = {"GPTQModifier": "gptq", "AWQModifier": "awq", "SparseGPTModifier": "sparsegpt",
                  "WandaPruningModifier": "wanda", "MagnitudePruningModifier": "magnitude",
                  "QuantizationModifier": "rtn", "SmoothQuantModifier": "smoothquant"}
PRUNERS = ("wanda", "sparsegpt", "magnitude")
RECIPE_NAME = "recipe.yaml"
MODEL_CARD = "README.md"


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def quantization_config(folder: Path) -> dict[str, Any] | None:
    """``config.json``'s ``quantization_config`` (None for a dense model or no readable config)."""
    config = read_json(folder / "config.json") or {}
    qc = config.get("quantization_config")
    return qc if isinstance(qc, dict) and qc else None


def checkpoint_record(folder: Path) -> dict[str, Any] | None:
    """The compression record of a third-party compressed checkpoint folder, None for a dense one.

    A quantized checkpoint says so in ``quantization_config``; a pruned one saved as dense tensors
    (zeros in place) says so only in its llm-compressor recipe, which is read too.
    """
    qc = quantization_config(folder)
    modifiers = recipe_modifiers(folder)
    if qc is not None:
        record = describe_quantization_config(qc, list(modifiers))
    else:
        record = describe_recipe_pruning(modifiers)
        if record is None:
            return None
    record["base_model"] = model_card_base(folder)
    record["weights_size_bytes"] = _weights_bytes(folder)
    return record


def describe_quantization_config(qc: dict[str, Any], recipe: list[str] | None = None) -> dict[str, Any]:
    """A record from a ``quantization_config`` of any transformers quantizer (and a recipe's methods)."""
    quant_method = str(qc.get("quant_method") or "unknown").lower()
    if quant_method == "compressed-tensors":
        params, fmt, kv = _compressed_tensors(qc)
        method = _compressed_tensors_method(params, fmt, recipe or [])
    elif quant_method in ("gptq", "awq"):
        method, params, fmt, kv = quant_method, _gptq_awq(qc, quant_method), None, None
    elif quant_method == "bitsandbytes":
        method, params, fmt, kv = "bitsandbytes", _bitsandbytes(qc), None, None
    elif quant_method == "fp8":  # transformers' FineGrainedFP8Config (DeepSeek/Qwen FP8 releases)
        method, kv = "fp8", None
        block = qc.get("weight_block_size")
        params = {"bits": 8, "weight_type": "float", "group_size": f"{block[0]}x{block[1]}"
                  if isinstance(block, list) and len(block) == 2 else None}
        dynamic = str(qc.get("activation_scheme", "dynamic")) == "dynamic"
        fmt = {"weight_bits": 8, "activation_bits": 8, "weights": "FP8 E4M3, block scales",
               "activations": f"FP8 E4M3, {'dynamic' if dynamic else 'static'} scales"}
    else:
        method, kv, fmt = quant_method, None, None
        params = {"bits": _generic_bits(qc), "group_size": _first_int(qc, "group_size", "q_group_size")}
    params = {"method": method, **{k: v for k, v in params.items() if v is not None}}
    kind = "quantization" if params.get("bits") else "pruning" if params.get("sparsity") or method in PRUNERS \
        else "unknown"
    record: dict[str, Any] = {
        "format": RECORD_FORMAT, "produced_by": THIRD_PARTY, "method": method, "kind": kind,
        "read_from": "config.json quantization_config" + (f" + {RECIPE_NAME}" if recipe else ""),
        "quant_method": quant_method, "params": params, "quantization_config": qc,
    }
    if fmt:
        record["quantized_format"] = fmt
    if kv:
        record["kv_cache_scheme"] = kv
    if recipe:
        record["recipe_modifiers"] = list(recipe)
    return record


def _compressed_tensors(qc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]:
    """Bits, group size and activation format of the first quantized group (the decoder's Linear layers)."""
    groups = [g for g in (qc.get("config_groups") or {}).values() if isinstance(g, dict)]
    weights = next((g.get("weights") for g in groups if isinstance(g.get("weights"), dict)), None) or {}
    acts = next((g.get("input_activations") for g in groups if isinstance(g.get("input_activations"), dict)), None)
    params: dict[str, Any] = {"bits": weights.get("num_bits"), "weight_type": weights.get("type"),
                              "group_size": weights.get("group_size"), "strategy": weights.get("strategy"),
                              "symmetric": weights.get("symmetric"), "format": qc.get("format"),
                              "groups": len(groups) if len(groups) > 1 else None}
    sparsity = qc.get("sparsity_config")
    if isinstance(sparsity, dict) and sparsity:
        params["sparsity"] = sparsity.get("global_sparsity")
        params["pattern"] = sparsity.get("sparsity_structure")
    fmt = None
    if acts is not None:
        params["activation_bits"] = acts.get("num_bits")
        fmt = {"weight_bits": weights.get("num_bits"), "activation_bits": acts.get("num_bits"),
               "weights": f"{str(weights.get('type', '?')).upper()}{weights.get('num_bits')}, "
                          f"{weights.get('strategy')} scales",
               "activations": f"{str(acts.get('type', '?')).upper()}{acts.get('num_bits')}, "
                              f"{'dynamic' if acts.get('dynamic') else 'static'} {acts.get('strategy')} scales"}
    kv = qc.get("kv_cache_scheme")
    return params, fmt, kv if isinstance(kv, dict) else None


def _compressed_tensors_method(params: dict[str, Any], fmt: dict[str, Any] | None, recipe: list[str]) -> str:
    """The comptrust method a compressed-tensors checkpoint corresponds to.

    The scheme decides the deployed formats (FP8 / INT8 W8A8 / NVFP4); for weight-only integers the
    recipe names the algorithm (GPTQ, AWQ, or a plain QuantizationModifier = round to nearest).
    Without a recipe the algorithm is unknown and the record says so ("compressed-tensors").
    """
    bits, kind = params.get("bits"), params.get("weight_type")
    act_bits = (fmt or {}).get("activation_bits")
    if kind == "float" and bits == 8 and act_bits == 8:
        return "fp8"
    if kind == "float" and bits == 4 and params.get("group_size") == 16:
        return "nvfp4"
    if kind == "int" and bits == 8 and act_bits == 8:
        return "w8a8"
    algorithms = [RECIPE_METHODS[m] for m in recipe if m in RECIPE_METHODS and m != "SmoothQuantModifier"]
    if bits is None and algorithms:  # sparsity only
        return algorithms[0]
    quantizers = [a for a in algorithms if a in ("gptq", "awq", "rtn")]
    return quantizers[0] if quantizers else "compressed-tensors"


def _gptq_awq(qc: dict[str, Any], method: str) -> dict[str, Any]:
    """GPTQ (AutoGPTQ / GPTQModel) and AWQ (AutoAWQ) configs: bits, group size, symmetry, packing."""
    group = _first_int(qc, "group_size", "q_group_size")
    params: dict[str, Any] = {"bits": _first_int(qc, "bits", "w_bit"), "group_size": None if group == -1 else group,
                              "weight_type": "int"}
    if method == "gptq":
        params |= {"symmetric": qc.get("sym"), "act_order": qc.get("desc_act"),
                   "format": qc.get("checkpoint_format") or "gptq"}
    else:
        params |= {"symmetric": not qc.get("zero_point", True), "format": str(qc.get("version") or "gemm").lower()}
    if group == -1:
        params["strategy"] = "channel"
    return params


def _bitsandbytes(qc: dict[str, Any]) -> dict[str, Any]:
    if qc.get("load_in_4bit"):
        kind = str(qc.get("bnb_4bit_quant_type") or "fp4")
        return {"bits": 4, "weight_type": kind, "double_quant": bool(qc.get("bnb_4bit_use_double_quant")),
                "group_size": 64}
    return {"bits": 8, "weight_type": "LLM.int8()", "outlier_threshold": qc.get("llm_int8_threshold")}


def _first_int(qc: dict[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = qc.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _generic_bits(qc: dict[str, Any]) -> int | None:
    """Bits from whatever a quantizer calls them (``bits``, ``nbits``, ``weights: "int4"``...)."""
    found = _first_int(qc, "bits", "nbits", "num_bits", "w_bit", "weight_bits")
    if found is not None:
        return found
    for key in ("weights", "weight_dtype", "quant_type"):
        match = re.search(r"(\d+)", str(qc.get(key) or ""))
        if match:
            return int(match[1])
    return None


def recipe_modifiers(folder: Path) -> dict[str, dict[str, Any]]:
    """The llm-compressor modifiers in ``recipe.yaml`` with their arguments, in order.

    Read with ``safe_load``: a downloaded recipe is untrusted text.
    """
    path = folder / RECIPE_NAME
    if not path.is_file():
        return {}
    import yaml

    try:
        recipe = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, OSError):
        return {}
    found: dict[str, dict[str, Any]] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(key, str) and key.endswith("Modifier") and key not in found:
                    found[key] = value if isinstance(value, dict) else {}
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(recipe)
    return found


def describe_recipe_pruning(modifiers: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """A record for a pruned checkpoint stored as dense tensors, from its recipe's pruning modifier."""
    for name, args in modifiers.items():
        method = RECIPE_METHODS.get(name)
        if method not in PRUNERS:
            continue
        sparsity = args.get("sparsity")
        params = {"method": method, "sparsity": sparsity if isinstance(sparsity, int | float) else None,
                  "pattern": args.get("mask_structure") or "unstructured"}
        return {"format": RECORD_FORMAT, "produced_by": THIRD_PARTY, "method": method, "kind": "pruning",
                "read_from": RECIPE_NAME, "params": {k: v for k, v in params.items() if v is not None},
                "recipe_modifiers": list(modifiers)}
    return None


def model_card_base(folder: Path) -> dict[str, Any] | None:
    """``base_model`` from the model card's YAML front matter (the hub's convention), else None."""
    card = folder / MODEL_CARD
    if not card.is_file():
        return None
    import yaml

    try:
        text = card.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    match = re.match(r"\A---\s*\n(.*?)\n---\s*(\n|\Z)", text, re.S)
    if not match:
        return None
    try:
        meta = yaml.safe_load(match[1])
    except yaml.YAMLError:
        return None
    base = meta.get("base_model") if isinstance(meta, dict) else None
    if isinstance(base, list) and len(base) == 1:
        base = base[0]
    if not isinstance(base, str) or not base.strip():
        return None
    return {"name": base.strip(), "given_by": "model card (README.md base_model)"}


def gguf_base_model(metadata: dict[str, Any]) -> dict[str, Any] | None:
    """A GGUF's ``general.base_model.0.*`` keys (llama.cpp's converter writes them from the model card)."""
    name = metadata.get("general.base_model.0.repo_url") or metadata.get("general.base_model.0.name")
    if not name:
        return None
    name = str(name).removeprefix("https://huggingface.co/")
    return {"name": name, "given_by": "GGUF header (general.base_model)"}


def declared_base(spec: str, resolve: Callable[[str], tuple[Path, str] | None] | None = None) -> dict[str, Any]:
    """The base model a user named with ``--base-model``: its weights hash where it can be resolved here.

    ``resolve(spec) -> (path, weights_sha256)`` resolves a local folder, .gguf or alias; a hub id that
    cannot be resolved offline is kept by name, and the report then pairs by name only (it says so).
    """
    info: dict[str, Any] = {"name": spec, "given_by": "--base-model"}
    if resolve is not None:
        found = resolve(spec)
        if found is not None:
            path, digest = found
            info |= {"path": str(path), "weights_sha256": digest}
    return info


def _weights_bytes(folder: Path) -> int | None:
    total = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    return total or None


def with_declared_base(model_info: dict[str, Any], base: dict[str, Any] | None) -> dict[str, Any]:
    """A backend's ``info()`` with the ``--base-model`` the user gave recorded in its compression record.

    A checkpoint that records no compression at all (a pruned release saved as plain tensors, a model
    served elsewhere) becomes a variant of that base, of unknown method.  A comptrust artifact already
    records its base by hash: naming another one is an error, naming the same one changes nothing.
    """
    if base is None:
        return model_info
    info = dict(model_info)
    record = info.get("compression")
    if isinstance(record, dict) and record.get("produced_by") != THIRD_PARTY:
        own = (record.get("base_model") or {}).get("weights_sha256")
        if base.get("weights_sha256") and own and base["weights_sha256"] != own:
            raise ConfigError(f"{info.get('name')} is a comptrust artifact of another base model "
                              f"({(record.get('base_model') or {}).get('name')}); --base-model {base['name']} "
                              "does not match it", "drop --base-model: the artifact records its base")
        return info
    if base.get("weights_sha256") and base["weights_sha256"] == info.get("weights_sha256"):
        raise ConfigError(f"--base-model {base['name']} is the evaluated model itself",
                          "evaluate the dense model without --base-model; pass it for the compressed one")
    if not isinstance(record, dict):
        record = {"format": RECORD_FORMAT, "produced_by": THIRD_PARTY, "method": "unknown", "kind": "unknown",
                  "read_from": "nothing: the checkpoint records no compression; --base-model names its base",
                  "params": {}, "config": {"method": "unknown", "weights_sha256": info.get("weights_sha256")}}
    record = dict(record)
    record["base_model"] = base
    info["compression"] = record
    return info


def identify_checkpoint(record: dict, origin: Path) -> None:
    """Add the downloaded files' own hash: two releases of one scheme (say two GPTQ 4-bit g128 of one
    base) are different variants, not seeds of one, so the hash is part of the record's ``config``."""
    record["checkpoint"] = {"path": str(origin), "weights_sha256": _checkpoint_hash(origin)}
    record["config"] = {"method": record.get("method"), "params": record.get("params"),
                        "checkpoint_sha256": record["checkpoint"]["weights_sha256"]}


def _checkpoint_hash(origin: Path) -> str | None:
    """The downloaded files' own hash (what identifies one release among others of the same scheme)."""
    try:
        return weights_fingerprint(origin.parent, only=origin.name) if origin.is_file() else weights_fingerprint(origin)
    except ModelError:
        return None
