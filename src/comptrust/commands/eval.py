"""``comptrust eval MODEL``: run perspectives on one model and write a run directory."""

from __future__ import annotations

import argparse

from comptrust.backends.base import KV_CACHE_CHOICES
from comptrust.chat import TEMPLATES
from comptrust.commands._common import add_profile, add_threads, common_parser, parse_key_values, print_summary
from comptrust.errors import ConfigError
from comptrust.noise import KINDS
from comptrust.progress import Progress
from comptrust.registry import PERSPECTIVES, TRUST_PERSPECTIVES, available_perspectives


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", parents=[common_parser()], help="evaluate a model on DecodingTrust perspectives",
                       description="Evaluate MODEL (folder, .gguf, hub id or 'smollm2-135m-instruct').")
    p.add_argument("model")
    p.add_argument("--perspectives", default="all",
                   help=f"comma-separated ids, 'all' ({', '.join(TRUST_PERSPECTIVES)}) or 'none' (with --benign)")
    p.add_argument("--benign", default=None, help="benign capability measure to add, e.g. 'mmlu'")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--data-dir", help="folder laid out like DecodingTrust's data/ (default: the hub)")
    src.add_argument("--smoke", action="store_true", help="comptrust's tiny smoke suite (offline; not the benchmark)")
    p.add_argument("--hub-revision", help="DecodingTrust hub dataset revision to pin")
    p.add_argument("--scenarios", help="comma-separated sub-scenarios (default: all scored ones)")
    p.add_argument("--limit", type=int, help="at most N records per scenario (cheap runs)")
    p.add_argument("--samples", type=int, help="samples per prompt for sampled scenarios (benchmark: 25)")
    p.add_argument("--max-new-tokens", type=int, help="cap every scenario's generation length")
    p.add_argument("--seed", type=int, default=0)
    add_profile(p)
    p.add_argument("--out", help="run directory (default: comptrust-runs/<model>-<run id>)")
    p.add_argument("--backend", default="hf",
                   help="hf (default), llamacpp (a GGUF with llama.cpp's kernels), vllm or openai")
    p.add_argument("--kv-cache", choices=("none", *KV_CACHE_CHOICES),
                   help="--backend hf: quantize the KV cache while generating (KIVI-style, as transformers' "
                        "QuantizedCache); reported as its own variant, e.g. 'dense + KV int4'")
    p.add_argument("--batch-size", type=int, help="generation batch size (default: automatic)")
    api_opts = p.add_argument_group("--backend openai (any OpenAI-compatible chat server; MODEL = served name)")
    api_opts.add_argument("--base-url", help="server URL ending in /v1 (default $OPENAI_BASE_URL or "
                                             "http://127.0.0.1:8000/v1)")
    api_opts.add_argument("--api-key-env", help="environment variable holding the API key (default OPENAI_API_KEY)")
    api_opts.add_argument("--concurrency", type=int, help="requests in flight (default 8)")
    api_opts.add_argument("--timeout", type=float, help="seconds per request before a retry (default 120)")
    p.add_argument("--chat-template", choices=TEMPLATES,
                   help="prompt format: the model's own (default; raw, with a warning, for a model without one), "
                        "raw (plain text for base models, docs/prompts.md) or DecodingTrust's llama-2 / vicuna_v1.1")
    p.add_argument("--dtype", choices=("auto", "float32", "bfloat16", "float16"),
                   help="compute dtype for --backend hf (auto: bfloat16 on GPUs and on CPUs with AMX or "
                        "AVX512-BF16, else float32)")
    p.add_argument("--base-model", metavar="PATH_OR_ID",
                   help="the dense model a downloaded quantized checkpoint was made from (folder, .gguf, alias or "
                        "hub id): recorded so 'comptrust report' pairs the two (default: the checkpoint's own "
                        "model card or GGUF header, where it names one)")
    p.add_argument("--allow-pickle", action="store_true", help="load pickle .bin weights (runs code: trusted only)")
    p.add_argument("--toxicity-scorer", default="offline", help="offline (default), perspective or detoxify")
    p.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="perspective-specific option, e.g. ethics_train_file=cm_train.csv (repeatable)")
    div = p.add_argument_group("divergence from dense (teacher forcing; docs/reports.md)")
    div.add_argument("--divergence", action="store_true",
                     help="store this (dense) model's top-20 next-token log-probabilities on its own responses, "
                          "so compressed runs can be compared with it")
    div.add_argument("--divergence-from", metavar="DENSE_RUN",
                     help="score the dense run's responses with this model: token KL and same-top-token rate")
    div.add_argument("--divergence-responses", type=int, default=None, metavar="N",
                     help="responses per perspective in the reference (default 100)")
    p.add_argument("--noise-floor", choices=KINDS, metavar="{" + ",".join(KINDS) + "}",
                   help="evaluate the model a second time under one perturbation (seed: the seed + 1; batch: "
                        "rows reordered, another batch size), into RUN-noise-KIND, so 'comptrust report' shows "
                        "dense-vs-dense beside every change (docs/reports.md); doubles the evaluation's cost")
    add_threads(p)
    p.set_defaults(func=run)


def selected_perspectives(spec: str, benign: str | None) -> list[str]:
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if names == ["all"]:
        names = [n for n in TRUST_PERSPECTIVES if n in available_perspectives()]
    elif names == ["none"]:
        names = []
    for name in names:
        if name not in PERSPECTIVES or name not in available_perspectives():
            raise ConfigError(f"unknown perspective {name!r}", f"choose from: {', '.join(available_perspectives())}")
    if benign:
        names += [b.strip() for b in benign.split(",") if b.strip() and b.strip() not in names]
    if not names:
        raise ConfigError("nothing to evaluate: no perspective and no --benign measure",
                          "pass --perspectives all (or a list), or add --benign mmlu")
    return names


def run(args: argparse.Namespace) -> int:
    from comptrust import api

    perspectives = selected_perspectives(args.perspectives, args.benign)
    base_model = api.declare_base_model(args.base_model) if args.base_model else None  # before loading gigabytes
    extra = parse_key_values(args.option)
    extra.setdefault("toxicity_scorer", args.toxicity_scorer)
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be at least 1 (got {args.limit})", "omit --limit to use every record")
    server = {k: getattr(args, k) for k in ("base_url", "api_key_env", "concurrency", "timeout")
              if getattr(args, k) is not None}
    if server and args.backend != "openai":
        raise ConfigError(f"--{next(iter(server)).replace('_', '-')} applies to --backend openai only",
                          "add --backend openai, or drop the server options")
    if args.backend == "openai":
        backend = api.load_model(args.model, backend="openai", batch_size=args.batch_size,
                                 chat_template=args.chat_template, **server)
    else:
        hf_only = {"dtype": args.dtype} if args.dtype and args.backend == "hf" else {}
        if args.kv_cache not in (None, "none"):
            if args.backend != "hf":
                raise ConfigError(f"--kv-cache applies to --backend hf, not {args.backend}",
                                  "drop --kv-cache, or evaluate with --backend hf")
            hf_only["kv_cache"] = args.kv_cache
        with Progress(quiet=args.quiet):  # library load bars (GGUF, decompression) show as its rows
            backend = api.load_model(args.model, backend=args.backend, batch_size=args.batch_size,
                                     chat_template=args.chat_template, allow_pickle=args.allow_pickle, **hf_only)
    divergence = None
    if args.divergence or args.divergence_from:
        from pathlib import Path

        from comptrust.divergence import DEFAULT_MAX_RESPONSES, DivergencePlan

        divergence = DivergencePlan(reference=args.divergence,
                                    compare_with=Path(args.divergence_from) if args.divergence_from else None,
                                    max_responses=(DEFAULT_MAX_RESPONSES if args.divergence_responses is None
                                                   else args.divergence_responses))
    elif args.divergence_responses is not None:
        raise ConfigError("--divergence-responses applies with --divergence", "add --divergence, or drop it")
    settings = {"data_dir": args.data_dir, "smoke": args.smoke, "hub_revision": args.hub_revision,
                "limit": args.limit, "samples": args.samples, "seed": args.seed, "profile": args.profile,
                "scenarios": args.scenarios.split(",") if args.scenarios else None,
                "max_new_tokens": args.max_new_tokens, "quiet": args.quiet, "extra": extra, "base_model": base_model}
    summary = api.evaluate(backend, perspectives, out=args.out, divergence=divergence, **settings)
    print_summary(summary, args.quiet)
    if args.noise_floor:
        if not args.quiet:
            print(f"noise floor: evaluating again under another {args.noise_floor} ...")
        replicate = api.evaluate_noise_floor(backend, summary, args.noise_floor, perspectives, **settings)
        print_summary(replicate, args.quiet)
    return 0
