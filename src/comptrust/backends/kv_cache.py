"""A KV cache reserved once per batch, so decoding never copies it.

Why?  transformers' ``DynamicCache`` appends each step's keys and values with
``torch.cat``, which copies the whole cache of every layer at every step: for a
13B model at batch 128 with 600-token rows that is ~100 GB of memory traffic
per generated token, more than the weights and the attention read together, and
it needs twice the cache's memory at the moment of each copy.  A batch's final
length is known before it starts (widest prompt + ``max_new_tokens``), so
:class:`ReservedCache` allocates each layer's keys and values once at that
length, writes new positions in place and hands attention a view of the filled
part.  Attention sees exactly the tensors ``DynamicCache`` would give it, so
the generated text is the same (tested).
"""

from __future__ import annotations

from typing import Any

from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

FULL_ATTENTION = "full_attention"


class ReservedLayer(DynamicLayer):
    """One layer's keys and values in buffers of ``capacity`` positions, filled left to right."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self.length = 0
        self._keys: Any = None
        self._values: Any = None

    def lazy_initialization(self, key_states: Any, value_states: Any) -> None:
        import torch

        self.dtype, self.device = key_states.dtype, key_states.device
        batch, heads, _, head_dim = key_states.shape
        value_dim = value_states.shape[-1]
        self._keys = torch.empty((batch, heads, self.capacity, head_dim), dtype=self.dtype, device=self.device)
        self._values = torch.empty((batch, heads, self.capacity, value_dim), dtype=self.dtype, device=self.device)
        self.length = 0
        self.is_initialized = True
        self._publish()

    def _publish(self) -> None:
        """Expose the filled positions as ``keys``/``values`` (views, no copy)."""
        self.keys = self._keys[:, :, :self.length]
        self.values = self._values[:, :, :self.length]

    def _grow(self, needed: int) -> None:
        """Enlarge the buffers (only when a caller generates past the reserved length)."""
        import torch

        capacity = max(needed, 2 * self.capacity)
        for name in ("_keys", "_values"):
            old = getattr(self, name)
            new = torch.empty((*old.shape[:2], capacity, old.shape[3]), dtype=old.dtype, device=old.device)
            new[:, :, :self.length] = old[:, :, :self.length]
            setattr(self, name, new)
        self.capacity = capacity

    def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if end > self.capacity:
            self._grow(end)
        self._keys[:, :, self.length:end] = key_states
        self._values[:, :, self.length:end] = value_states
        self.length = end
        self._publish()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length if self.is_initialized else 0

    def crop(self, tokens_to_remove: int) -> None:
        """Drop the last positions (a negative count, as transformers 5.18 will require; positive = keep that many)."""
        if not self.is_initialized:
            return
        keep = tokens_to_remove if tokens_to_remove > 0 else self.length + tokens_to_remove
        self.length = max(0, min(self.length, keep))
        self._publish()

    def _select(self, indices: Any) -> None:
        if self.is_initialized:
            self._keys = self._keys.index_select(0, indices.to(self._keys.device))
            self._values = self._values.index_select(0, indices.to(self._values.device))
            self._publish()

    def reorder_cache(self, beam_idx: Any) -> None:
        self._select(beam_idx)

    def batch_select_indices(self, indices: Any) -> None:
        import torch

        if isinstance(indices, torch.Tensor) and indices.dtype == torch.bool:
            indices = indices.nonzero().flatten()
        self._select(torch.as_tensor(indices))

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.is_initialized:
            self._keys = self._keys.repeat_interleave(repeats, dim=0)
            self._values = self._values.repeat_interleave(repeats, dim=0)
            self._publish()


class ReservedCache(DynamicCache):
    """A ``DynamicCache`` whose layers are :class:`ReservedLayer` of one capacity.

    It stays a ``DynamicCache`` for transformers (same mask sizes, same cropping and
    batch selection), so ``generate`` treats it exactly like the default cache.
    """

    def __init__(self, num_layers: int, capacity: int) -> None:
        Cache.__init__(self, layers=[ReservedLayer(capacity) for _ in range(num_layers)])


def reservable(config: Any) -> bool:
    """Whether every decoder layer is plain full attention (sliding-window and linear layers are not reserved)."""
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    layer_types = getattr(text, "layer_types", None)
    if getattr(text, "sliding_window", None) and not layer_types:
        return False
    return all(t == FULL_ATTENTION for t in (layer_types or [FULL_ATTENTION]))


def reserved_cache(config: Any, capacity: int) -> ReservedCache | None:
    """A cache for ``capacity`` positions per row, or None where the model needs transformers' own."""
    if not reservable(config):
        return None
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    return ReservedCache(text.num_hidden_layers, capacity)
