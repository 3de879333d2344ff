"""``comptrust compress MODEL --method METHOD ... [--out DIR]``: one compressed artifact."""

from __future__ import annotations

import argparse
import sys

from comptrust.commands._common import add_threads, common_parser
from comptrust.commands.inspect import describe
from comptrust.compression.base import load_manifest
from comptrust.compression.config import make_config
from comptrust.compression.methods import PAPER_FAMILIES, family_of, methods
from comptrust.progress import Progress


def _takes(option: str, families: tuple[str, ...] | None = None) -> str:
    """``gptq/sparsegpt``: the methods (of ``families``) whose class takes ``option``, for help text."""
    return "/".join(m for m in methods(option=option) if families is None or family_of(m) in families)


def add_parser(sub: argparse._SubParsersAction) -> None:
    quant, prune, fmt, file = (", ".join(methods(f)) for f in ("quantization", "pruning", "format", "file"))
    p = sub.add_parser(
        "compress", parents=[common_parser()],
        help=f"quantize ({quant}; {fmt}; {file}) or prune ({prune}) a causal LM",
        description="Write a Hugging Face folder (compressed-tensors when quantized) or, with --method gguf, a "
                    "llama.cpp .gguf file, plus a comptrust.json manifest.  The same model and options are "
                    "compressed only once (content hash).")
    p.add_argument("model", metavar="MODEL", help="model folder, .gguf file, hub id or 'smollm2-135m-instruct'")
    p.add_argument("--method", required=True,
                   help=f"{quant}, {prune} (the paper's); {fmt} (weights and activations); {file} (llama.cpp)")
    q = p.add_argument_group(f"quantization ({quant})")
    q.add_argument("--bits", type=int, help="weight bits: 3, 4 or 8 (default 4)")
    q.add_argument("--group-size", help="input columns per scale: 128 (default), 64, ..., 'channel' (one "
                                        "scale per output row) or 'auto' (largest of 128/64/32 that fits)")
    sym = q.add_mutually_exclusive_group()
    sym.add_argument("--sym", dest="symmetric", action="store_true", default=None,
                     help="symmetric integers, no zero point (default)")
    sym.add_argument("--asym", dest="symmetric", action="store_false", help="asymmetric, with zero points")
    q.add_argument("--act-order", action="store_true", default=None,
                   help=f"{_takes('act_order')}: quantize columns in order of decreasing activation size")
    q.add_argument("--damp", type=float,
                   help=f"{_takes('damp', PAPER_FAMILIES)}: Hessian dampening fraction (default 0.01)")
    d = p.add_argument_group(f"deployed formats ({fmt}, {file})")
    d.add_argument("--type", dest="gguf_type",
                   help=f"{_takes('gguf_type')}: llama.cpp type, e.g. Q4_K_M, Q5_K_M, Q8_0, Q6_K, F16")
    d.add_argument("--smoothing", type=float,
                   help=f"{_takes('smoothing')}: SmoothQuant migration strength in [0, 1] (default 0.8)")
    s = p.add_argument_group(f"pruning ({prune})")
    s.add_argument("--sparsity", type=float, help="fraction of weights set to zero, in (0, 1) (default 0.5)")
    s.add_argument("--pattern", help="unstructured (default), 1:2, 2:4 or 4:8 (N:M along the input dimension)")
    c = p.add_argument_group(f"calibration ({', '.join(methods(calibrated=True))})")
    c.add_argument("--calib-source", help="builtin (Python's own help text, offline; default), file, c4, wikitext")
    c.add_argument("--calib-file", help="UTF-8 text (paragraphs) or JSONL with a 'text' field")
    c.add_argument("--calib-samples", type=int, help="number of samples (default 128)")
    c.add_argument("--calib-seqlen", type=int, help="tokens per sample (default 512)")
    c.add_argument("--calib-chat-template", action="store_true", default=None,
                   help="render samples through the model's chat template (as the paper did for chat models)")
    c.add_argument("--seed", type=int, help="calibration seed (default 0; the paper used 0, 1, 2)")
    p.add_argument("--out", metavar="DIR", help="artifact folder (default: a cache under $COMPTRUST_HOME/artifacts)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it holds a different artifact")
    add_threads(p)
    p.set_defaults(func=run)


PARAMS = ("bits", "group_size", "symmetric", "act_order", "damp", "sparsity", "pattern", "gguf_type", "smoothing",
          "calib_source",
          "calib_file", "calib_samples", "calib_seqlen", "calib_chat_template", "seed")


def run(args: argparse.Namespace) -> int:
    params = {name: getattr(args, name) for name in PARAMS if getattr(args, name) is not None}
    make_config(args.method, **params)  # one-line errors before any heavy import
    from comptrust.compression.pipeline import compress_model

    log = None if args.quiet else (lambda msg: print(f"comptrust: {msg}", file=sys.stderr))
    with Progress(quiet=args.quiet):  # library bars (GGUF, quantization, saving) show as its rows
        out = compress_model(args.model, args.method, args.out, force=args.force, log=log, **params)
    if args.quiet:
        print(out)
        return 0

    print(describe(load_manifest(out), out))
    return 0
