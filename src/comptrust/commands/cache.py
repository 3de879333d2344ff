"""``comptrust cache stats|clear``: inspect or empty the generation cache."""

from __future__ import annotations

import argparse
import json

from comptrust.commands._common import common_parser


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cache", help="show or clear the generation cache")
    csub = p.add_subparsers(dest="cache_command", metavar="ACTION")
    csub.required = True
    stats = csub.add_parser("stats", parents=[common_parser()], help="what the cache holds")
    stats.add_argument("--json", action="store_true", help="machine-readable output")
    stats.set_defaults(func=run_stats)
    clear = csub.add_parser("clear", parents=[common_parser()], help="delete cached generations")
    clear.add_argument("--model", help="only this model fingerprint")
    clear.add_argument("--perspective", help="only this perspective")
    clear.set_defaults(func=run_clear)


def run_stats(args: argparse.Namespace) -> int:
    from comptrust.store import Cache

    cache = Cache()
    stats = cache.stats()
    cache.close()
    if args.json or args.quiet:
        print(json.dumps(stats, indent=2))
        return 0
    print(f"cache: {stats['path']} ({stats['bytes'] / 1e6:.1f} MB)")
    print(f"generations: {stats['generations']}   external scores: {stats['scores']}   "
          f"MMLU log-likelihoods: {stats['logliks']}")
    for row in stats["by_model"]:
        print(f"  {row['model']}  {row['perspective']:<18} {row['generations']:>8} generations"
              f"  {row['completion_tokens']:>10} tokens")
    return 0


def run_clear(args: argparse.Namespace) -> int:
    from comptrust.store import Cache

    cache = Cache()
    n = cache.clear(model=args.model, perspective=args.perspective)
    cache.close()
    print(f"deleted {n} cached generations")
    return 0
