"""Typed field checks for benchmark records and ``comptrust score`` input.

Why: a record with a missing or mistyped field must stop the run with one line that
names the file (or ``--responses`` line) and the field, never be silently replaced by
a default, and never end in a traceback.  Perspectives call these helpers where they
read records; the helpers raise :class:`RecordError`, which knows the field but not
the place, and :func:`located` adds the place (``file:line``) where the caller knows it.

The helpers only check, they never convert: a well-formed record gives exactly the
values it held, so validation cannot change a score.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from comptrust.errors import DataError

_ABSENT = object()


class RecordError(DataError):
    """One record lacks a field or holds a value of the wrong type (the place is added later)."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        super().__init__(problem, fix)

    def at(self, where: str, fix: str | None = None) -> DataError:
        """The same problem prefixed with its place, as a plain :class:`DataError`."""
        return DataError(f"{where}: {self.problem}", fix or self.fix)


def describe(value: Any) -> str:
    """A short, safe description of a value for an error message (type and a clipped repr)."""
    if value is _ABSENT:
        return "nothing"
    if value is None:
        return "null"
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


def obj(record: Any) -> dict[str, Any]:
    """The record itself must be a JSON object."""
    if not isinstance(record, dict):
        raise RecordError(f"the record must be a JSON object, got {describe(record)}")
    return record


def get(record: Any, path: str, default: Any = _ABSENT) -> Any:
    """``record["a"]["b"]`` for ``path = "a.b"``; a :class:`RecordError` if a step is absent.

    With ``default`` given, an absent last key returns it (an absent parent is still an error).
    """
    value = record
    keys = path.split(".")
    for depth, key in enumerate(keys):
        if not isinstance(value, dict):
            parent = ".".join(keys[:depth]) or "the record"
            raise RecordError(f"{parent} must be a JSON object, got {describe(value)}")
        if key not in value:
            if default is not _ABSENT and depth == len(keys) - 1:
                return default
            raise RecordError(f"record lacks the field {path!r}")
        value = value[key]
    return value


def text(record: Any, path: str) -> str:
    """A string field."""
    return as_text(get(record, path), f"field {path!r}")


def as_text(value: Any, what: str) -> str:
    """``value`` must be a string; ``what`` names it in the error (e.g. "field 'input'")."""
    if not isinstance(value, str):
        raise RecordError(f"{what} must be a string, got {describe(value)}")
    return value


def integer(record: Any, path: str, allowed: tuple[int, ...] | None = None) -> int:
    """An integer field (``true``/``false`` are not integers), optionally one of ``allowed``."""
    value = get(record, path)
    if isinstance(value, bool) or not isinstance(value, int):
        raise RecordError(f"field {path!r} must be an integer, got {describe(value)}")
    if allowed is not None and value not in allowed:
        raise RecordError(f"field {path!r} must be one of {', '.join(map(str, allowed))}, got {value}")
    return value


def one_of(record: Any, path: str, allowed: tuple[Any, ...]) -> Any:
    """A field whose value must be one of ``allowed`` (compared with ``==``, types included)."""
    value = get(record, path)
    if isinstance(value, bool) or value not in allowed or type(value) not in {type(a) for a in allowed}:
        raise RecordError(f"field {path!r} must be one of {', '.join(map(repr, allowed))}, got {describe(value)}")
    return value


def text_list(record: Any, path: str, length: int | None = None) -> list[str]:
    """A list of strings, optionally of a given length."""
    value = get(record, path)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RecordError(f"field {path!r} must be a list of strings, got {describe(value)}")
    if length is not None and len(value) != length:
        raise RecordError(f"field {path!r} must hold {length} strings, got {len(value)}")
    return value


def pairs(record: Any, path: str, label_types: tuple[type, ...] = (str,)) -> list[list[Any]]:
    """A list of ``[text, label]`` pairs (few-shot demonstrations); labels of ``label_types``."""
    return as_pairs(get(record, path), f"field {path!r}", label_types)


def as_pairs(value: Any, what: str, label_types: tuple[type, ...] = (str,)) -> list[list[Any]]:
    """``value`` must be a list of ``[text, label]`` pairs; ``what`` names it in the error."""
    if not isinstance(value, list):
        raise RecordError(f"{what} must be a list of [text, label] pairs, got {describe(value)}")
    for i, pair in enumerate(value):
        ok = (isinstance(pair, list | tuple) and len(pair) == 2 and isinstance(pair[0], str)
              and isinstance(pair[1], label_types) and not isinstance(pair[1], bool))
        if not ok:
            raise RecordError(f"{what} item {i} must be a [text, label] pair, got {describe(pair)}")
    return value


def mapping(record: Any, path: str) -> dict[str, Any]:
    """A JSON object field."""
    value = get(record, path)
    if not isinstance(value, dict):
        raise RecordError(f"field {path!r} must be a JSON object, got {describe(value)}")
    return value


@contextmanager
def located(where: str, fix: str | None = None) -> Iterator[None]:
    """Give a :class:`RecordError` raised inside its place (``file:line``) and, optionally, a fix."""
    try:
        yield
    except RecordError as exc:
        raise exc.at(where, fix) from None
