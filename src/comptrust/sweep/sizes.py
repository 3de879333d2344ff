"""Weights size on disk of each sweep artifact, estimated from the base model's config before compressing.

Why?  Choosing a format is a size/trust trade-off; ``sweep --dry-run`` should say
what each artifact will weigh before hours of compression.  The estimate counts a
decoder-only transformer's parameters from ``config.json`` (embeddings, attention
and MLP projections; norms and biases are negligible) and applies what each method
stores, as comptrust writes it (docs/compression.md):

* rtn / gptq / awq: decoder Linear weights at ``bits`` plus a 16-bit scale and a
  16-bit zero point per group (``bits + 32 / group``); embeddings and the LM head
  keep the base dtype;
* fp8 / w8a8: 8-bit Linear weights plus a 16-bit scale per output channel; nvfp4:
  4 bits plus an FP8 scale per 16 weights (4.5 bits): each format's ``Format``
  (weight bits, weights per scale, scale bits) says so;
* pruning (magnitude, sparsegpt, wanda): stored dense, so no saving on disk;
* gguf: every tensor (embeddings included) at the type's bits per weight as
  llama.cpp's quantizer mixes them (approximate for the k-quant mixes), except that
  a k-quant tensor whose rows are not a multiple of 256 falls back to a legacy type
  (as llama.cpp does) and the k-quant mixes keep the output matrix at Q6_K.

tests/test_sweep.py checks the estimate against the sizes measured on SmolLM2-135M
(docs/benchmarks.md); docs/scale.md ("--dry-run") says how close it comes, also on
published Llama-2 GGUF files.
An architecture the count does not understand (mixture of experts, no config
available offline) gets ``None``: "size unknown", never a guess.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from comptrust.compression.config import AUTO_GROUP_SIZES  # the rule compression itself applies
from comptrust.compression.methods import family_of, format_of
from comptrust.errors import ComptrustError
from comptrust.models import MODEL_ALIASES, resolve_model

# Average bits per weight of llama.cpp's types over a Llama-style model (block scales included; the
# k-quant mixes keep some tensors at higher precision).  Q8_0 and Q4_0 are exact (32-weight blocks with a
# 16-bit scale); the mixes are llama.cpp's own published figures for 7B models, rounded.
GGUF_BITS: dict[str, float] = {
    "Q2_K": 3.0, "Q3_K_S": 3.5, "Q3_K_M": 3.9, "Q3_K_L": 4.3, "Q4_0": 4.5, "Q4_1": 5.0, "Q4_K_S": 4.6,
    "Q4_K_M": 4.9, "Q5_0": 5.5, "Q5_1": 6.0, "Q5_K_S": 5.5, "Q5_K_M": 5.7, "Q6_K": 6.6, "Q8_0": 8.5,
    "IQ4_NL": 4.5, "IQ4_XS": 4.3, "F16": 16.0, "BF16": 16.0, "F32": 32.0,
}
# llama.cpp's fallback for a k-quant tensor whose rows are not a multiple of 256 (llama-quant.cpp), as bits
# per weight: Q2_K/Q3_K -> IQ4_NL, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0.
K_QUANT_FALLBACK_BITS = {"Q2_K": 4.5, "Q3_K": 4.5, "Q4_K": 5.5, "Q5_K": 6.0, "Q6_K": 8.5}
# The paper's models (public config.json facts), so the paper sweep's dry run has sizes offline.
_LLAMA2 = {"vocab_size": 32000, "tie_word_embeddings": False, "torch_dtype": "float16"}
KNOWN_CONFIGS: dict[str, dict[str, Any]] = {
    "llama-2-13b": _LLAMA2 | {"hidden_size": 5120, "intermediate_size": 13824, "num_hidden_layers": 40,
                              "num_attention_heads": 40},
    "vicuna-13b": _LLAMA2 | {"hidden_size": 5120, "intermediate_size": 13824, "num_hidden_layers": 40,
                             "num_attention_heads": 40},
    "llama-2-7b": _LLAMA2 | {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
                             "num_attention_heads": 32},
}
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


def parameter_counts(config: dict[str, Any]) -> tuple[int, int] | None:
    """(decoder Linear weights, other weights: embeddings and LM head), or None for an unknown layout."""
    text = config.get("text_config") or config
    try:
        widths = linear_widths(config)
        embeddings = int(text["vocab_size"]) * int(text["hidden_size"])
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    if any(text.get(k) for k in ("num_local_experts", "num_experts", "n_routed_experts")):
        return None  # mixture of experts: the per-expert layout is not counted here
    tied = bool(config.get("tie_word_embeddings", text.get("tie_word_embeddings", False)))
    return sum(widths.values()), embeddings * (1 if tied else 2)


def linear_widths(config: dict[str, Any]) -> dict[int, int]:
    """Decoder Linear weights by input width (a GGUF row's length), Llama/Mistral/Qwen style: q/k/v/gate/up
    read the hidden size, o the attention width, down the MLP width.  Raises KeyError on a config without
    these fields (:func:`parameter_counts` turns that into "unknown")."""
    text = config.get("text_config") or config
    hidden, layers = int(text["hidden_size"]), int(text["num_hidden_layers"])
    heads, intermediate = int(text["num_attention_heads"]), int(text["intermediate_size"])
    kv_heads = int(text.get("num_key_value_heads") or heads)
    head_dim = int(text.get("head_dim") or hidden // heads)
    widths: dict[int, int] = {}
    for width, n in ((hidden, hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim + 2 * hidden * intermediate),
                     (heads * head_dim, heads * head_dim * hidden), (intermediate, intermediate * hidden)):
        widths[width] = widths.get(width, 0) + layers * n
    return widths


def auto_group(config: dict[str, Any]) -> int | None:
    """``--group-size auto``: the largest of 128/64/32 dividing every Linear's input size (else per channel)."""
    text = config.get("text_config") or config
    heads = int(text.get("num_attention_heads") or 1)
    inputs = [int(text["hidden_size"]), int(text["intermediate_size"]),
              heads * int(text.get("head_dim") or int(text["hidden_size"]) // heads)]
    return next((g for g in AUTO_GROUP_SIZES if all(n % g == 0 for n in inputs)), None)


def linear_bits(method: str, cfg: dict[str, Any], config: dict[str, Any]) -> float | None:
    """Stored bits per decoder Linear weight for ``method`` (None: the base dtype, i.e. pruning)."""
    family = family_of(method)
    if family == "pruning":
        return None
    if family == "format":  # a scale per output channel is one per input row of hidden_size weights
        fmt = format_of(method)
        per_scale = fmt.group or max(1, int((config.get("text_config") or config)["hidden_size"]))
        return fmt.weight_bits + fmt.scale_bits / per_scale
    bits = cfg.get("bits")
    if bits is None:
        return None
    group = cfg.get("group_size")
    if group == "auto":
        group = auto_group(config)
    if isinstance(group, int) and group > 0:
        return float(bits) + 32.0 / group
    return float(bits)  # one scale per output channel: negligible


def stored_dtype(config: dict[str, Any]) -> str:
    """The dtype the base model's weights are stored in (``config.json``; float32 when it does not say)."""
    return str(config.get("torch_dtype") or config.get("dtype") or
               (config.get("text_config") or {}).get("torch_dtype") or "float32").replace("torch.", "")


def gguf_bytes(gguf_type: str, config: dict[str, Any]) -> int | None:
    """A GGUF's size: decoder weights at the type's bits, except rows whose length is not a multiple of 256,
    which llama.cpp writes in a fallback type (SmolLM2's 576-wide rows: Q4_K -> Q5_0); the k-quant mixes
    keep the output matrix (the embeddings, when tied) at Q6_K."""
    bits = GGUF_BITS.get(gguf_type)
    counts = parameter_counts(config)
    if bits is None or counts is None:
        return None
    text = config.get("text_config") or config
    kind = gguf_type[:4] if gguf_type[:2] in ("Q2", "Q3", "Q4", "Q5", "Q6") and gguf_type[2:4] == "_K" else None

    def at(width: int, nominal: float, quant: str | None = kind) -> float:
        return K_QUANT_FALLBACK_BITS[quant] if quant and width % 256 else nominal

    hidden = int(text["hidden_size"])
    linear = sum(n * at(width, bits) for width, n in linear_widths(config).items())
    _, other = counts
    if kind:  # output at Q6_K (or its fallback); untied input embeddings at the type's own bits
        tied = bool(config.get("tie_word_embeddings", text.get("tie_word_embeddings", False)))
        output = other if tied else other / 2
        embed_bits = output * at(hidden, GGUF_BITS["Q6_K"], "Q6_K") + (other - output) * at(hidden, bits)
    else:
        embed_bits = other * bits
    return int((linear + embed_bits) / 8)


def estimated_bytes(method: str | None, cfg: dict[str, Any], config: dict[str, Any]) -> int | None:
    """Weights on disk of the base model (``method`` None) or of one compressed artifact; None if unknown."""
    if method == "gguf":
        return gguf_bytes(str(cfg.get("gguf_type", "")).upper(), config)
    if method is not None and family_of(method) == "file":
        return None  # another file format: what it stores is not modelled here, so "size unknown"
    counts = parameter_counts(config)
    if counts is None:
        return None
    linear, other = counts
    base = DTYPE_BYTES.get(stored_dtype(config), 4)
    bits = None if method is None else linear_bits(method, cfg, config)
    linear_bytes = linear * base if bits is None else linear * bits / 8
    return int(linear_bytes + other * base)


def base_config(spec: str) -> dict[str, Any] | None:
    """The base model's ``config.json`` without loading weights or using the network (a dry run must not
    download): a local folder or GGUF, an alias of ``MODEL_ALIASES`` (its installed GGUF), a hub id already
    in the local hub cache, or one of the paper's models by name; else None."""
    path = Path(spec).expanduser()
    try:
        if spec in MODEL_ALIASES or (path.suffix == ".gguf" and path.is_file()):
            path = resolve_model(spec).path  # converted once; the sweep needs it anyway
        if path.is_dir():
            config = path / "config.json"
            return json.loads(config.read_text(encoding="utf-8")) if config.is_file() else None
    except (ComptrustError, OSError, ValueError):
        return None
    try:
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(spec, local_files_only=True).to_dict()
    except Exception:  # not in the local hub cache (or not a hub id): known shapes only  # noqa: BLE001
        name = spec.rsplit("/", 1)[-1].lower()
        return next((dict(c) for key, c in KNOWN_CONFIGS.items() if name.startswith(key)), None)


def human_bytes(size: int | None) -> str:
    if size is None:
        return "size unknown"
    return f"~{size / 1e9:.1f} GB" if size >= 1e9 else f"~{size / 1e6:.0f} MB"
