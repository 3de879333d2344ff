"""The ``comptrust`` command: parsing and printing only; the work lives elsewhere.

Each subcommand is a module in :mod:`comptrust.commands` with ``add_parser`` and
``run``.  Errors a user can fix print as one line and exit 2; ``--debug`` shows
the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from comptrust import __version__
from comptrust.errors import ComptrustError
from comptrust.progress import route_library_bars
from comptrust.runtime.allocator import keep_freed_memory
from comptrust.runtime.threads import apply_threads, start_busy_sample

COMMANDS = [
    "comptrust.commands.eval",
    "comptrust.commands.score",
    "comptrust.commands.demo",
    "comptrust.commands.cache",
    "comptrust.commands.compress",
    "comptrust.commands.inspect",
    "comptrust.commands.report",
    "comptrust.commands.sweep",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="comptrust",
        description="What did compression do to my LLM's trustworthiness? "
        "Compress, evaluate on DecodingTrust + MMLU, compare against the dense model.",
    )
    parser.add_argument("--version", action="version", version=f"comptrust {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module_name in COMMANDS:
        importlib.import_module(module_name).add_parser(sub)
    return parser


def quiet_libraries() -> None:
    """Keep library chatter (load bars, tokenizer notices) out of comptrust's own output."""
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    route_library_bars()  # third-party tqdm bars: rows of comptrust's display, or silent


def main(argv: Sequence[str] | None = None) -> int:
    start_busy_sample()  # the imports below fill the window in which other jobs' CPU use is measured
    quiet_libraries()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if hasattr(args, "threads"):  # commands that compute with torch declare --threads
            apply_threads(args.threads)
            keep_freed_memory()
        return int(args.func(args) or 0)
    except ComptrustError as exc:
        if args.debug:
            raise
        print(f"comptrust: error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("comptrust: interrupted; finished generations are cached, rerun the same command to resume.",
              file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: keep it to one line unless asked
        if args.debug:
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(f"comptrust: internal error: {type(exc).__name__}: {first} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
