"""Log-likelihood of answer choices on a loaded Hugging Face causal LM, batched.

Follows lm-eval's ``HFLM.loglikelihood`` conventions so MMLU numbers are
comparable with published ones: trailing spaces of the context move onto the
continuation, ``context + continuation`` is tokenized as one string (the
tokenizer's own special tokens, e.g. BOS, included) and split after the
context's tokens, and the input is left-truncated to the model's maximum length.
Requests that share the same input tokens (MMLU: the four single-token letters
after one prompt) share one forward pass, and inputs that start alike (MMLU: a
subject's header and five demonstrations, ~80% of every prompt) share the
encoding of that prefix: it is run once (batch 1) and its keys and values are
copied into each batch, so only the question is encoded per prompt.  Causal
attention makes the prefix's keys and values independent of what follows, so
the log-probabilities are those of the whole sequence (to float rounding).
"""

from __future__ import annotations

from typing import Any

from comptrust.backends.base import encode_pair
from comptrust.backends.hf.continuous import common_length, shared_prefix_groups
from comptrust.backends.hf.cpu_attention import cpu_attention
from comptrust.backends.hf.slot_cache import ReservedCache
from comptrust.errors import BackendError

MIN_SHARED_PREFIX = 16  # shorter common prefixes are not worth a separate forward pass
REUSE_SLACK = 32  # tokens of a new prefix worth re-encoding per input rather than encoding it again once


def _max_length(model: Any, tokenizer: Any) -> int:
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(model.config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    value = getattr(tokenizer, "model_max_length", None)
    return value if isinstance(value, int) and 0 < value < 1_000_000 else 2048


def hf_choice_logprobs(model: Any, tokenizer: Any, prompts: list[str], choices: list[str],
                       batch_size: int = 8, prefixes: dict[tuple[int, ...], Any] | None = None) -> list[list[float]]:
    """``log p(choice | prompt)`` for every prompt and choice (summed over the choice's tokens).

    Inputs are grouped by shared prefix (:func:`comptrust.backends.hf.continuous.shared_prefix_groups`),
    right-padded (positions of real tokens do not change), sorted by length so a batch wastes
    little padding, and only the logits at scored positions are turned into log-probabilities (in
    float32).  ``prefixes`` keeps encoded prefixes between calls (MMLU asks in chunks of questions;
    a subject's demonstrations are then encoded once, not once per chunk).
    """
    if not prompts:
        return []
    if not choices:
        raise BackendError("choice_logprobs needs at least one choice", "pass the answer strings to score")
    max_len = _max_length(model, tokenizer)
    # request (prompt i, choice j) -> (input tokens, continuation tokens)
    inputs: dict[tuple[int, ...], int] = {}
    plan: list[list[tuple[int, list[int]]]] = []
    for prompt in prompts:
        row = []
        for choice in choices:
            ctx, cont = encode_pair(tokenizer, prompt, choice)
            if not cont:
                raise BackendError(f"choice {choice!r} adds no token after the prompt",
                                   "use choices that tokenize to at least one token")
            full = (ctx + cont)[-(max_len + 1):][:-1]
            key = tuple(full)
            if key not in inputs:
                inputs[key] = len(inputs)
            row.append((inputs[key], cont))
        plan.append(row)

    # which continuations each unique input must score: input id -> list of token lists
    wanted: dict[int, list[list[int]]] = {}
    for row in plan:
        for input_id, cont in row:
            wanted.setdefault(input_id, [])
            if cont not in wanted[input_id]:
                wanted[input_id].append(cont)

    keys = list(inputs)
    results: dict[tuple[int, tuple[int, ...]], float] = {}
    with cpu_attention(model):  # one attention computation for every hf path (CPU)
        for members, shared in _prefix_groups(keys, wanted):
            prefix, shared = _encode_prefix(model, keys[members[0]][:shared], prefixes) if shared else (None, 0)
            order = sorted(members, key=lambda i: -len(keys[i]))
            for start in range(0, len(order), max(1, batch_size)):
                batch = order[start:start + max(1, batch_size)]
                _score_batch(model, tokenizer, [keys[i] for i in batch], [wanted[i] for i in batch], prefix,
                             shared, lambda b, cont, value, batch=batch: results.__setitem__((batch[b], tuple(cont)),
                                                                                            value))
    return [[results[(input_id, tuple(cont))] for input_id, cont in row] for row in plan]


def _prefix_groups(keys: list[tuple[int, ...]], wanted: dict[int, list[list[int]]]) -> list[tuple[list[int], int]]:
    """Inputs that share a prefix worth encoding once, and the rest together (shared length 0).

    A prefix never reaches a scored position (each input keeps its longest continuation after it).
    """
    groups, alone = [], []
    for members, shared in shared_prefix_groups(keys, MIN_SHARED_PREFIX):
        shared = min([shared] + [len(keys[i]) - max(len(c) for c in wanted[i]) for i in members])
        if len(members) > 1 and shared >= MIN_SHARED_PREFIX:
            groups.append((members, shared))
        else:
            alone += members
    return groups + ([(alone, 0)] if alone else [])


def _encode_prefix(model: Any, tokens: tuple[int, ...], prefixes: dict[tuple[int, ...], Any] | None,
                   ) -> tuple[Any, int]:
    """The keys and values of ``tokens`` (batch 1) and how many tokens they cover.

    ``prefixes`` holds the last prefix encoded (a subject's header and demonstrations).  A chunk of
    questions may share a little more than that (two questions both starting "Which"), so the
    stored prefix is reused, cut to the tokens both have, unless that would leave more than
    ``REUSE_SLACK`` tokens of the new prefix to encode per input.
    """
    import torch

    for stored, cache in (prefixes or {}).items():
        common = common_length(stored, tokens, leave=0)
        if common >= MIN_SHARED_PREFIX and len(tokens) - common <= REUSE_SLACK:
            return cache, common
    layers = model.config.get_text_config(decoder=True).num_hidden_layers
    cache = ReservedCache(layers, len(tokens))
    device = next(model.parameters()).device
    ids = torch.tensor([tokens], device=device)
    with torch.inference_mode():
        model(input_ids=ids, attention_mask=torch.ones_like(ids), past_key_values=cache, use_cache=True,
              **({"logits_to_keep": 1} if _keeps_logits(model) else {}))
    if prefixes is not None:
        prefixes.clear()  # one subject at a time: keep only the latest prefix
        prefixes[tokens] = cache
    return cache, len(tokens)


def _keeps_logits(model: Any) -> bool:
    import inspect

    return "logits_to_keep" in inspect.signature(model.forward).parameters


def _score_batch(model: Any, tokenizer: Any, keys: list[tuple[int, ...]], wanted: list[list[list[int]]],
                 prefix: Any, shared: int, put: Any) -> None:
    """One forward over ``keys`` (minus their ``shared`` prefix, whose cache is ``prefix``); ``put`` each score."""
    import torch

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    width = max(len(k) for k in keys) - shared
    ids = torch.full((len(keys), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(keys), shared + width), dtype=torch.long)
    mask[:, :shared] = 1
    for b, key in enumerate(keys):
        ids[b, : len(key) - shared] = torch.tensor(key[shared:], dtype=torch.long)
        mask[b, shared: len(key)] = 1
    # Only the scored positions go through the LM head (a full vocab x sequence logits
    # tensor would dominate memory); models without ``logits_to_keep`` return them all.
    keep = sorted({p - shared for key, conts in zip(keys, wanted, strict=True) for cont in conts
                   for p in range(len(key) - len(cont), len(key))})
    column = {p: c for c, p in enumerate(keep)}
    kwargs: dict[str, Any] = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
    if prefix is not None:
        cache = ReservedCache(len(prefix.layers), shared + width)
        for index, layer in enumerate(prefix.layers):
            cache.update(layer.keys[:, :, :shared].expand(len(keys), -1, -1, -1),
                         layer.values[:, :, :shared].expand(len(keys), -1, -1, -1), index)
        positions = torch.arange(shared, shared + width, device=device).expand(len(keys), -1)
        kwargs |= {"past_key_values": cache, "use_cache": True, "position_ids": positions}
    with torch.inference_mode():
        if _keeps_logits(model):
            logits = model(**kwargs, logits_to_keep=torch.tensor(keep, device=device)).logits
        else:
            logits = model(**kwargs).logits
            column = {p: p for p in keep}
    for b, (key, conts) in enumerate(zip(keys, wanted, strict=True)):
        for cont in conts:
            cols = [column[p - shared] for p in range(len(key) - len(cont), len(key))]
            rows = logits[b, cols].float().log_softmax(-1)
            target = torch.tensor(cont, device=rows.device).unsqueeze(-1)
            put(b, cont, float(rows.gather(-1, target).sum()))
