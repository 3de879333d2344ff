"""Generation speed: one prompt at a time (as DecodingTrust's reference runs) vs comptrust's batches.

Generates the same 32 stereotype prompts (real DecodingTrust data when
../shared is present, else the smoke suite) with SmolLM2-135M-Instruct twice in
one run and prints tokens/s for each and the ratio.  Greedy decoding with a
fixed number of new tokens, so both sides do identical work.

    .venv/bin/python benchmarks/generation.py [--prompts 32] [--max-new-tokens 64] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

from comptrust.backends.base import row_seed
from comptrust.backends.hf.backend import HFBackend
from comptrust.data.source import LocalFolder, SmokeSuite
from comptrust.perspectives.base import EvalOptions
from comptrust.perspectives.stereotype import StereotypePerspective
from comptrust.types import GenParams, GenRow

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "decodingtrust"


def make_rows(n_prompts: int, max_new_tokens: int) -> list[GenRow]:
    data = LocalFolder(SHARED) if SHARED.is_dir() else SmokeSuite()
    samples = StereotypePerspective().samples(data, EvalOptions(scenarios=["benign"]))
    samples = (samples * (n_prompts // len(samples) + 1))[:n_prompts]
    params = GenParams(max_tokens=max_new_tokens, temperature=0.0)
    return [GenRow(s.messages, params, 0, row_seed(0, f"{i}", s.prompt_hash, 0)) for i, s in enumerate(samples)]


def timed(backend: HFBackend, rows: list[GenRow], batch_size: int, one_at_a_time: bool) -> tuple[float, int]:
    backend.requested_batch_size = batch_size
    start = time.perf_counter()
    if one_at_a_time:
        completions = [c for row in rows for c in backend.generate([row])]
    else:
        completions = backend.generate(rows)
    seconds = time.perf_counter() - start
    return seconds, sum(c.completion_tokens for c in completions)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--dtype", default=None, help="auto (default), float32, bfloat16")
    args = ap.parse_args()

    backend = HFBackend.from_path("smollm2-135m-instruct", dtype=args.dtype)
    eos = backend.eos_ids
    backend.eos_ids = []  # no early stop: both sides generate exactly max-new-tokens per prompt
    backend.model.generation_config.eos_token_id = None
    rows = make_rows(args.prompts, args.max_new_tokens)
    timed(backend, rows[:2], 2, one_at_a_time=False)  # warm-up
    single_s, single_tok = timed(backend, rows, 1, one_at_a_time=True)
    batch_s, batch_tok = timed(backend, rows, args.batch_size, one_at_a_time=False)
    backend.eos_ids = eos

    print(f"machine: {platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores; "
          f"torch threads {__import__('torch').get_num_threads()}")
    print(f"model: SmolLM2-135M-Instruct ({backend.model.dtype}, {backend.device}); {args.prompts} stereotype prompts; "
          f"{args.max_new_tokens} new tokens each; greedy")
    print(f"{'mode':<28}{'seconds':>10}{'tokens':>10}{'tokens/s':>12}")
    print(f"{'one prompt at a time':<28}{single_s:>10.1f}{single_tok:>10}{single_tok / single_s:>12.1f}")
    print(f"{f'batched (batch {args.batch_size})':<28}{batch_s:>10.1f}{batch_tok:>10}{batch_tok / batch_s:>12.1f}")
    print(f"speed-up: {(batch_tok / batch_s) / (single_tok / single_s):.2f}x")


if __name__ == "__main__":
    main()
