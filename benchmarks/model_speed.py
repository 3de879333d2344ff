"""Two real models side by side: SmolLM2-135M-Instruct vs Gemma 3 270M, tokens/s and tokens/s per parameter.

    .venv/bin/python benchmarks/model_speed.py [--rows 32] [--max-tokens 48] [--backends hf,llamacpp]

For each model and backend, in one process, on the same smoke-suite prompts
(stereotype, machine ethics, OOD, toxicity; real DecodingTrust-format text):

* ``fixed``: every row generates exactly ``--max-tokens`` (EOS off), sampled at
  temperature 1 (the sampler runs over the whole vocabulary, as in the
  stereotype and toxicity perspectives), so both models do the same number of
  steps and the rates compare like for like;
* ``eos``: the same rows with EOS on (what a user's run does); lengths differ
  by model, so this rate is printed but not divided by parameters.

Then *per parameter*: tokens/s x (multiply-adds per token) / 1e9, i.e. the
effective GMAC/s each model reaches.  A token costs one pass over the
transformer weights plus the output projection (vocabulary x hidden; Gemma's
262,144-token vocabulary makes this 168M of its 268M multiply-adds per token,
SmolLM2's 28M of 135M); the input embedding is a lookup and costs nothing.
Equal GMAC/s means "as fast per parameter".  Also timed apart, at the decode
batch the backend used: the output projection and the sampler on one step's
logits, so the share of the vocabulary in a step is visible.

Prints machine, dtype, threads and load beside every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
MODELS = ("smollm2-135m-instruct", "gemma3-270m")


def macs_per_token(config: Any) -> tuple[int, int]:
    """(transformer weights, output projection) multiply-adds per generated token, from the config."""
    text = getattr(config, "text_config", None) or config
    hidden, layers, vocab = text.hidden_size, text.num_hidden_layers, text.vocab_size
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or hidden // heads
    kv = getattr(text, "num_key_value_heads", heads)
    attention = hidden * head_dim * (2 * heads + 2 * kv)
    mlp = 3 * hidden * text.intermediate_size
    return layers * (attention + mlp), vocab * hidden


def timed_generate(backend: Any, rows: list[Any], eos: bool) -> tuple[float, int, dict[str, float]]:
    """Seconds, generated tokens and (hf) the prefill / decode seconds of one ``generate`` call."""
    saved = None
    if not eos:
        saved = disable_eos(backend)
    stats = getattr(backend, "stats", None)
    before = (stats.prefill_seconds, stats.decode_seconds) if stats is not None else None
    start = time.perf_counter()
    out = backend.generate(rows)
    seconds = time.perf_counter() - start
    if saved is not None:
        saved()
    phases = {}
    if before is not None:
        phases = {"prefill_s": round(stats.prefill_seconds - before[0], 1),
                  "decode_s": round(stats.decode_seconds - before[1], 1)}
    return seconds, sum(c.completion_tokens for c in out), phases


def disable_eos(backend: Any) -> Any:
    """Switch EOS off on either backend; returns the function that switches it back on."""
    if hasattr(backend, "eos_ids"):
        eos_ids, config_eos = backend.eos_ids, backend.model.generation_config.eos_token_id
        backend.eos_ids = []
        backend.model.generation_config.eos_token_id = None

        def restore() -> None:
            backend.eos_ids = eos_ids
            backend.model.generation_config.eos_token_id = config_eos
        return restore
    cls = type(backend)  # llama.cpp's stop set is a property: a subclass without it, for the run
    backend.__class__ = type(f"{cls.__name__}NoEos", (cls,), {"_stop_ids": property(lambda self: set())})
    return lambda: setattr(backend, "__class__", cls)


def step_parts(backend: Any, rows: int) -> dict[str, float]:
    """Milliseconds for one step's output projection and sampler at ``rows`` rows (hf only)."""
    import torch

    from comptrust.backends.sampling import next_tokens

    head = backend.model.get_output_embeddings().weight
    hidden = torch.randn(rows, head.shape[1], dtype=head.dtype)
    torch.nn.functional.linear(hidden, head)
    start = time.perf_counter()
    for _ in range(10):
        logits = torch.nn.functional.linear(hidden, head)
    projection = (time.perf_counter() - start) / 10
    seeds = torch.arange(rows, dtype=torch.int64)[:, None]
    steps = torch.full((rows, 1), 7, dtype=torch.int64)
    ones = [1.0] * rows
    next_tokens(logits, seeds, steps, ones, ones)
    start = time.perf_counter()
    for _ in range(10):
        next_tokens(logits, seeds, steps, ones, ones)
    sampler = (time.perf_counter() - start) / 10
    return {"projection_ms": round(projection * 1000, 2), "sampler_ms": round(sampler * 1000, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--backends", default="hf,llamacpp")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--json")
    args = parser.parse_args(argv)

    import torch
    from llamacpp import finish, smoke_rows

    from comptrust import api

    rows = smoke_rows(args.rows, args.max_tokens, limit=8, temperature=1.0)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
          f"{torch.get_num_threads()}, torch {torch.__version__}; load {os.getloadavg()[0]:.1f} at start; "
          f"{len(rows)} rows x {args.max_tokens} sampled tokens (temperature 1)")
    results: list[dict[str, Any]] = []
    for model in args.models.split(","):
        for name in args.backends.split(","):
            backend = api.load_model(model, backend=name)
            timed_generate(backend, rows[:2], eos=False)  # warm-up
            fixed_s, fixed_tok, phases = timed_generate(backend, rows, eos=False)
            eos_s, eos_tok, _ = timed_generate(backend, rows, eos=True)
            row: dict[str, Any] = {"model": model, "backend": name, "fixed_tok_s": round(fixed_tok / fixed_s, 1),
                                   "fixed_s": round(fixed_s, 1), **phases,
                                   "eos_tok_s": round(eos_tok / eos_s, 1), "eos_tokens": eos_tok,
                                   "load": round(os.getloadavg()[0], 1)}
            if name == "hf":
                body, head = macs_per_token(backend.model.config)
                row.update(dtype=str(backend.model.dtype).replace("torch.", ""), body_macs=body, head_macs=head,
                           gmac_s=round(fixed_tok / fixed_s * (body + head) / 1e9, 2),
                           **step_parts(backend, len(rows)))
                for parameter in ("body_macs", "head_macs"):
                    row[parameter] = f"{row[parameter] / 1e6:.0f}M"
            results.append(row)
            print(json.dumps(row), flush=True)
            del backend
    finish(results, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
