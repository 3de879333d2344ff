"""A GGUF on llama.cpp's kernels vs transformers' dequantized copy: smoke-suite scores and throughput, side by side.

    .venv/bin/python benchmarks/llamacpp.py [--type Q4_K_M] [--limit 2] [--rows 16] [--max-tokens 32]

Compresses SmolLM2-135M-Instruct to GGUF ``--type`` (reused when cached), then
for both backends (``llamacpp`` on the file, ``hf`` on the dequantized folder):
greedy generation of the same ``--rows`` smoke-suite prompts, timed (tokens/s,
batch 8 vs 16), the share of identical texts, and the smoke-suite scores of
every perspective at ``--limit``.  Prints machine, threads and load beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any


def smoke_rows(count: int, max_tokens: int, limit: int = 4, temperature: float | None = None) -> list[Any]:
    """The first ``count`` smoke-suite rows (stereotype, machine ethics, OOD, toxicity; ``limit`` records per
    scenario: 118 rows at 4, 138 at 8); greedy unless ``temperature`` is given."""
    from comptrust.data.source import open_source
    from comptrust.perspectives.base import EvalOptions
    from comptrust.registry import get_perspective
    from comptrust.types import GenParams, GenRow

    data = open_source(None, smoke=True)
    params = GenParams(max_tokens=max_tokens) if temperature is None else GenParams(max_tokens=max_tokens,
                                                                                     temperature=temperature)
    rows: list[Any] = []
    for name in ("stereotype", "machine_ethics", "ood", "toxicity"):
        for sample in get_perspective(name).samples(data, EvalOptions(limit=limit, samples=1)):
            rows.append(GenRow(tuple(sample.messages), params, 0, len(rows)))
    return rows[:count]


def finish(results: Any, json_path: str | None) -> None:
    """The closing line (load, UTC time) and, with ``--json``, the results file."""
    print(f"load {os.getloadavg()[0]:.1f} at end; {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    if json_path:
        with open(json_path, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2)


def timed(backend: Any, rows: list[Any]) -> tuple[list[str], float]:
    start = time.perf_counter()
    out = backend.generate(rows)
    seconds = time.perf_counter() - start
    return [c.text for c in out], sum(c.completion_tokens for c in out) / seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--type", default="Q4_K_M")
    parser.add_argument("--limit", type=int, default=2)
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--skip-scores", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args(argv)

    from comptrust import api
    from comptrust.compression import compress_model
    from comptrust.registry import TRUST_PERSPECTIVES

    artifact = compress_model("smollm2-135m-instruct", "gguf", gguf_type=args.type)
    rows = smoke_rows(args.rows, args.max_tokens)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f} at start; {len(rows)} rows x {args.max_tokens} greedy tokens")
    results: dict[str, Any] = {"type": args.type, "artifact": str(artifact), "throughput": {}, "scores": {}}
    texts = {}
    for name in ("llamacpp", "hf"):
        for batch in (8, 16):
            backend = api.load_model(str(artifact), backend=name, batch_size=batch)
            texts[name], tps = timed(backend, rows)
            results["throughput"][f"{name}-b{batch}"] = round(tps, 2)
            print(f"{name:<9} batch {batch:>2}: {tps:7.2f} tok/s  (load {os.getloadavg()[0]:.1f})", flush=True)
    same = sum(a == b for a, b in zip(texts["llamacpp"], texts["hf"], strict=True))
    results["identical_texts"] = f"{same}/{len(rows)}"
    print(f"identical greedy texts llamacpp vs hf: {same}/{len(rows)}")
    if not args.skip_scores:
        for name in ("llamacpp", "hf"):
            backend = api.load_model(str(artifact), backend=name, batch_size=16)
            summary = api.evaluate(backend, [*TRUST_PERSPECTIVES, "mmlu"], smoke=True, limit=args.limit, samples=1)
            results["scores"][name] = {p: r.get("score") for p, r in summary["perspectives"].items()}
        print(f"{'perspective':<18} {'llamacpp':>9} {'hf (deq.)':>9}")
        for p in results["scores"]["llamacpp"]:
            a, b = results["scores"]["llamacpp"][p], results["scores"]["hf"].get(p)
            print(f"{p:<18} {a if a is None else round(a, 1)!s:>9} {b if b is None else round(b, 1)!s:>9}")
    finish(results, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
