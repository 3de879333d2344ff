"""Check a generation cache and salvage the readable rows of a damaged one.

Why: the cache holds every completion a user paid GPU time for.  When its file
is damaged (a disk fault, a copy cut short, a foreign file put in its place),
the user needs to know what is still readable and to get it back, and comptrust
must never delete or rewrite the original: ``recover`` copies every readable
row into a fresh database and keeps the damaged file beside it.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comptrust.errors import DataError
from comptrust.store.cache import CACHE_COLUMNS, Cache, foreign_reason, truncation_problem

SQLITE_HEADER = b"SQLite format 3\x00"
SCAN_CHUNK = 256  # rowids per range query while salvaging
BLIND_SCAN_LIMIT = 100_000  # when max(rowid) is unreadable: stop after this many rowids without a row
BARREN_CHUNKS = 4  # blind walk: failed ranges in a row that yielded nothing before row-by-row retries stop
PROBLEMS_SHOWN = 20


@dataclass
class TableCheck:
    """What one table yields: rows read back, and rowids that could not be read (each at most one lost row)."""

    readable: int = 0
    unreadable_rowids: int = 0


@dataclass
class CacheCheck:
    """The verdict on one cache file."""

    path: Path
    exists: bool
    size: int = 0
    verdict: str = "ok"  # ok | missing | not-sqlite | foreign | damaged
    detail: str = ""
    problems: list[str] = field(default_factory=list)
    tables: dict[str, TableCheck] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return self.verdict in ("ok", "missing")

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "exists": self.exists, "bytes": self.size, "verdict": self.verdict,
                "detail": self.detail, "problems": self.problems,
                "tables": {t: {"readable_rows": c.readable, "unreadable_rowids": c.unreadable_rowids}
                           for t, c in self.tables.items()}}


def _read_only(path: Path) -> sqlite3.Connection:
    """A connection that cannot change the file (no checkpoint on close, no schema set-up)."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)


@contextmanager
def readable_database(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to ``path``, or, when the file is truncated, to a patched temporary copy.

    SQLite refuses a file shorter than its header's page count; the copy cuts the file to whole
    pages and marks that count stale, so SQLite sizes the database from the file and the pages
    that survived can be read.  The original is never written.
    """
    if truncation_problem(path) is None:
        db = _read_only(path)
        try:
            yield db
        finally:
            db.close()
        return
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.readable-") as tmp:
        copy = Path(tmp) / path.name
        shutil.copyfile(path, copy)
        if Path(f"{path}-wal").is_file():
            shutil.copyfile(f"{path}-wal", f"{copy}-wal")
        _cut_to_whole_pages_and_mark_stale(copy)
        db = sqlite3.connect(copy, timeout=60)
        try:
            yield db
        finally:
            db.close()


def _cut_to_whole_pages_and_mark_stale(path: Path) -> None:
    """Drop a partial last page; make version-valid-for differ from the change counter (SQLite then sizes by file)."""
    with path.open("r+b") as fh:
        header = fh.read(100)
        page_size = int.from_bytes(header[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
        fh.truncate(path.stat().st_size // page_size * page_size)
        counter = int.from_bytes(header[24:28], "big")
        fh.seek(92)
        fh.write(((counter + 1) % 2**32).to_bytes(4, "big"))


def check_cache(path: Path) -> CacheCheck:
    """Run SQLite's integrity check on ``path`` and count what each comptrust table still yields."""
    if not path.exists():
        return CacheCheck(path, exists=False, verdict="missing", detail="no cache yet (nothing was generated)")
    result = CacheCheck(path, exists=True, size=path.stat().st_size)
    with path.open("rb") as fh:
        head = fh.read(len(SQLITE_HEADER))
    if result.size and head != SQLITE_HEADER:
        result.verdict, result.detail = "not-sqlite", "its first bytes are not an SQLite header: no row is readable"
        return result
    truncated = truncation_problem(path)
    with readable_database(path) as db:
        try:
            reason = foreign_reason(db)
        except sqlite3.DatabaseError as exc:
            result.verdict, result.detail = "damaged", f"its schema cannot be read ({exc})"
            return result
        if reason:
            result.verdict, result.detail = "foreign", reason
            return result
        try:
            rows = db.execute(f"PRAGMA integrity_check({PROBLEMS_SHOWN})").fetchall()
            result.problems = [r[0] for r in rows if r[0] != "ok"]
        except sqlite3.DatabaseError as exc:
            result.problems = [str(exc)]
        if truncated:
            result.problems.insert(0, truncated)
        if result.problems:
            result.verdict, result.detail = "damaged", "SQLite's integrity check failed"
        for table in CACHE_COLUMNS:
            result.tables[table] = TableCheck()
            if table in _tables(db):
                for _row in readable_rows(db, table, result.tables[table]):
                    pass
    return result


def _tables(db: sqlite3.Connection) -> set[str]:
    try:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError:
        return set(CACHE_COLUMNS)  # the schema page is damaged: try the tables anyway


def readable_rows(db: sqlite3.Connection, table: str, tally: TableCheck) -> Iterator[tuple]:
    """Every row of ``table`` that can still be read, walking rowid ranges and skipping damaged pages.

    A range that fails is retried row by row, so one bad page costs only its own rows.  When even
    ``max(rowid)`` is unreadable the walk is blind: past the last row seen, a run of ranges that
    yield nothing row by row is only probed range by range, until ``BLIND_SCAN_LIMIT`` rowids
    pass without a row.
    """
    select = f"SELECT rowid, {', '.join(CACHE_COLUMNS[table])} FROM {table} WHERE"
    try:
        top = db.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0] or 0
    except sqlite3.DatabaseError:
        top = None  # the right edge of the tree is damaged
    start, last_seen, barren = 0, 0, 0
    while start < top if top is not None else start - last_seen < BLIND_SCAN_LIMIT:
        stop = start + SCAN_CHUNK
        try:
            rows = db.execute(f"{select} rowid > ? AND rowid <= ?", (start, stop)).fetchall()
            barren = 0
        except sqlite3.DatabaseError:
            if top is None and barren >= BARREN_CHUNKS:
                rows = []
            else:
                rows, failed = _one_by_one(db, select, range(start + 1, stop + 1))
                barren = 0 if rows else barren + 1
                # Past the last row seen, a blind walk cannot tell lost rows from rowids never used.
                horizon = top if top is not None else max([last_seen, *(r[0] for r in rows)])
                tally.unreadable_rowids += sum(1 for r in failed if r <= horizon)
        for row in rows:
            if _well_formed(table, row[1:]):
                tally.readable += 1
                last_seen = max(last_seen, row[0])
                yield row[1:]
        start = stop


def _one_by_one(db: sqlite3.Connection, select: str, rowids: range) -> tuple[list[tuple], list[int]]:
    """(rows read, rowids that failed) of a range whose range query failed."""
    rows, failed = [], []
    for rowid in rowids:
        try:
            row = db.execute(f"{select} rowid = ?", (rowid,)).fetchone()
        except sqlite3.DatabaseError:
            failed.append(rowid)
            continue
        if row is not None:
            rows.append(row)
    return rows, failed


def _well_formed(table: str, row: tuple) -> bool:
    """A damaged cell can decode into the wrong type: such rows are not copied."""
    if table == "generations":
        key, model, perspective, sample_id, index, text, pt, ct, created = row
        return (all(isinstance(v, str) for v in (key, model, perspective, sample_id, text))
                and all(isinstance(v, int) for v in (index, pt, ct)) and isinstance(created, (int, float)))
    scorer, key, value, created = row
    return all(isinstance(v, str) for v in (scorer, key, value)) and isinstance(created, (int, float))


@dataclass
class Recovery:
    """What ``recover_cache`` did: rows copied per table and where the files went."""

    copied: dict[str, int]
    recovered: Path
    kept: Path | None


def recover_cache(path: Path, to: Path | None = None) -> Recovery:
    """Copy every readable row of ``path`` into a fresh cache.

    With ``to``: write the copy there and leave the cache alone.  Without: the
    damaged file (with its -wal/-shm companions) is renamed to
    ``<name>.damaged-<time>`` and the copy takes its place.
    """
    check = check_cache(path)
    if check.verdict in ("missing", "not-sqlite", "foreign"):
        raise DataError(f"cannot recover {path}: {check.detail}",
                        "move it aside; comptrust starts an empty cache where none exists")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = Path(to) if to else path.with_name(f"{path.name}.recovered-{stamp}")
    if target.exists():
        raise DataError(f"{target} already exists", "pass another --to path")
    fresh = Cache(target)
    copied: dict[str, int] = {}
    try:
        with readable_database(path) as source:
            for table, columns in CACHE_COLUMNS.items():
                marks = ",".join("?" * len(columns))
                tally = TableCheck()
                with fresh._db:
                    fresh._db.execute("BEGIN")
                    for row in readable_rows(source, table, tally):
                        fresh._db.execute(f"INSERT OR IGNORE INTO {table} VALUES ({marks})", row)
                copied[table] = tally.readable
    finally:
        fresh.close()
    if to:
        return Recovery(copied, target, None)
    kept = path.with_name(f"{path.name}.damaged-{stamp}")
    for suffix in ("", "-wal", "-shm"):  # the write-ahead log belongs to its database file: they move together
        companion = Path(f"{path}{suffix}")
        if companion.exists():
            os.replace(companion, Path(f"{kept}{suffix}"))
    os.replace(target, path)
    return Recovery(copied, path, kept)
