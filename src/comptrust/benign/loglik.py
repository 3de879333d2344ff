"""Log-likelihood of answer choices on a loaded Hugging Face causal LM, batched.

Follows lm-eval's ``HFLM.loglikelihood`` conventions so MMLU numbers are
comparable with published ones: trailing spaces of the context move onto the
continuation, ``context + continuation`` is tokenized as one string (the
tokenizer's own special tokens, e.g. BOS, included) and split after the
context's tokens, and the input is left-truncated to the model's maximum length.
Requests that share the same input tokens (MMLU: the four single-token letters
after one prompt) share one forward pass.
"""

from __future__ import annotations

from typing import Any

from comptrust.errors import BackendError


def encode_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """``(context_tokens, continuation_tokens)`` as lm-eval's causal ``_encode_pair``."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tokenizer.encode(context + continuation)
    ctx = tokenizer.encode(context)
    return whole[: len(ctx)], whole[len(ctx):]


def _max_length(model: Any, tokenizer: Any) -> int:
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(model.config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    value = getattr(tokenizer, "model_max_length", None)
    return value if isinstance(value, int) and 0 < value < 1_000_000 else 2048


def hf_choice_logprobs(model: Any, tokenizer: Any, prompts: list[str], choices: list[str],
                       batch_size: int = 8) -> list[list[float]]:
    """``log p(choice | prompt)`` for every prompt and choice (summed over the choice's tokens).

    Inputs are right-padded (positions of real tokens do not change), sorted by
    length so a batch wastes little padding, and only the logits at scored
    positions are turned into log-probabilities (in float32).
    """
    import torch

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
    order = sorted(range(len(keys)), key=lambda i: -len(keys[i]))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    results: dict[tuple[int, tuple[int, ...]], float] = {}
    with torch.inference_mode():
        for start in range(0, len(order), max(1, batch_size)):
            batch = order[start:start + max(1, batch_size)]
            width = max(len(keys[i]) for i in batch)
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for b, i in enumerate(batch):
                ids[b, : len(keys[i])] = torch.tensor(keys[i], dtype=torch.long)
                mask[b, : len(keys[i])] = 1
            # Only the scored positions go through the LM head (a full vocab x sequence logits
            # tensor would dominate memory); models without ``logits_to_keep`` return them all.
            keep = sorted({p for i in batch for cont in wanted[i]
                           for p in range(len(keys[i]) - len(cont), len(keys[i]))})
            column = {p: c for c, p in enumerate(keep)}
            kwargs = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
            try:
                logits = model(**kwargs, logits_to_keep=torch.tensor(keep, device=device)).logits
            except TypeError:
                logits = model(**kwargs).logits
                column = {p: p for p in keep}
            for b, i in enumerate(batch):
                length = len(keys[i])
                for cont in wanted[i]:
                    n = len(cont)
                    cols = [column[p] for p in range(length - n, length)]
                    rows = logits[b, cols].float().log_softmax(-1)
                    target = torch.tensor(cont, device=rows.device).unsqueeze(-1)
                    results[(i, tuple(cont))] = float(rows.gather(-1, target).sum())
    return [[results[(input_id, tuple(cont))] for input_id, cont in row] for row in plan]
