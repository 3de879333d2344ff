"""Run folders: the human-readable record of one evaluation (spec, summary, per-perspective files)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from comptrust.errors import ConfigError
from comptrust.store.files import atomic_write_json, atomic_write_jsonl, building, read_jsonl_file

PERSPECTIVE_FILES = ("generations.jsonl", "scores.jsonl", "result.json")


class RunDir:
    """One run's folder: ``spec.json``, ``summary.json`` and per perspective
    ``<p>/generations.jsonl``, ``<p>/scores.jsonl`` and ``<p>/result.json``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def prepare(self) -> RunDir:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(f"cannot write to output folder {self.root} ({exc.strerror})",
                              "choose a writable folder with --out") from exc
        return self

    @property
    def spec_path(self) -> Path:
        return self.root / "spec.json"

    @property
    def summary_path(self) -> Path:
        return self.root / "summary.json"

    def perspective_dir(self, name: str) -> Path:
        return self.root / name

    def write_spec(self, spec: dict[str, Any]) -> None:
        atomic_write_json(self.spec_path, spec)

    def write_perspective(self, name: str, generations: list[dict[str, Any]],
                          scores: list[dict[str, Any]], result: dict[str, Any]) -> None:
        """The three files appear together (built aside, then moved in): a ``result.json`` always
        belongs to the ``scores.jsonl`` beside it, even when a rewrite is killed half way."""
        with building(self.perspective_dir(name)) as d:
            atomic_write_jsonl(d / "generations.jsonl", generations)
            atomic_write_jsonl(d / "scores.jsonl", scores)
            atomic_write_json(d / "result.json", result)

    def read_spec_if_any(self) -> dict[str, Any] | None:
        """The spec of the run this folder holds; None when it holds none (or an unreadable one)."""
        try:
            spec = json.loads(self.spec_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        return spec if isinstance(spec, dict) else None

    def set_aside(self, name: str) -> Path | None:
        """Move this folder's run files (spec, summary, perspective folders) into ``<root>/<name>``.

        Only what comptrust wrote is moved; anything else a user keeps here stays.
        """
        ours = [p for p in sorted(self.root.iterdir()) if p.is_dir() and not p.name.startswith((".", "superseded-"))
                and any((p / f).is_file() for f in PERSPECTIVE_FILES)]
        # spec.json last: if this is killed half way, the folder still names the old run and the next
        # run sets the rest aside too
        ours += [p for p in (self.summary_path, self.spec_path) if p.is_file()]
        if not ours:
            return None
        dest = self.root / name
        dest.mkdir(parents=True, exist_ok=True)
        for path in ours:
            os.replace(path, dest / path.name)
        return dest

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_json(self.summary_path, summary)

    def read_spec(self) -> dict[str, Any]:
        return json.loads(self.spec_path.read_text(encoding="utf-8"))

    def read_summary(self) -> dict[str, Any]:
        if not self.summary_path.is_file():
            raise ConfigError(f"{self.root} has no summary.json",
                              "point at a folder written by 'comptrust eval' (or finish that run)")
        return json.loads(self.summary_path.read_text(encoding="utf-8"))

    def read_result(self, name: str) -> dict[str, Any] | None:
        p = self.perspective_dir(name) / "result.json"
        return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None

    def read_scores(self, name: str) -> list[dict[str, Any]]:
        p = self.perspective_dir(name) / "scores.jsonl"
        return list(read_jsonl_file(p)) if p.is_file() else []
