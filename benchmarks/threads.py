"""Generation speed by torch thread count, side by side in one run (the `--threads` default's evidence).

Generates the same stereotype prompts with SmolLM2-135M-Instruct (greedy, fixed number of new
tokens) at each thread count, in interleaved rounds (1, 2, ..., then reversed) so a change in
the machine's load hits every count alike, and prints tokens/s per count and the ratio to the
count comptrust would choose by default (comptrust.runtime.threads.choose_threads).

    .venv/bin/python benchmarks/threads.py [--threads 1,2] [--rounds 2] [--prompts 8] [--max-new-tokens 32]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
from generation import make_rows

from comptrust.backends.hf.backend import HFBackend
from comptrust.runtime.threads import choose_threads


def run_once(backend: HFBackend, rows: list, threads: int) -> float:
    torch.set_num_threads(threads)
    start = time.perf_counter()
    completions = backend.generate(rows)
    seconds = time.perf_counter() - start
    return sum(c.completion_tokens for c in completions) / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default=None, help="comma-separated counts (default: 1 .. logical CPUs)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    args = ap.parse_args()

    default, source = choose_threads(None)
    counts = [int(x) for x in args.threads.split(",")] if args.threads else list(range(1, (os.cpu_count() or 1) + 1))
    backend = HFBackend.from_path("smollm2-135m-instruct", dtype="float32")
    backend.eos_ids = []  # no early stop: every count generates exactly max-new-tokens per prompt
    backend.model.generation_config.eos_token_id = None
    rows = make_rows(args.prompts, args.max_new_tokens)
    backend.requested_batch_size = len(rows)
    run_once(backend, rows[:2], counts[0])  # warm-up

    speeds: dict[int, list[float]] = {n: [] for n in counts}
    for r in range(args.rounds):
        for n in (counts if r % 2 == 0 else list(reversed(counts))):
            speeds[n].append(run_once(backend, rows, n))

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
          f"load average {os.getloadavg()[0]:.1f} (1 min) at the end; torch {torch.__version__}, float32")
    print(f"comptrust's default: {default} thread(s) ({source})")
    print(f"{args.prompts} prompts x {args.max_new_tokens} new tokens, one batch, {args.rounds} interleaved rounds")
    base = statistics.median(speeds[default]) if default in speeds else None
    for n in counts:
        med = statistics.median(speeds[n])
        ratio = f"  x{med / base:.2f} vs default" if base else ""
        runs = ", ".join(f"{s:.1f}" for s in speeds[n])
        print(f"  {n} thread(s): median {med:6.1f} tok/s  (runs: {runs}){ratio}")


if __name__ == "__main__":
    main()
