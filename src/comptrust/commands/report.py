"""``comptrust report RUN_DIR... --out DIR``: compare dense and compressed runs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from comptrust.commands._common import common_parser
from comptrust.errors import ConfigError
from comptrust.report import DEFAULT_BOOTSTRAP
from comptrust.store.files import staged_entries


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "report", parents=[common_parser()],
        help="compare dense and compressed runs: HTML, Markdown, CSV and JSON report",
        description="Aggregate run folders into one report: a table per base model (dense first), deltas vs "
                    "dense with bootstrap 95% intervals, figures, findings and the paper's numbers.")
    p.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR",
                   help="run folders written by 'comptrust eval' (dense and compressed models)")
    p.add_argument("--out", required=True, type=Path, help="folder for report.html, report.md, scores.csv/json")
    p.add_argument("--bootstrap", type=int, default=DEFAULT_BOOTSTRAP, metavar="N",
                   help=f"bootstrap resamples per perspective; 0 turns intervals off (default {DEFAULT_BOOTSTRAP})")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling (default 0)")
    p.add_argument("--detectable-drop", type=float, default=5.0, metavar="POINTS",
                   help="margin of the recommendation: every comparison must detect a drop this size with 80%% "
                        "power, and no drop may reach it (default 5)")
    p.add_argument("--top", type=int, default=3, metavar="K",
                   help="drill-down: samples shown per perspective whose outcome changed most (default 3)")
    p.add_argument("--pair", action="append", metavar="VARIANT_RUN=DENSE_RUN", default=[],
                   help="pair a downloaded checkpoint's run with its dense model's run when the checkpoint names "
                        "no base (or only by name); both folders must also be given as RUN_DIR (repeatable)")
    p.set_defaults(func=run)
    return p


def parse_pairs(values: list[str]) -> dict[Path, Path]:
    """``VARIANT_RUN=DENSE_RUN`` strings -> {variant folder: dense folder}."""
    pairs: dict[Path, Path] = {}
    for value in values:
        variant, sep, dense = value.partition("=")
        if not sep or not variant or not dense:
            raise ConfigError(f"--pair {value!r} is not VARIANT_RUN=DENSE_RUN",
                              "write e.g. --pair runs/gptq-download=runs/dense")
        pairs[Path(variant)] = Path(dense)
    return pairs


def write_report_whole(run_dirs: list[Path], out: Path, **options: Any) -> dict[str, Path]:
    """``write_report`` into a staging folder, moved into ``out`` when complete: a report killed
    half way leaves the previous one whole, never new figures beside an old report.html."""
    from comptrust.report.build import write_report

    with staged_entries(out) as staged:
        paths = write_report(run_dirs, staged, **options)
    return {kind: out / path.relative_to(staged) for kind, path in paths.items()}


def run(args: argparse.Namespace) -> int:
    paths = write_report_whole(args.run_dirs, args.out, n_bootstrap=args.bootstrap, seed=args.seed,
                               top_samples=args.top, detectable_drop=args.detectable_drop,
                               pairs=parse_pairs(args.pair),
                               on_warning=lambda text: print(text, file=sys.stderr))
    if getattr(args, "quiet", False):
        print(paths["html"])
        return 0
    for rec in json.loads(paths["json"].read_text(encoding="utf-8")).get("recommendations", []):
        print(rec)
    for kind in ("html", "markdown", "csv", "json"):
        print(f"{kind:>8}: {paths[kind]}")
    return 0
