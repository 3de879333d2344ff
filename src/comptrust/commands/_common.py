"""Options and printing shared by subcommands."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from comptrust.errors import ConfigError
from comptrust.noise import Perturbation
from comptrust.perspectives.base import DEFAULT_PROFILE, PROFILES


def common_parser() -> argparse.ArgumentParser:
    """``--debug`` and ``--quiet``, accepted after any subcommand too."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks instead of one-line errors")
    parent.add_argument("--quiet", action="store_true", help="no progress bars or tables (for scripts)")
    return parent


def add_threads(parser: argparse.ArgumentParser) -> None:
    """``--threads``: the CLI applies it (comptrust.runtime.threads) before the command runs."""
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: $OMP_NUM_THREADS, else the physical cores "
                             "this process may use less those other jobs keep busy); recorded in the run")


def add_profile(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", choices=PROFILES, default=DEFAULT_PROFILE,
                        help="scoring profile: comp-trust (the paper's patched scoring, default) or decodingtrust")


def parse_key_values(items: list[str] | None) -> dict[str, Any]:
    """``--option key=value`` pairs; values are JSON when they parse as JSON, else strings."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--option {item!r} is not KEY=VALUE", "write e.g. --option privacy_repetitions=10")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def fmt(value: Any, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def print_summary(summary: dict[str, Any], quiet: bool) -> None:
    """A table of scores for people; the run directory for scripts."""
    if quiet:
        print(summary["run_dir"])
        return
    from rich.console import Console
    from rich.table import Table

    data = summary.get("data", {})
    title = f"comptrust — {summary['model'].get('name', summary['model'].get('fingerprint'))}"
    caption = f"profile {summary['profile']} · seed {summary['seed']} · data {data.get('kind')}"
    if data.get("kind") == "smoke":
        caption += " (SMOKE SUITE: checks the pipeline, not the benchmark)"
    if summary.get("perturbation"):
        rerun = Perturbation.from_json(summary["perturbation"])
        caption += f" · noise-floor rerun ({rerun.describe() if rerun else 'perturbed'})"
    table = Table(title=title, caption=caption)
    for col in ("perspective", "score", "refusal %", "samples", "generated", "cached", "tok/s", "complete"):
        table.add_column(col, justify="left" if col == "perspective" else "right", no_wrap=True)
    notes = []
    for name, res in summary["perspectives"].items():
        gen = res.get("generation", {})
        if res.get("partial"):
            missing = res.get("missing", [])
            shown = "; ".join(missing[:3]) + (f"; and {len(missing) - 3} more" if len(missing) > 3 else "")
            notes.append(f"{name} is partial (missing: {shown}; all in summary.json)")
        table.add_row(name, fmt(res.get("score")), fmt(res.get("refusal_rate")), str(res.get("n_samples", "")),
                      str(gen.get("generated", "")), str(gen.get("cached", "")), fmt(gen.get("tokens_per_second")),
                      "partial" if res.get("partial") else "yes")
    console = Console(file=sys.stdout, width=max(100, Console().width))
    console.print(table)
    for note in notes:
        console.print(f"  note: {note}", highlight=False)
    console.print(f"run directory: {summary['run_dir']}", highlight=False)
