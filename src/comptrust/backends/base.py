"""The backend protocol: turn chat messages into completions, in batches.

A backend sees only :class:`~comptrust.types.GenRow` items (messages, decoding
parameters, the draw index and a per-row seed).  Caching, resume and progress
live in :mod:`comptrust.backends.cached`, so every backend gets them for free.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from comptrust.types import Completion, GenRow

KV_CACHE_CHOICES = ("int4", "int2")  # --kv-cache: the quantized KV cache while generating (backends/hf/kv_quant.py)


def kv_label(kv_cache: str | None) -> str:
    """What a variant's name gets for its quantized KV cache (``dense + KV int4``): `` + KV int4``, or nothing."""
    return f" + KV {kv_cache}" if kv_cache else ""


OnResult = Callable[[int, Completion], None]


@runtime_checkable
class Backend(Protocol):
    """Anything that can complete chat prompts.

    ``fingerprint`` identifies everything that changes the text produced (the
    weights and compression, the chat template, the backend kind); it is part of
    every cache key.  ``generate`` must call ``on_result(i, completion)`` as soon
    as row ``i`` is done, so an interrupted run loses at most one batch.
    """

    name: str
    fingerprint: str

    def generate(self, rows: Sequence[GenRow], on_result: OnResult | None = None) -> list[Completion]: ...

    def info(self) -> dict[str, Any]:
        """What a run records about the backend (model, dtype, batch size, versions)."""
        ...


@runtime_checkable
class LoglikelihoodBackend(Protocol):
    """A backend that can score given continuations (benign MMLU needs this, not ``generate``).

    ``choice_logprobs(prompts, choices)[i][j]`` is ``log p(choices[j] | prompts[i])``
    on the raw prompt text (no chat template), summed over the choice's tokens.
    """

    def choice_logprobs(self, prompts: list[str], choices: list[str]) -> list[list[float]]: ...


def encode_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """``(context_tokens, continuation_tokens)`` as lm-eval's causal ``_encode_pair``.

    Every log-likelihood backend (hf, llamacpp, vllm) splits a request this way, so their MMLU numbers
    agree with lm-eval and with each other.
    """
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tokenizer.encode(context + continuation)
    ctx = tokenizer.encode(context)
    return whole[: len(ctx)], whole[len(ctx):]


def row_seed(run_seed: int, sample_id: str, prompt_hash: str, sample_index: int) -> int:
    """A 63-bit generator seed for one draw, independent of batch composition and order."""
    digest = hashlib.sha256(f"{run_seed}|{sample_id}|{prompt_hash}|{sample_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)
