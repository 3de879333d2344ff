"""Generation throughput: one prompt at a time (as the reference implementation) vs comptrust.

    .venv/bin/python benchmarks/throughput.py                      # CPU: SmolLM2-135M, smoke prompts
    python benchmarks/throughput.py --shape llama2-13b --prompts 512 --max-new-tokens 128   # GPU

The same prompts (the smoke suite's DecodingTrust-format prompts, cycled to
``--prompts``) are generated three ways in one process:

1. ``reference``: batch 1, one ``generate`` call per prompt, as DecodingTrust's
   HF path does (comptrust's HFBackend with ``batch_size=1``: no padding at all);
2. ``hf``: comptrust's batched transformers backend (``--batch-size``, default automatic);
3. ``vllm``: comptrust's vLLM backend, when vllm is installed (GPU only).

EOS is disabled (``--ignore-eos``, default on) so every way generates exactly
``prompts x max_new_tokens`` tokens and the rates compare like for like.  With
``--shape llama2-7b|llama2-13b`` a random-weight model of that shape (bfloat16,
SmolLM2's tokenizer, so vocab 49,152 instead of 32,000) is built on the GPU,
saved to a temporary folder and loaded by every way.  ``--reference-prompts``
times the slow way on fewer prompts (its rate does not depend on the count).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SHAPES: dict[str, dict[str, int]] = {
    "llama2-7b": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
                  "num_attention_heads": 32, "num_key_value_heads": 32},
    "llama2-13b": {"hidden_size": 5120, "intermediate_size": 13824, "num_hidden_layers": 40,
                   "num_attention_heads": 40, "num_key_value_heads": 40},
}


def prompts(n: int, max_new_tokens: int) -> list[Any]:
    """``n`` generation rows built from the smoke suite's prompts (cycled), greedy."""
    from comptrust.backends.base import row_seed
    from comptrust.data.source import SmokeSuite
    from comptrust.perspectives.base import EvalOptions
    from comptrust.registry import get_perspective
    from comptrust.types import GenParams, GenRow

    data, options = SmokeSuite(), EvalOptions(limit=4, samples=1)
    messages = []
    for name in ("stereotype", "ood", "adv_glue", "machine_ethics", "fairness", "toxicity"):
        messages += [s.messages for s in get_perspective(name).samples(data, options)]
    params = GenParams(max_tokens=max_new_tokens)
    return [GenRow(messages[i % len(messages)], params, 0, row_seed(0, str(i), "bench", 0)) for i in range(n)]


def random_model(shape: str, folder: Path) -> Path:
    """A random-weight Llama of ``shape`` in bfloat16 with SmolLM2's tokenizer (GPU only)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from comptrust.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m-instruct").path)
    config = LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=4096, **SHAPES[shape],
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, torch_dtype="bfloat16")
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = LlamaForCausalLM(config)
    torch.set_default_dtype(torch.float32)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    torch.cuda.empty_cache()
    return folder


def timed(backend: Any, rows: list[Any]) -> dict[str, Any]:
    started = time.perf_counter()
    out = backend.generate(rows)
    seconds = time.perf_counter() - started
    tokens = sum(c.completion_tokens for c in out)
    print(f"  {len(rows)} prompts, {tokens} tokens in {seconds:.1f} s", file=sys.stderr, flush=True)
    return {"prompts": len(rows), "tokens": tokens, "seconds": round(seconds, 2),
            "tokens_per_second": round(tokens / seconds, 2)}


def hf_backend(path: str, batch_size: int | None, ignore_eos: bool) -> Any:
    from comptrust.backends.hf import HFBackend

    backend = HFBackend.from_path(path, batch_size=batch_size)
    if ignore_eos:
        backend.eos_ids = []
    return backend


def machine() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, {platform.processor() or platform.machine()}"
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"CPU only, {cores} cores available ({platform.machine()}), torch threads {torch.get_num_threads()}"


def main(argv: list[str] | None = None) -> int:
    import torch

    gpu = torch.cuda.is_available()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=("smollm2", *SHAPES), default="llama2-13b" if gpu else "smollm2")
    ap.add_argument("--prompts", type=int, default=512 if gpu else 32)
    ap.add_argument("--reference-prompts", type=int, default=32 if gpu else 8)
    ap.add_argument("--max-new-tokens", type=int, default=128 if gpu else 32)
    ap.add_argument("--batch-size", type=int, default=None, help="hf batch size (default: automatic)")
    ap.add_argument("--ways", default="reference,hf,vllm")
    ap.add_argument("--ignore-eos", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    ways = [w.strip() for w in args.ways.split(",") if w.strip()]

    from comptrust.models import resolve_model

    tmp = tempfile.TemporaryDirectory(prefix="comptrust-bench-")
    if args.shape == "smollm2":
        path = str(resolve_model("smollm2-135m-instruct").path)
    else:
        if not gpu:
            print(f"--shape {args.shape} needs a CUDA GPU (random weights of that size on CPU are pointless)")
            return 2
        path = str(random_model(args.shape, Path(tmp.name) / args.shape))
    rows = prompts(args.prompts, args.max_new_tokens)
    results: dict[str, Any] = {}
    if "reference" in ways:
        backend = hf_backend(path, 1, args.ignore_eos)
        timed(backend, rows[:1])  # warm-up (kernels, allocator)
        results["reference"] = timed(backend, rows[:args.reference_prompts])
        del backend
    if "hf" in ways:
        backend = hf_backend(path, args.batch_size, args.ignore_eos)
        timed(backend, rows[:min(len(rows), 4)])
        results["hf"] = timed(backend, rows) | {"batch_size": args.batch_size or backend._batch_size(
            args.max_new_tokens + 512)}
        del backend
        if gpu:
            torch.cuda.empty_cache()
    if "vllm" in ways:
        try:
            from comptrust.backends.vllm import VLLMBackend

            backend = VLLMBackend.from_spec(path, ignore_eos=args.ignore_eos)
            timed(backend, rows[:4])
            results["vllm"] = timed(backend, rows)
        except Exception as exc:  # absent or failing vLLM must not lose the other measurements
            results["vllm"] = {"skipped": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}

    base = results.get("reference", {}).get("tokens_per_second")
    report = {"date": datetime.now(UTC).strftime("%Y-%m-%d"), "machine": machine(), "shape": args.shape,
              "model": path if args.shape == "smollm2" else f"random {args.shape}", "prompts": args.prompts,
              "max_new_tokens": args.max_new_tokens, "ignore_eos": args.ignore_eos,
              "versions": {"torch": torch.__version__, "python": platform.python_version()}, "results": results}
    print(f"{report['date']}  {report['machine']}  model {args.shape}  {args.max_new_tokens} new tokens/prompt")
    print(f"{'way':<10} {'prompts':>8} {'tokens':>8} {'seconds':>9} {'tok/s':>10} {'vs reference':>13}")
    for way, r in results.items():
        if "skipped" in r:
            print(f"{way:<10} skipped ({r['skipped']})")
            continue
        ratio = f"{r['tokens_per_second'] / base:.1f}x" if base else "—"
        print(f"{way:<10} {r['prompts']:>8} {r['tokens']:>8} {r['seconds']:>9.2f} {r['tokens_per_second']:>10.1f} "
              f"{ratio:>13}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
