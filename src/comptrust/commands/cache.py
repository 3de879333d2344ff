"""``comptrust cache stats|clear|check|recover``: inspect, empty, verify or salvage the generation cache."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from comptrust.commands._common import common_parser
from comptrust.store.paths import cache_db_path


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
    check = csub.add_parser("check", parents=[common_parser()],
                            help="run SQLite's integrity check and count the readable rows (changes nothing)")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(func=run_check)
    recover = csub.add_parser(
        "recover", parents=[common_parser()],
        help="copy every readable row of a damaged cache into a fresh one (the damaged file is kept)",
        description="Copy every readable row into a fresh cache. Without --to, the damaged file (and its -wal/-shm) "
                    "is renamed to cache.sqlite.damaged-<time> and the copy takes its place. Stop other comptrust "
                    "commands using this cache first.")
    recover.add_argument("--to", type=Path, metavar="PATH", help="write the copy to PATH and leave the cache alone")
    recover.set_defaults(func=run_recover)


def run_stats(args: argparse.Namespace) -> int:
    from comptrust.store.cache import Cache

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
    from comptrust.store.cache import Cache

    cache = Cache()
    n = cache.clear(model=args.model, perspective=args.perspective)
    cache.close()
    print(f"deleted {n} cached generations")
    return 0


def run_check(args: argparse.Namespace) -> int:
    """Exit 0 when the cache is healthy (or absent), 1 when it is damaged, foreign or not a database."""
    from comptrust.store.repair import check_cache

    result = check_cache(cache_db_path())
    if args.json or args.quiet:
        print(json.dumps(result.to_json(), indent=2))
        return 0 if result.healthy else 1
    print(f"cache: {result.path} ({result.size / 1e6:.1f} MB)" if result.exists else f"cache: {result.path}")
    verdicts = {"ok": "ok: SQLite's integrity check passed", "missing": f"ok: {result.detail}",
                "not-sqlite": f"NOT A DATABASE: {result.detail}",
                "foreign": f"NOT A COMPTRUST CACHE: {result.detail} (comptrust leaves it untouched)",
                "damaged": f"DAMAGED: {result.detail}"}
    print(verdicts[result.verdict])
    for problem in result.problems:
        print("\n".join(f"  {line}" for line in problem.splitlines()))
    for table, tally in result.tables.items():
        lost = (f", {tally.unreadable_rowids} rowids in unreadable pages (each at most one lost row)"
                if tally.unreadable_rowids else "")
        print(f"  {table}: {tally.readable} readable rows{lost}")
    if result.verdict == "damaged":
        print("recover: 'comptrust cache recover' copies the readable rows into a fresh cache and keeps the "
              "damaged file beside it")
    elif result.verdict in ("not-sqlite", "foreign"):
        print(f"fix: move {result.path} elsewhere (or set COMPTRUST_HOME to another folder); "
              "comptrust then starts an empty cache")
    return 0 if result.healthy else 1


def run_recover(args: argparse.Namespace) -> int:
    from comptrust.store.repair import check_cache, recover_cache

    path = cache_db_path()
    if not args.to and check_cache(path).verdict == "ok":
        print(f"{path} passes SQLite's integrity check: nothing to recover (use --to PATH to copy it anyway)")
        return 0
    done = recover_cache(path, args.to)
    rows = ", ".join(f"{n} {table}" for table, n in done.copied.items())
    print(f"copied {rows} into {done.recovered}")
    if done.kept:
        print(f"the damaged file is kept as {done.kept}; delete it once you are satisfied")
    return 0
