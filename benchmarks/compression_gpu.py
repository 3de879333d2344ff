"""Time GPTQ and Wanda on a Llama-2-7B-shaped model with random weights (for a GPU machine).

    .venv/bin/python benchmarks/compression_gpu.py            # 7B shape, bf16 (needs ~30 GB RAM, a GPU)
    .venv/bin/python benchmarks/compression_gpu.py --layers 2 --hidden 256 --intermediate 688  # smoke test

Random weights say nothing about quality; this measures only wall time and peak
memory of compression at full scale, with the same calibration settings as the
SmolLM2 benchmark.  Results print as a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def build_model(path: Path, layers: int, hidden: int, intermediate: int, heads: int, dtype: str,
                tokenizer_path: str | None = None) -> Path:
    """Save a random Llama with the given shape plus a copy of a small tokenizer (SmolLM2's, or ``tokenizer_path``)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from comptrust.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path or resolve_model("smollm2-135m-instruct").path)
    # SmolLM2's tokenizer (49k tokens, Llama-2 has 32k): the embedding is not what is being timed
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=intermediate,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                         max_position_embeddings=4096, tie_word_embeddings=False)
    torch.manual_seed(0)
    # Built on the GPU where there is one: initialising 7B parameters on CPU in float32 takes minutes.
    torch.set_default_dtype(getattr(torch, dtype))
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = LlamaForCausalLM(config)
    torch.set_default_dtype(torch.float32)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=4096)
    parser.add_argument("--intermediate", type=int, default=11008)
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--calib-samples", type=int, default=32)
    parser.add_argument("--calib-seqlen", type=int, default=256)
    parser.add_argument("--tokenizer", help="tokenizer folder (default: SmolLM2's, converted from its GGUF)")
    parser.add_argument("--workdir", type=Path, help="where to write the models (default: a temp dir)")
    args = parser.parse_args(argv)
    import torch

    from comptrust.compression import compress_model, load_manifest

    work = args.workdir or Path(tempfile.mkdtemp(prefix="comptrust-gpu-bench-"))
    base = build_model(work / "llama-shaped", args.layers, args.hidden, args.intermediate, args.heads, args.dtype,
                       args.tokenizer)
    calib = {"calib_samples": args.calib_samples, "calib_seqlen": args.calib_seqlen}
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU only"
    print(f"shape: {args.layers} layers, hidden {args.hidden}, intermediate {args.intermediate}, {args.dtype}; "
          f"device: {device}; calibration {args.calib_samples}x{args.calib_seqlen}")
    print("| method | wall s | peak GPU MiB | peak RSS MiB | bits/weight or sparsity |")
    print("|---|---:|---:|---:|---:|")
    for method, params in (("gptq", {"bits": 4, "group_size": 128}), ("wanda", {"pattern": "2:4"})):
        out = compress_model(base, method, work / method, **params, **calib)
        m = load_manifest(out)
        peak = m["peak_memory"]
        detail = (m["storage"]["effective_bits_per_weight"] if m["kind"] == "quantization"
                  else m["sparsity"]["overall"])
        print(f"| {method} | {m['wall_time_s']:.1f} | {peak.get('gpu_peak_allocated_mib', '—')} | "
              f"{peak['process_peak_rss_mib']:.0f} | {detail} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    sys.exit(main())
