"""One exception type for every problem a user can fix.

The CLI prints ``ComptrustError`` as a single line (problem, then fix) and exits
non-zero; anything else is a bug and keeps its traceback under ``--debug``.
"""

from __future__ import annotations

from typing import Any


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


# ---- HTTP error answers (the OpenAI-compatible backend and the Perspective API scorer) ----


def retry_after_seconds(resp: Any) -> float | None:
    """The server's ``Retry-After`` in seconds (never negative), or None when absent or unparseable."""
    value = resp.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def error_message(resp: Any) -> str:
    """First line of the error message in a JSON error body (``{"error": {"message": ...}}``), else the text."""
    try:
        data = resp.json()
        err = data.get("error", data) if isinstance(data, dict) else data
        msg = err.get("message", err) if isinstance(err, dict) else err
        text = str(msg)
    except ValueError:
        text = resp.text
    return (text.strip().splitlines() or [resp.reason_phrase])[0][:200]
