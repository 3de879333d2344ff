"""The run record: ``spec.json`` and ``summary.json`` of a run folder, as typed dataclasses.

The runner writes a :class:`RunSpec` (what determines the run's numbers) and a :class:`RunSummary`
(the spec's identity plus each perspective's result); the report, the sweep and the noise floor read
them back through :meth:`RunSummary.from_dict`, so none of them needs the runner or guesses keys.
``to_dict()`` gives exactly the JSON keys, in the order, the files have always had; a key this
module does not know (a newer version's) is kept in ``extra`` and written back after the others.

Each perspective's entry (:class:`PerspectiveEntry`) records the options that perspective ran under
(its own ``--scenarios`` entries, :func:`comptrust.perspectives.base.options_for`), so re-aggregating
it needs no re-derivation.  Entries written before that field existed have no ``options``: readers
derive them from the run's options with the same function (docs/architecture.md, "The run record").

Nothing here imports the runner or the report.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comptrust.errors import ConfigError, DataError
from comptrust.types import PerspectiveResult

SPEC_NAME = "spec.json"
SUMMARY_NAME = "summary.json"


class RecordError(DataError):
    """A run folder's ``spec.json`` or ``summary.json`` is damaged or is no comptrust record."""


# JSON type of each field, for the one-line error on a damaged record (bool is no int here).
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,), "dict": (dict,), "list": (list,), "int": (int,), "bool": (bool,),
}
_JSON_NAMES = {"str": "string", "dict": "object", "list": "array", "int": "integer", "bool": "boolean",
               "float": "number", "NoneType": "null"}
_ARTICLES = {"str": "a string", "dict": "an object", "list": "an array", "int": "an integer", "bool": "a boolean"}


def _json_name(value: Any) -> str:
    return _JSON_NAMES.get(type(value).__name__, type(value).__name__)


def _check(data: dict[str, Any], fields: dict[str, str], source: Path | str) -> None:
    """Each present, non-null field of ``data`` has its JSON type; else one line naming file and field."""
    for key, kind in fields.items():
        value = data.get(key)
        if value is None:
            continue
        wrong = not isinstance(value, _JSON_TYPES[kind]) or (kind == "int" and isinstance(value, bool))
        if wrong:
            raise RecordError(f"{source} is damaged: {key!r} is a JSON {_json_name(value)}, not {_ARTICLES[kind]}",
                              "re-run 'comptrust eval' for that run (or restore the file from a copy)")


def _as_object(data: Any, source: Path | str, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise RecordError(f"{source} is not a comptrust {what} (not a JSON object)",
                          "point at a folder written by 'comptrust eval', or re-run that evaluation")
    return data


@dataclass
class PerspectiveEntry:
    """One perspective's entry in ``summary.json`` (and its ``<perspective>/result.json``).

    ``options`` is the ``EvalOptions`` (as a dict) this perspective ran under; ``generation`` what
    generating cost (rows, cached, seconds, tokens); ``timing`` its seconds by phase; ``divergence``
    the cost of the teacher-forced divergence pass, where one ran.
    """

    result: PerspectiveResult
    scorer: Any
    options: dict[str, Any]
    generation: dict[str, Any]
    timing: dict[str, float] = field(default_factory=dict)
    divergence: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = self.result.to_json()
        out["scorer"] = self.scorer
        out["options"] = self.options
        out["generation"] = self.generation
        out["timing"] = self.timing
        if self.divergence:
            out["divergence"] = self.divergence
        return out


def recorded_options(entry: Any) -> dict[str, Any] | None:
    """The options a perspective's entry says it ran under; None for an entry written before they were recorded."""
    options = entry.get("options") if isinstance(entry, dict) else None
    return options if isinstance(options, dict) else None


_SPEC_FIELDS = {"comptrust_version": "str", "model": "dict", "perspectives": "list", "data": "dict",
                "options": "dict", "deviations": "dict", "profile": "str", "seed": "int", "versions": "dict",
                "threads": "dict", "allocator": "dict", "perturbation": "dict", "run_id": "str"}


@dataclass
class RunSpec:
    """``spec.json``: everything that determines a run's numbers, plus the environment it ran in.

    ``model`` is the backend's ``info()`` (with the compression manifest or third-party checkpoint
    record under ``compression``); ``options`` the run's ``EvalOptions`` as a dict; ``perturbation``
    set for a noise-floor replicate (:class:`comptrust.noise.Perturbation`).
    """

    comptrust_version: str
    model: dict[str, Any]
    perspectives: list[str]
    data: dict[str, Any]
    options: dict[str, Any]
    deviations: dict[str, Any]
    profile: str
    seed: int
    versions: dict[str, str]
    threads: dict[str, Any]
    allocator: dict[str, Any]
    perturbation: dict[str, Any] | None = None
    run_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in _SPEC_FIELDS}
        return {k: v for k, v in out.items() if v is not None} | self.extra

    @classmethod
    def from_dict(cls, data: Any, source: Path | str = SPEC_NAME) -> RunSpec:
        """What the runner wrote; a :class:`RecordError` naming ``source`` for a damaged or foreign one."""
        data = _as_object(data, source, "run spec")
        _check(data, _SPEC_FIELDS, source)
        missing = [k for k in ("model", "perspectives", "data", "options") if data.get(k) is None]
        if missing:
            raise RecordError(f"{source} is not a comptrust run spec (no {', '.join(map(repr, missing))})",
                              "re-run 'comptrust eval' for that run")
        known = {k: data.get(k) for k in _SPEC_FIELDS}
        return cls(**known, extra={k: v for k, v in data.items() if k not in _SPEC_FIELDS})  # type: ignore[arg-type]


_SUMMARY_FIELDS = {"run_id": "str", "model": "dict", "data": "dict", "options": "dict", "deviations": "dict",
                   "profile": "str", "seed": "int", "versions": "dict", "threads": "dict", "allocator": "dict",
                   "comptrust_version": "str", "perturbation": "dict", "run_dir": "str", "superseded": "str",
                   "perspectives": "dict", "finished": "bool", "timing": "dict", "noise_floor": "dict",
                   "sweep": "dict"}
# The spec's fields a summary repeats, in the order summary.json has them.
_FROM_SPEC = ("run_id", "model", "data", "options", "deviations", "profile", "seed", "versions", "threads",
              "allocator", "comptrust_version", "perturbation")


@dataclass
class RunSummary:
    """``summary.json``: the spec's identity, where the run went, and every finished perspective.

    ``perspectives`` maps a perspective to its entry as written (:meth:`PerspectiveEntry.to_dict`);
    ``finished`` is false until the last perspective is written; ``noise_floor`` links the replicate
    ``eval --noise-floor`` ran beside this run; ``sweep`` is set by ``comptrust sweep``.  Every field
    may be absent (None) in a record another version wrote; readers show it as missing.
    """

    run_id: str | None = None
    model: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    options: dict[str, Any] | None = None
    deviations: dict[str, Any] | None = None
    profile: str | None = None
    seed: int | None = None
    versions: dict[str, str] | None = None
    threads: dict[str, Any] | None = None
    allocator: dict[str, Any] | None = None
    comptrust_version: str | None = None
    perturbation: dict[str, Any] | None = None
    run_dir: str | None = None
    superseded: str | None = None
    perspectives: dict[str, dict[str, Any]] = field(default_factory=dict)
    finished: bool | None = None
    timing: dict[str, float] | None = None
    noise_floor: dict[str, Any] | None = None
    sweep: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_spec(cls, spec: RunSpec, run_dir: Path, superseded: Path | None = None) -> RunSummary:
        """The summary a run starts with, before any perspective is written."""
        return cls(**{k: getattr(spec, k) for k in _FROM_SPEC}, run_dir=str(run_dir),
                   superseded=None if superseded is None else str(superseded))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in _SUMMARY_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out | self.extra

    @classmethod
    def from_dict(cls, data: Any, source: Path | str = SUMMARY_NAME) -> RunSummary:
        """A summary as the runner (or a sweep) wrote it; every field optional, but a present field of the
        wrong type (or an entry that is no object) is a :class:`RecordError` naming ``source``."""
        data = _as_object(data, source, "run summary")
        _check(data, _SUMMARY_FIELDS, source)
        for name, entry in (data.get("perspectives") or {}).items():
            if not isinstance(entry, dict):
                raise RecordError(f"{source} is damaged: the entry of perspective {name!r} is a JSON "
                                  f"{_json_name(entry)}, not an object",
                                  "re-run 'comptrust eval' for that perspective")
        known = {k: data.get(k) for k in _SUMMARY_FIELDS}
        known["perspectives"] = dict(known["perspectives"] or {})
        return cls(**known, extra={k: v for k, v in data.items() if k not in _SUMMARY_FIELDS})

    def copy(self) -> RunSummary:
        """A shallow copy (fields replaced on it do not change this one)."""
        return dataclasses.replace(self, perspectives=dict(self.perspectives), extra=dict(self.extra))


def read_summary(run_dir: Path) -> RunSummary:
    """``<run_dir>/summary.json`` as a :class:`RunSummary`; one line for a missing, unreadable or damaged one."""
    path = Path(run_dir) / SUMMARY_NAME
    if not path.is_file():
        raise ConfigError(f"{Path(run_dir)} has no {SUMMARY_NAME}",
                          "point at a folder written by 'comptrust eval' (or finish that run)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RecordError(f"{path} is not valid JSON ({exc})", "re-run or repair that run") from exc
    summary = RunSummary.from_dict(data, path)
    if summary.model is None:
        raise RecordError(f"{path} is not a comptrust run summary (it has no 'model')",
                          "point at a folder written by 'comptrust eval', or re-run that evaluation")
    return summary


def read_spec(run_dir: Path) -> RunSpec:
    """``<run_dir>/spec.json`` as a :class:`RunSpec`; one line for an unreadable or damaged one."""
    path = Path(run_dir) / SPEC_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RecordError(f"{path} cannot be read ({exc})", "re-run 'comptrust eval' for that run") from exc
    return RunSpec.from_dict(data, path)
