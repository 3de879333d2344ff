"""Attention on a CPU: grouped-query heads kept grouped under a mask, half precision computed in float32.

Why?  Two costs of transformers' SDPA path that only a CPU pays, both found by profiling SmolLM2
(9 query heads, 3 key/value heads) on a 2-core CPU (docs/benchmarks.md, "End to end, and where
the time went"):

* With an attention mask, ``sdpa_attention_forward`` repeats every key and value head
  ``num_key_value_groups`` times (``repeat_kv``: a copy of the whole cache for every layer at
  every step), because CUDA's kernels fall back to the math path for GQA with a mask.
  Continuous batching and MMLU's shared prefixes always pass a mask; in float32 that copy took
  about as long as every matmul of the model.  PyTorch's CPU flash kernel takes
  ``enable_gqa=True`` with a mask and returns the same numbers, bit for bit.
* In bfloat16 the CPU flash kernel is much slower than in float32 for decode shapes (one query
  against hundreds of keys), which made bf16 decoding slower than float32 although its matmuls
  are faster.  Half-precision queries, keys and values are converted to float32 (exactly) and
  the output rounded back, as the kernel's own float32 accumulators would.  Converting the whole
  cache at every step costs too, so continuous batching keeps its slots in float32 on a CPU
  (:func:`kv_cache_dtype`): keys and values are converted once, as they enter.

:func:`cpu_attention` switches an SDPA model on a CPU to :func:`sdpa_cpu_forward` for the
duration of a block; every hf-backend path (continuous and static generation, MMLU
log-likelihoods) runs inside it, so they all compute attention alike.  CUDA, eager and
flash-attention models are untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

NAME = "comptrust_cpu_sdpa"
_registered = False


def sdpa_cpu_forward(module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
                     dropout: float = 0.0, scaling: float | None = None, is_causal: bool | None = None,
                     **kwargs: Any) -> tuple[Any, None]:
    """transformers' SDPA attention, with the two CPU changes above (same arguments, same output)."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if kwargs.get("position_bias") is not None or kwargs.get("output_attentions", False):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    dtype = query.dtype
    if dtype in (torch.bfloat16, torch.float16):
        query, key, value = query.float(), key.float(), value.float()
        if attention_mask is not None and attention_mask.dtype != torch.bool:
            attention_mask = attention_mask.float()
    if (getattr(module, "num_key_value_groups", 1) > 1 and attention_mask is not None
            and key.shape[-1] == value.shape[-1]):
        out = torch.nn.functional.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, enable_gqa=True)
        out = out.transpose(1, 2).contiguous()
    else:
        out, _ = sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                        scaling=scaling, is_causal=is_causal, **kwargs)
    return out.to(dtype), None


def kv_cache_dtype(model: Any) -> Any:
    """The dtype to keep keys and values in: float32 for a half-precision SDPA model on a CPU, else the model's.

    Exact (bf16 and fp16 values are float32 values), and :func:`sdpa_cpu_forward` computes in float32
    anyway; an eager model would multiply bf16 queries by float32 keys, so it keeps its own dtype.
    """
    import torch

    dtype = model.dtype
    return torch.float32 if _applies(model) and dtype in (torch.bfloat16, torch.float16) else dtype


def _applies(model: Any) -> bool:
    """Whether :func:`cpu_attention` switches this model (an SDPA model on a CPU), or already has."""
    on_cpu = next(model.parameters()).device.type == "cpu"
    return on_cpu and getattr(model.config, "_attn_implementation", None) in ("sdpa", NAME)


def _register() -> None:
    """Make :data:`NAME` known to transformers (attention and mask builders: the mask is SDPA's)."""
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(NAME, sdpa_cpu_forward)
    AttentionMaskInterface.register(NAME, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    _registered = True


@contextmanager
def cpu_attention(model: Any) -> Iterator[None]:
    """Within the block, an SDPA model on a CPU attends with :func:`sdpa_cpu_forward`; restored afterwards."""
    config = model.config
    if not _applies(model) or config._attn_implementation == NAME:  # not ours, or an outer block switched it
        yield
        return
    _register()
    config._attn_implementation = NAME
    try:
        yield
    finally:
        config._attn_implementation = "sdpa"
