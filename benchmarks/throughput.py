"""Generation throughput: one prompt at a time (as the reference implementation) vs comptrust.

    .venv/bin/python benchmarks/throughput.py                      # CPU: SmolLM2-135M, smoke prompts
    python benchmarks/throughput.py --shape llama2-13b             # GPU: random Llama-2-13B shape
    benchmarks/device_throughput.sh                                # the prepared GPU run (both shapes)

The same prompts (the smoke suite's DecodingTrust-format prompts, cycled to
``--prompts``) are generated up to four ways in one process, on one copy of the
weights:

1. ``reference``: batch 1, one ``generate`` call per prompt, as DecodingTrust's
   HF path does (comptrust's HFBackend, static batches of 1: no padding at all);
2. ``hf-plain``: plain ``model.generate`` on left-padded batches of
   ``--plain-batch-size`` (128) with transformers' default cache, the yardstick
   of the issue's reference measurement;
3. ``hf``: comptrust's transformers backend with its default scheduler, continuous
   batching (``--batch-size`` slots, default automatic);
4. ``hf-static``: the same backend on static batches (reserved KV cache, shared
   prefixes, length buckets); ``hf-loop`` is ``hf-static`` with the old per-row sampler;
5. ``vllm``: comptrust's vLLM backend, when vllm is installed (GPU only).

EOS is disabled (``--ignore-eos``, default on) so every way generates exactly
``max_new_tokens`` per prompt and the rates compare like for like (with every row
running to the same length, continuous and static batching do the same work;
``benchmarks/scheduling.py`` measures them with EOS on).  With
``--shape llama2-7b|llama2-13b`` a random-weight model of that shape (bfloat16,
SmolLM2's tokenizer, so vocab 49,152 instead of 32,000) is built in GPU memory;
only the vLLM way saves it to a temporary folder.  ``--tokenizer`` reads the
tokenizer from a folder (the device has no GGUF reader).  ``--reference-prompts``
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
    # a toy shape that runs anywhere: checks the random-weights path (tests/test_throughput_benchmark.py)
    "llama-tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                   "num_attention_heads": 4, "num_key_value_heads": 4},
    "llama2-7b": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
                  "num_attention_heads": 32, "num_key_value_heads": 32},
    "llama2-13b": {"hidden_size": 5120, "intermediate_size": 13824, "num_hidden_layers": 40,
                   "num_attention_heads": 40, "num_key_value_heads": 40},
}


def prompts(n: int, max_new_tokens: int, temperature: float = 0.0) -> list[Any]:
    """``n`` generation rows built from the smoke suite's prompts (cycled), greedy unless ``temperature``."""
    from comptrust.backends.base import row_seed
    from comptrust.data.source import SmokeSuite
    from comptrust.perspectives.base import EvalOptions
    from comptrust.registry import get_perspective
    from comptrust.types import GenParams, GenRow

    data, options = SmokeSuite(), EvalOptions(limit=4, samples=1)
    messages = []
    for name in ("stereotype", "ood", "adv_glue", "machine_ethics", "fairness", "toxicity"):
        messages += [s.messages for s in get_perspective(name).samples(data, options)]
    params = GenParams(max_tokens=max_new_tokens, temperature=temperature)
    return [GenRow(messages[i % len(messages)], params, 0, row_seed(0, str(i), "bench", 0)) for i in range(n)]


def load_tokenizer(path: str | None) -> Any:
    """SmolLM2's tokenizer: from ``path`` (a saved tokenizer folder) or the converted demo model."""
    from transformers import AutoTokenizer

    from comptrust.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(path or resolve_model("smollm2-135m-instruct").path,
                                              padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def random_model(shape: str, tokenizer: Any, device: str = "cuda") -> Any:
    """A random-weight Llama of ``shape`` in bfloat16 on ``device``, EOS disabled (nothing touches the disk)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=4096, **SHAPES[shape],
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=None,
                         pad_token_id=tokenizer.pad_token_id, dtype="bfloat16")
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device(device):
        model = LlamaForCausalLM(config)
    torch.set_default_dtype(torch.float32)
    model.generation_config.eos_token_id = None
    return model.eval()


def hf_backend(model: Any, tokenizer: Any, folder: Path, name: str, batch_size: int | None,
               ignore_eos: bool, scheduler: str = "continuous") -> Any:
    """comptrust's HFBackend around an already loaded model (its fingerprint names the weights)."""
    from comptrust.backends.hf.backend import HFBackend
    from comptrust.models import ModelRef

    backend = HFBackend(model, tokenizer, ModelRef(folder, "local", name), batch_size=batch_size,
                        weights_hash=f"benchmark-{name}", scheduler=scheduler)
    if ignore_eos:
        backend.eos_ids = []
        model.generation_config.eos_token_id = None
    return backend


class LoopSampler:
    """The sampler comptrust used before 2026-11-28: one seeded ``torch.multinomial`` per row per step.

    Kept here only as the yardstick of the ``hf-loop`` way (``--temperature`` > 0), so the
    vectorized per-row sampler's gain is measured side by side on the same GPU.
    """

    def __init__(self, seeds: list[int], temperature: float, top_p: float, device: Any) -> None:
        import torch

        self.temperature, self.top_p = temperature, top_p
        self.generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        out = torch.full_like(scores, float("-inf"))
        for i, g in enumerate(self.generators):
            out[i, torch.multinomial(probs[i], 1, generator=g)] = 0.0
        return out


class PlainGenerate:
    """``model.generate`` on left-padded batches of a fixed size with transformers' default (dynamic) cache.

    This is what "plain batched HF generate" means in the issue's reference measurement
    (1,764 tok/s at batch 128 for 13B on one H200): the yardstick comptrust's backend must beat.
    """

    def __init__(self, backend: Any, batch_size: int) -> None:
        self.backend, self.batch_size = backend, batch_size

    def generate(self, rows: list[Any]) -> list[Any]:
        import torch

        from comptrust.types import Completion

        b, out = self.backend, []
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start:start + self.batch_size]
            texts = [b.prompt_text(r.messages) for r in chunk]
            enc = b.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(b.device)
            with torch.inference_mode():
                sampling = {"do_sample": True, "temperature": chunk[0].params.temperature, "top_k": None} \
                    if chunk[0].params.temperature > 0 else {"do_sample": False}
                ids = b.model.generate(**enc, max_new_tokens=chunk[0].params.max_tokens, **sampling,
                                       eos_token_id=b.eos_ids or None, pad_token_id=b.tokenizer.pad_token_id)
            width = enc["input_ids"].shape[1]
            for row in ids[:, width:].tolist():
                out.append(Completion(text="", prompt_tokens=width, completion_tokens=len(row)))
        return out


def timed(backend: Any, rows: list[Any]) -> dict[str, Any]:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    out = backend.generate(rows)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    tokens = sum(c.completion_tokens for c in out)
    result = {"prompts": len(rows), "tokens": tokens, "seconds": round(seconds, 2),
              "tokens_per_second": round(tokens / seconds, 2)}
    if torch.cuda.is_available():
        result["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
    print(f"  {len(rows)} prompts, {tokens} tokens in {seconds:.1f} s", file=sys.stderr, flush=True)
    return result


def machine() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, {platform.processor() or platform.machine()}"
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"CPU only, {cores} cores available ({platform.machine()}), torch threads {torch.get_num_threads()}"


def measure(way: str, run: Any, results: dict[str, Any]) -> None:
    """Run one way; a failure (OOM, missing vLLM) is recorded and the other ways still run."""
    print(f"{way} ...", file=sys.stderr, flush=True)
    try:
        results[way] = run()
    except Exception as exc:  # one way's failure must not lose the others' figures
        results[way] = {"skipped": f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"}
    finally:
        import gc

        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> int:
    import torch

    gpu = torch.cuda.is_available()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=("smollm2", *SHAPES), default="llama2-13b" if gpu else "smollm2")
    ap.add_argument("--prompts", type=int, default=512 if gpu else 32)
    ap.add_argument("--reference-prompts", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=128 if gpu else 32)
    ap.add_argument("--batch-size", type=int, default=None, help="hf batch size (default: automatic)")
    ap.add_argument("--plain-batch-size", type=int, default=128, help="batch of the hf-plain way")
    ap.add_argument("--plain-prompts", type=int, default=None, help="prompts of the hf-plain way (default: --prompts)")
    ap.add_argument("--ways", default="reference,hf-plain,hf,vllm",
                    help="any of reference, hf-plain, hf (continuous batching), hf-static, hf-loop (hf-static "
                         "with the old per-row sampler), vllm")
    ap.add_argument("--temperature", type=float, default=0.0, help="> 0 samples (DecodingTrust's toxicity uses 1)")
    ap.add_argument("--tokenizer", default=None, help="tokenizer folder for random shapes (default: SmolLM2's)")
    ap.add_argument("--ignore-eos", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    ways = [w.strip() for w in args.ways.split(",") if w.strip()]

    from comptrust.models import resolve_model

    tmp = tempfile.TemporaryDirectory(prefix="comptrust-bench-")
    tokenizer = load_tokenizer(args.tokenizer)
    if args.shape == "smollm2":
        from transformers import AutoModelForCausalLM

        from comptrust.backends.hf.backend import choose_dtype

        folder = resolve_model("smollm2-135m-instruct").path
        device = "cuda" if gpu else "cpu"
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=choose_dtype(device)).to(device).eval()
    else:
        if not gpu and args.shape != "llama-tiny":
            print(f"--shape {args.shape} needs a CUDA GPU (random weights of that size on CPU are pointless)")
            return 2
        folder = Path(tmp.name) / args.shape
        model = random_model(args.shape, tokenizer, "cuda" if gpu else "cpu")
    rows = prompts(args.prompts, args.max_new_tokens, args.temperature)
    results: dict[str, Any] = {}

    def backend(batch_size: int | None, scheduler: str = "continuous") -> Any:
        return hf_backend(model, tokenizer, Path(folder), args.shape, batch_size, args.ignore_eos, scheduler)

    def reference() -> dict[str, Any]:
        one = backend(1, "static")
        timed(one, rows[:1])  # warm-up (kernels, allocator)
        return timed(one, rows[:args.reference_prompts])

    def plain() -> dict[str, Any]:
        way = PlainGenerate(backend(None), args.plain_batch_size)
        timed(way, rows[:2])
        return timed(way, rows[:args.plain_prompts or len(rows)]) | {"batch_size": args.plain_batch_size}

    def batched(scheduler: str = "continuous") -> dict[str, Any]:
        ours = backend(args.batch_size, scheduler)
        timed(ours, rows[:4])
        out = timed(ours, rows)
        longest = args.max_new_tokens + max(len(ours._encode(ours.prompt_text(r.messages))) for r in rows)
        size = ours._slot_count(longest) if scheduler == "continuous" else ours._batch_size(longest)
        return out | {"batch_size": args.batch_size or size, "oom_retries": ours.oom_retries}

    def batched_loop() -> dict[str, Any]:
        import comptrust.backends.hf.backend as hf

        vectorized, hf.RowSampler = hf.RowSampler, LoopSampler
        try:
            return batched("static")
        finally:
            hf.RowSampler = vectorized

    def vllm_way() -> dict[str, Any]:
        from comptrust.backends.vllm import VLLMBackend, import_vllm

        import_vllm()  # fail before saving a multi-GB model when vLLM is absent
        if args.shape != "smollm2":
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
        engine = VLLMBackend.from_spec(str(folder), ignore_eos=args.ignore_eos)
        timed(engine, rows[:4])
        return timed(engine, rows)

    for way, run in (("reference", reference), ("hf-plain", plain), ("hf", batched),
                     ("hf-static", lambda: batched("static")), ("hf-loop", batched_loop), ("vllm", vllm_way)):
        if way in ways:
            measure(way, run, results)

    base = results.get("reference", {}).get("tokens_per_second")
    report = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(), "shape": args.shape,
              "temperature": args.temperature,
              "model": str(folder) if args.shape == "smollm2" else f"random {args.shape}", "prompts": args.prompts,
              "max_new_tokens": args.max_new_tokens, "ignore_eos": args.ignore_eos,
              "dtype": str(model.dtype).replace("torch.", ""),
              "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__,
                           "python": platform.python_version()}, "results": results}
    print(f"{report['date']}  {report['machine']}  model {args.shape} ({report['dtype']})  "
          f"{args.max_new_tokens} new tokens/prompt, temperature {args.temperature}")
    print(f"{'way':<10} {'prompts':>8} {'batch':>6} {'tokens':>8} {'seconds':>9} {'tok/s':>10} {'vs reference':>13}")
    for way, r in results.items():
        if "skipped" in r:
            print(f"{way:<10} skipped ({r['skipped']})")
            continue
        ratio = f"{r['tokens_per_second'] / base:.1f}x" if base else "—"
        batch = r.get("batch_size", 1 if way == "reference" else "auto")
        print(f"{way:<10} {r['prompts']:>8} {batch!s:>6} {r['tokens']:>8} {r['seconds']:>9.2f} "
              f"{r['tokens_per_second']:>10.1f} {ratio:>13}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
