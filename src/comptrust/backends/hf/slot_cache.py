"""KV caches reserved once, so decoding never copies them: per batch, and per row slot.

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

:class:`SlotCache` is the same idea for continuous batching: a pool of row
slots, each with its own length.  A forward computes a contiguous range of
slots; each new key/value is written at its own row's next column, and
attention reads a view of the range, masked per row.

New keys and values enter either cache in one method, ``store`` (of
:class:`ReservedLayer` and of :class:`SlotLayer`): the place for anything that
transforms them on the way in (e.g. KV-cache quantization).  Rows finish and
leave (the last row moves into the freed slot), and new rows join, without
touching the rest of the pool.
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

    def store(self, key_states: Any, value_states: Any) -> None:
        """Write a forward's new keys and values after the filled positions (the one place they enter)."""
        end = self.length + key_states.shape[-2]
        if end > self.capacity:
            self._grow(end)
        self._keys[:, :, self.length:end] = key_states
        self._values[:, :, self.length:end] = value_states
        self.length = end

    def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self.store(key_states, value_states)
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


SLIDING_ATTENTION = "sliding_attention"


def sliding_window(config: Any) -> int | None:
    """The window of a model whose decoder mixes full and sliding-window layers (Gemma 3), else None."""
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    layer_types = getattr(text, "layer_types", None) or []
    return getattr(text, "sliding_window", None) if SLIDING_ATTENTION in layer_types else None


def slot_compatible(config: Any) -> bool:
    """Whether :class:`SlotCache` can hold every layer: full attention, or sliding windows declared per layer.

    A sliding layer's slot keeps every column (no rolling buffer) and the continuous batcher gives
    those layers a window mask (``kv_idx > q_idx - window`` on the row's own columns, transformers'
    ``sliding_window_overlay``), so a row attends to what it would attend to alone.  Models with a
    ``sliding_window`` but no ``layer_types`` (older Mistral configs) or linear-attention layers are not.
    """
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    layer_types = getattr(text, "layer_types", None)
    if not layer_types:
        return reservable(config)
    return all(t in (FULL_ATTENTION, SLIDING_ATTENTION) for t in layer_types) and (
        SLIDING_ATTENTION not in layer_types or bool(getattr(text, "sliding_window", None)))


def reserved_cache(config: Any, capacity: int) -> ReservedCache | None:
    """A cache for ``capacity`` positions per row, or None where the model needs transformers' own."""
    if not reservable(config):
        return None
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    return ReservedCache(text.num_hidden_layers, capacity)


class StepPlan:
    """Where the next forward's keys and values go, shared by every :class:`SlotLayer` of a pool.

    ``start``/``stop``: the contiguous slots the forward computes (its batch rows);
    ``columns``: (rows x new tokens) the column of each new token in its row (the pool's
    spare column for padding, which no mask ever admits); ``key_length``: the columns attention
    reads (the longest row after the forward).
    """

    def __init__(self) -> None:
        self.start = 0
        self.stop = 0
        self.rows: Any = None
        self.columns: Any = None
        self.key_length = 0

    def set(self, start: int, stop: int, columns: Any, key_length: int) -> None:
        import torch

        self.start, self.stop, self.columns, self.key_length = start, stop, columns, key_length
        self.rows = torch.arange(stop - start, device=columns.device)[:, None]


class SlotLayer(DynamicLayer):
    """One layer's keys and values for ``slots`` rows of up to ``capacity`` positions each (+1 spare column)."""

    def __init__(self, plan: StepPlan, slots: int, heads: int, capacity: int, head_dim: int, dtype: Any,
                 device: Any) -> None:
        import torch

        super().__init__()
        self.plan = plan
        self.capacity = capacity
        self.dtype, self.device = dtype, device
        shape = (slots, heads, capacity + 1, head_dim)
        self._keys = torch.zeros(shape, dtype=dtype, device=device)
        self._values = torch.zeros(shape, dtype=dtype, device=device)
        self.is_initialized = True

    def lazy_initialization(self, key_states: Any, value_states: Any) -> None:  # allocated up front
        return None

    def store(self, key_states: Any, value_states: Any) -> None:
        """Write a forward's new keys and values (rows x heads x tokens x dim) at the plan's columns."""
        plan = self.plan
        rows, columns = plan.rows, plan.columns
        # The pool may hold a wider dtype than the model computes in (cpu_attention.kv_cache_dtype).
        self._keys[plan.start:plan.stop][rows, :, columns] = key_states.transpose(1, 2).to(self.dtype)
        self._values[plan.start:plan.stop][rows, :, columns] = value_states.transpose(1, 2).to(self.dtype)

    def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        self.store(key_states, value_states)
        plan = self.plan
        self.keys = self._keys[plan.start:plan.stop, :, :plan.key_length]
        self.values = self._values[plan.start:plan.stop, :, :plan.key_length]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.plan.key_length

    def copy_in(self, keys: Any, values: Any, slots: list[int], length: int) -> None:
        """Fill columns ``[0, length)`` of ``slots`` from one row's keys/values (heads x >= length x dim).

        A plain strided copy per slot: an indexed write of the same data is several times slower on CPU.
        """
        for slot in slots:
            self._keys[slot, :, :length].copy_(keys[:, :length])
            self._values[slot, :, :length].copy_(values[:, :length])

    def row(self, slot: int) -> tuple[Any, Any]:
        """Slot ``slot``'s keys and values (views of the pool)."""
        return self._keys[slot], self._values[slot]


class SlotCache(DynamicCache):
    """A pool of row slots for continuous batching; the caller sets :attr:`plan` before every forward."""

    def __init__(self, config: Any, slots: int, capacity: int, dtype: Any, device: Any) -> None:
        text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
        heads = getattr(text, "num_key_value_heads", None) or text.num_attention_heads
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        self.plan = StepPlan()
        self.slots, self.capacity = slots, capacity
        self.spare_column = capacity
        Cache.__init__(self, layers=[SlotLayer(self.plan, slots, heads, capacity, head_dim, dtype, device)
                                     for _ in range(text.num_hidden_layers)])

    def copy_prefix(self, prefix: Any, slots: list[int], length: int) -> None:
        """Columns ``[0, length)`` of ``slots`` from a batch-1 cache (a shared prefix, encoded once)."""
        for layer, source in zip(self.layers, prefix.layers, strict=True):
            layer.copy_in(source.keys[0], source.values[0], slots, length)

    def copy_row(self, source: int, slots: list[int], length: int) -> None:
        """Columns ``[0, length)`` of ``slots`` from slot ``source`` (a prompt's draws share its encoding)."""
        for layer in self.layers:
            layer.copy_in(*layer.row(source), slots, length)
