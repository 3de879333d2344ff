"""``comptrust sweep SWEEP.yaml``: a grid of models x compressions x seeds x perspectives."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from comptrust.commands._common import common_parser
from comptrust.errors import ComptrustError

if TYPE_CHECKING:
    from comptrust.sweep.plan import Plan


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep", parents=[common_parser()],
        help="run a grid (models x compressions x seeds x perspectives) from a YAML file, resumably",
        description="Expand SWEEP.yaml (see examples/sweeps/ and docs/scale.md), add the dense baseline, compress "
                    "each artifact once and evaluate every perspective.  Rerunning redoes only failed or "
                    "missing jobs.")
    p.add_argument("sweep", metavar="SWEEP.yaml")
    p.add_argument("--dry-run", action="store_true",
                   help="print the jobs, prompt counts and token/time estimates; run nothing")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: one job after another in this process (default); ray: tasks on a Ray cluster")
    p.add_argument("--address", help="Ray cluster address (default: the file's ray.address, else a local Ray)")
    p.add_argument("--out", help="sweep folder (default: the file's 'out', else comptrust-sweeps/<name>)")
    p.add_argument("--data-dir", help="override eval.data_dir (a folder laid out like DecodingTrust's data/)")
    p.add_argument("--json", action="store_true", help="with --dry-run: print the plan and estimate as JSON")
    p.add_argument("--compress-only", action="store_true",
                   help="compress (or reuse) every artifact and stop; e.g. before evaluating in the vllm environment")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from comptrust.sweep import build_plan, load_sweep

    config = load_sweep(args.sweep)
    if args.data_dir:
        config.eval.data_dir = args.data_dir
        config.eval.smoke = False
    plan = build_plan(config, source=args.sweep, out=args.out)
    if args.dry_run:
        from comptrust.sweep.estimate import estimate, format_estimate

        est = estimate(plan)
        if args.json:
            import json

            print(json.dumps({"plan": plan.to_json(), "estimate": est}, indent=2, default=str))
        else:
            print(format_estimate(plan, est))
        return 0
    if args.compress_only:
        return compress_only(plan, quiet=args.quiet)
    from comptrust.sweep.executors import run_plan

    log = None if args.quiet else (lambda msg: print(f"comptrust: {msg}", file=sys.stderr))
    result = run_plan(plan, executor=args.executor, address=args.address, log=log)
    print(f"sweep {plan.sweep_dir}: {result['done']} done, {result['failed']} failed, {result['missing']} missing "
          f"(ran {result['ran']} this time)")
    for failure in result["failures"]:
        print(f"  failed {failure['job']}: {failure.get('error')}")
    if result["failed"] or result["missing"]:
        print("rerun the same command to retry only the failed and missing jobs", file=sys.stderr)
        return 1
    return 0


def compress_only(plan: Plan, quiet: bool = False) -> int:
    """Materialize every compressed artifact of the plan; a failing one is reported and the rest go on."""
    from comptrust.sweep.jobs import materialize

    failed = 0
    for artifact in plan.artifacts:
        if artifact.dense:
            continue
        log = None if quiet else (lambda msg, a=artifact.id: print(f"comptrust: {a}: {msg}", file=sys.stderr))
        try:
            print(f"{artifact.id}: {materialize(artifact, log=log)}")
        except ComptrustError as exc:
            failed += 1
            print(f"{artifact.id}: FAILED ({exc.one_line()})")
    if failed:
        print(f"{failed} artifact(s) failed; fix them and rerun (finished artifacts are reused)", file=sys.stderr)
    return 1 if failed else 0
