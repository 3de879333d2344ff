"""Files and folders written whole: a reader never sees half of one, a killed writer leaves nothing trusted.

A folder that a later command trusts as complete (a compressed artifact, a perspective's results, a
report) is built in a hidden sibling and moved into place only when complete; single files go through a
temp file and a rename.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from comptrust.errors import ConfigError
from comptrust.store.paths import comptrust_home

# ---- folders written whole ------------------------------------------------------------------
#
# A folder that a later command trusts as complete (a compressed artifact, a perspective's
# results, a report) is built in a hidden sibling and moved into place only when complete.
# Sibling names carry host and pid, so the leftovers of a killed process are recognised
# (and removed by the next writer) without touching a folder another live process is building.


def _staging_name(target: Path, kind: str) -> str:
    return f".{target.name}.{kind}-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_leftovers(target: Path) -> list[Path]:
    """Delete staging and set-aside siblings of ``target`` left by killed processes on this host."""
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(partial|old)-(.+)-(\d+)-[0-9a-f]{{6}}$")
    removed = []
    if not target.parent.is_dir():
        return removed
    for sibling in target.parent.iterdir():
        match = pattern.match(sibling.name)
        if match and match[2] == socket.gethostname() and not _pid_alive(int(match[3])):
            shutil.rmtree(sibling, ignore_errors=True) if sibling.is_dir() else sibling.unlink(missing_ok=True)
            removed.append(sibling)
    return removed


def publish_dir(staged: Path, target: Path) -> None:
    """Put the finished folder ``staged`` at ``target``, replacing what was there.

    The old folder is renamed aside first (one atomic rename), so a kill at any point
    leaves ``target`` either the old complete folder, absent, or the new complete one.
    """
    if staged.is_file() and not target.is_dir():
        os.replace(staged, target)  # one file: a single atomic rename
        return
    aside = None
    if target.exists() or target.is_symlink():
        aside = target.parent / _staging_name(target, "old")
        os.replace(target, aside)
    os.replace(staged, target)
    if aside is not None:
        shutil.rmtree(aside) if aside.is_dir() and not aside.is_symlink() else aside.unlink()


@contextmanager
def building(target: Path) -> Iterator[Path]:
    """A fresh hidden folder beside ``target``; published as ``target`` when the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(target)
    staged = target.parent / _staging_name(target, "partial")
    staged.mkdir()
    try:
        yield staged
        publish_dir(staged, target)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise


@contextmanager
def staged_entries(folder: Path) -> Iterator[Path]:
    """A hidden staging folder inside ``folder``; when the block succeeds, each entry written there
    replaces its namesake in ``folder`` (other files of ``folder`` are left alone).

    For outputs that share a user's folder (a report): a kill while writing leaves the
    previous files untouched, never some new and some old.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create folder {folder} ({exc.strerror})",
                          "choose a writable folder with --out") from exc
    anchor = folder / ".staging"
    remove_leftovers(anchor)
    staged = folder / _staging_name(anchor, "partial")
    staged.mkdir()
    try:
        yield staged
        for entry in sorted(staged.iterdir()):
            publish_dir(entry, folder / entry.name)
        staged.rmdir()
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise


@contextmanager
def exclusive(name: str) -> Iterator[None]:
    """Hold an advisory lock (``$COMPTRUST_HOME/locks/<name>.lock``) for the block; the OS drops it if killed."""
    import fcntl

    path = comptrust_home() / "locks" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file + rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def atomic_write_jsonl(path: Path, rows: Iterable[Any]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows))


def read_jsonl_file(path: Path) -> Iterator[Any]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)
