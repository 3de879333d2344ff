"""One exception type for every problem a user can fix.

The CLI prints ``ComptrustError`` as a single line (problem, then fix) and exits
non-zero; anything else is a bug and keeps its traceback under ``--debug``.
"""

from __future__ import annotations


class ComptrustError(Exception):
    """A problem the user can fix: ``problem`` says what is wrong, ``fix`` what to do."""

    exit_code = 2

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem.rstrip(".")
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        return f"{self.problem}. {self.fix}" if self.fix else f"{self.problem}."


class DataError(ComptrustError):
    """A data file is missing, unreadable or malformed."""


class ModelError(ComptrustError):
    """A model cannot be found, trusted or loaded."""


class ConfigError(ComptrustError):
    """A command-line option or config file is invalid."""


class BackendError(ComptrustError):
    """A generation backend failed (server unreachable, out of memory, ...)."""
