"""KV-cache quantization at generation time (``--kv-cache int4|int2``): what the cache stores, what attention reads.

The scheme is that of transformers' ``QuantizedCache`` with its default
``quanto`` backend (KIVI-style, Liu et al. 2024), what a transformers user gets
from ``cache_implementation="quantized"``, as we read its code:

* asymmetric min-max integers: per group of ``group_size`` (64) consecutive
  values along the head dimension, ``scale = (max - min) / (2**bits - 1)``,
  ``q = clamp(round((x - min) / scale), 0, 2**bits - 1)``, read back as
  ``q * scale + min``; with ``axis 0`` and 64-wide heads a group is one token's
  key (or value) vector of one head;
* a full-precision residual window: the prompt is quantized as soon as it is
  cached (its own attention at prefill still sees full precision); generated
  tokens stay full precision until ``residual_length`` (128) of them have
  accumulated, then the whole cache is requantized and the window empties.

Why our own code instead of optimum-quanto's kernels?  On this project's CPU
machine importing optimum-quanto 0.2.7 JIT-compiles a C++ extension that did not
finish (docs/compression.md, "KV-cache quantization"), so the arithmetic is written here
in plain PyTorch and has not been compared with optimum-quanto's own output.
The cache keeps the dequantized values (what attention reads), so it measures
the *accuracy* cost of a quantized KV cache, not its memory saving.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

from comptrust.backends.base import KV_CACHE_CHOICES
from comptrust.errors import ConfigError


@dataclass(frozen=True)
class KVQuant:
    """One KV-cache quantization setting; ``tag`` enters the backend fingerprint (and so every cache key)."""

    bits: int
    group_size: int = 64
    residual_length: int = 128
    axis: int = 0

    @property
    def label(self) -> str:
        return f"int{self.bits}"

    @property
    def tag(self) -> str:
        return f"kv{self.label}-g{self.group_size}-r{self.residual_length}"

    def to_json(self) -> dict[str, Any]:
        return {"type": self.label, "bits": self.bits, "group_size": self.group_size,
                "residual_length": self.residual_length, "axis": self.axis,
                "scheme": "asymmetric min-max per group (transformers QuantizedCache, quanto numerics)",
                "residual": "newest tokens kept in full precision until residual_length accumulate",
                "stores": "dequantized values (accuracy simulation; no memory saved)"}


def parse_kv_cache(value: str | None) -> KVQuant | None:
    """``None``/``"none"`` -> no quantization; ``int4``/``int2`` -> :class:`KVQuant`; anything else: one-line error."""
    if value is None or str(value).lower() in ("none", "", "fp", "full"):
        return None
    name = str(value).lower()
    if name not in KV_CACHE_CHOICES:
        raise ConfigError(f"unknown KV-cache type {value!r}", f"choose from: {', '.join(KV_CACHE_CHOICES)} or none")
    return KVQuant(bits=int(name[3:]))


def quantize_dequantize(tensor: Any, spec: KVQuant) -> Any:
    """What attention reads back from the quantized part of the cache (same shape and dtype as ``tensor``)."""
    import torch

    if tensor.numel() == 0:
        return tensor
    width = spec.group_size if tensor.shape[-1] % spec.group_size == 0 else tensor.shape[-1]
    groups = tensor.float().reshape(-1, width)
    low = groups.amin(dim=-1, keepdim=True)
    high = groups.amax(dim=-1, keepdim=True)
    levels = 2 ** spec.bits - 1
    scale = ((high - low) / levels).clamp(min=torch.finfo(torch.float32).eps)
    q = torch.clamp(torch.round((groups - low) / scale), 0, levels)
    return (q * scale + low).reshape(tensor.shape).to(tensor.dtype)


class QuantizedKVLayer(DynamicLayer):
    """One layer's cache: a quantized part (stored dequantized) plus a full-precision residual window."""

    def __init__(self, spec: KVQuant) -> None:
        super().__init__()
        self.spec = spec
        self.cumulative_length = 0
        self._q_keys: Any = None
        self._q_values: Any = None

    def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        import torch

        self.cumulative_length += key_states.shape[-2]
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
            self._q_keys = quantize_dequantize(key_states, self.spec)
            self._q_values = quantize_dequantize(value_states, self.spec)
            return key_states, value_states  # the prompt attends to itself in full precision
        keys = torch.cat([self._q_keys, self.keys, key_states], dim=-2)
        values = torch.cat([self._q_values, self.values, value_states], dim=-2)
        if self.keys.dim() == 4 and self.keys.shape[-2] + 1 >= self.spec.residual_length:
            self._q_keys = quantize_dequantize(keys, self.spec)
            self._q_values = quantize_dequantize(values, self.spec)
            self.keys = key_states.new_empty((*key_states.shape[:2], 0, key_states.shape[-1]))
            self.values = value_states.new_empty((*value_states.shape[:2], 0, value_states.shape[-1]))
        else:
            self.keys = torch.cat([self.keys, key_states], dim=-2)
            self.values = torch.cat([self.values, value_states], dim=-2)
        return keys, values

    def lazy_initialization(self, key_states: Any, value_states: Any) -> None:
        super().lazy_initialization(key_states, value_states)
        self.keys = key_states.new_empty((*key_states.shape[:2], 0, key_states.shape[-1]))
        self.values = value_states.new_empty((*value_states.shape[:2], 0, value_states.shape[-1]))

    def get_seq_length(self) -> int:
        return self.cumulative_length

    def _apply(self, fn: Any) -> None:
        if self.is_initialized:
            self._q_keys, self._q_values = fn(self._q_keys), fn(self._q_values)
            self.keys, self.values = fn(self.keys), fn(self.values)

    def reorder_cache(self, beam_idx: Any) -> None:
        self._apply(lambda t: t.index_select(0, beam_idx.to(t.device)))

    def batch_select_indices(self, indices: Any) -> None:
        self._apply(lambda t: t[indices, ...])

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._apply(lambda t: t.repeat_interleave(repeats, dim=0))

    def crop(self, max_length: int) -> None:
        raise NotImplementedError("a quantized KV cache cannot be cropped (no assisted decoding with --kv-cache)")


class QuantizedKVCache(DynamicCache):
    """A ``DynamicCache`` whose layers quantize what they store (:class:`QuantizedKVLayer`)."""

    def __init__(self, num_layers: int, spec: KVQuant) -> None:
        Cache.__init__(self, layers=[QuantizedKVLayer(spec) for _ in range(num_layers)])
        self.spec = spec


def quantized_cache(config: Any, spec: KVQuant) -> QuantizedKVCache:
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    return QuantizedKVCache(text.num_hidden_layers, spec)
