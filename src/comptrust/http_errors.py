"""Reading HTTP error answers, shared by the OpenAI-compatible backend and the Perspective API scorer."""

from __future__ import annotations

from typing import Any


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
