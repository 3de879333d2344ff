"""``comptrust score --responses FILE``: re-score stored or imported responses, no model needed."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from comptrust.commands._common import add_profile, common_parser, parse_key_values
from comptrust.perspectives.base import EvalOptions


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", parents=[common_parser()], help="re-score responses without a model",
                       description='Each line: {"perspective", "scenario", "record", "responses"}. '
                       "Prints each perspective's metrics and 0-100 score as JSON.")
    p.add_argument("--responses", required=True, type=Path, help="JSONL file of responses")
    add_profile(p)
    p.add_argument("--toxicity-scorer", default="offline")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--option", action="append", metavar="KEY=VALUE", help="perspective-specific option")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from comptrust.scoring import read_response_lines, score_lines

    extra = parse_key_values(args.option)
    extra.setdefault("toxicity_scorer", args.toxicity_scorer)
    options = EvalOptions(seed=args.seed, profile=args.profile, extra=extra)
    results = score_lines(read_response_lines(args.responses), options)
    print(json.dumps({name: r.to_json() for name, r in results.items()}, indent=2, default=str))
    return 0
