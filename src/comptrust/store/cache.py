"""The SQLite generation/score cache: what makes runs resumable.

One row per generated completion (WAL mode), each committed as soon as its batch finishes, so a run
killed at any moment restarts where it stopped; cache keys say what makes two completions the same.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from comptrust.errors import ComptrustError, ConfigError, DataError
from comptrust.store.paths import cache_db_path
from comptrust.types import stable_hash

_SCHEMA = """
CREATE TABLE IF NOT EXISTS generations (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    perspective TEXT NOT NULL,
    sample_id TEXT NOT NULL,
    sample_index INTEGER NOT NULL,
    text TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS generations_model ON generations(model, perspective);
CREATE TABLE IF NOT EXISTS scores (
    scorer TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (scorer, key)
);
"""


# PRAGMA application_id marks a comptrust cache ("CTRC"); user_version is its schema version.
CACHE_APPLICATION_ID = 0x43545243
CACHE_SCHEMA_VERSION = 1
CACHE_COLUMNS = {
    "generations": ("key", "model", "perspective", "sample_id", "sample_index", "text", "prompt_tokens",
                    "completion_tokens", "created"),
    "scores": ("scorer", "key", "value", "created"),
}
DAMAGED_CODES = ("SQLITE_NOTADB", "SQLITE_CORRUPT", "SQLITE_CORRUPT_INDEX", "SQLITE_CORRUPT_SEQUENCE",
                 "SQLITE_CORRUPT_VTAB", "SQLITE_IOERR_SHORT_READ")
BUSY_CODES = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_BUSY_RECOVERY", "SQLITE_BUSY_SNAPSHOT")


def cache_error(path: Path, exc: sqlite3.Error) -> ComptrustError:
    """The one-line error for an SQLite failure on the cache at ``path``: damaged, busy, or unwritable."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name in DAMAGED_CODES or name.startswith("SQLITE_CORRUPT") or "malformed" in str(exc):
        return damaged_cache_error(path, str(exc))
    if name in BUSY_CODES:
        return ComptrustError(f"the cache {path} stayed locked by another process for over a minute ({exc})",
                            "wait for the other comptrust command (e.g. 'cache clear') to finish, then rerun")
    return ConfigError(f"cannot use the cache at {path} ({exc})",
                       "check that the disk has space and the folder is writable, or set COMPTRUST_HOME elsewhere")


def damaged_cache_error(path: Path, detail: str) -> DataError:
    return DataError(f"the cache {path} is damaged or not a database ({detail})",
                     "run 'comptrust cache check' to see what is recoverable and 'comptrust cache recover' "
                     "to copy it into a fresh cache (the damaged file is kept); nothing is deleted")


def _translate_sqlite_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """Cache methods raise a one-line ComptrustError instead of a bare sqlite3 exception."""

    @functools.wraps(method)
    def wrapper(self: Cache, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise cache_error(self.path, exc) from exc

    return wrapper


def cache_tables(db: sqlite3.Connection) -> dict[str, tuple[str, ...]]:
    """``table -> column names`` of a database's own tables."""
    names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")]
    return {n: tuple(r[1] for r in db.execute('PRAGMA table_info("{}")'.format(n.replace('"', '""'))))
            for n in names}


def truncation_problem(path: Path) -> str | None:
    """A database file shorter than its own header says (a copy or download cut short), read from 100 bytes."""
    try:
        with path.open("rb") as fh:
            header = fh.read(100)
    except OSError:
        return None
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        return None  # empty (a new cache) or no database at all: SQLite itself says so
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages, counter, valid_for = (int.from_bytes(header[i:i + 4], "big") for i in (28, 24, 92))
    expected, actual = pages * page_size, path.stat().st_size
    if counter == valid_for and actual < expected:  # the page count in the header is current
        return f"the file is truncated: its header describes {expected:,} bytes but it has {actual:,}"
    return None


def foreign_reason(db: sqlite3.Connection) -> str | None:
    """Why an SQLite database is not a comptrust cache (None: it is one, or it is empty)."""
    app_id = db.execute("PRAGMA application_id").fetchone()[0]
    if app_id == CACHE_APPLICATION_ID:
        return None
    if app_id != 0:
        return f"it carries another program's application id {app_id:#x}"
    tables = cache_tables(db)
    if not tables:
        return None
    if all(tables.get(t) == cols for t, cols in CACHE_COLUMNS.items()):
        return None  # a cache written before comptrust marked its caches
    return f"it holds tables {', '.join(sorted(tables))} instead of comptrust's generations and scores"


def generation_key(model: str, perspective: str, version: int, sample_id: str, prompt_hash: str,
                   params: dict[str, Any], sample_index: int, seed: int) -> str:
    """The cache key of one completion (every input that changes its text)."""
    return stable_hash([model, perspective, version, sample_id, prompt_hash, params, sample_index, seed], 32)


def completion_key(model: str, perspective: str, version: int, sample: Any, index: int) -> str:
    """The cache key of draw ``index`` of ``sample`` (a :class:`comptrust.types.Sample`).

    A greedy draw's text does not depend on the run seed, so its key carries seed 0 whatever the
    seed: a run at another seed (a noise-floor replicate, a second seed) reuses it.
    """
    params = sample.params
    seed = params.seed if params.temperature > 0 else 0
    return generation_key(model, perspective, version, sample.id, sample.prompt_hash, params.cache_fields(), index,
                          seed)


def loglik_scorer(model: str) -> str:
    """The ``scores`` table's scorer column for one backend's log-likelihoods."""
    return f"loglik:{model}"


def loglik_key(prompt: str, choices: Sequence[str]) -> str:
    """The cache key of the choice log-probabilities of one prompt."""
    return stable_hash([prompt, list(choices)], 32)


class Cache:
    """SQLite cache of completions, of external scores (e.g. Perspective API) and of log-likelihoods."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path else cache_db_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open the cache at {self.path} ({exc})",
                              "set COMPTRUST_HOME to a writable folder") from exc
        try:
            self._open()
        except BaseException:
            self._db.close()
            raise

    @_translate_sqlite_errors
    def _open(self) -> None:
        """Check that the file is a comptrust cache (never write into another program's database), then set up."""
        cut = truncation_problem(self.path)
        if cut:
            raise damaged_cache_error(self.path, cut)
        reason = foreign_reason(self._db)  # the first read: a file that is no database fails here
        if reason:
            raise DataError(f"{self.path} is not a comptrust cache: {reason}",
                            "set COMPTRUST_HOME to another folder, or move that file elsewhere "
                            "(comptrust will not write into it)")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > CACHE_SCHEMA_VERSION:
            raise ConfigError(f"the cache {self.path} was written by a newer comptrust (schema {version})",
                              "upgrade comptrust, or set COMPTRUST_HOME to another folder")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        if self._db.execute("PRAGMA application_id").fetchone()[0] != CACHE_APPLICATION_ID:
            self._db.execute(f"PRAGMA application_id={CACHE_APPLICATION_ID}")
            self._db.execute(f"PRAGMA user_version={CACHE_SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    # ---- generations ------------------------------------------------------------------

    def _rows_with_keys(self, select: str, keys: Iterable[str], *params: Any) -> Iterator[tuple]:
        """Rows of ``select ... AND key IN (...)`` for many keys, in chunks SQLite accepts."""
        keys = list(keys)
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            yield from self._db.execute(f"{select} key IN ({','.join('?' * len(chunk))})", [*params, *chunk])

    @_translate_sqlite_errors
    def get_many(self, keys: Iterable[str]) -> dict[str, tuple[str, int, int]]:
        """``key -> (text, prompt_tokens, completion_tokens)`` for the keys present."""
        rows = self._rows_with_keys("SELECT key, text, prompt_tokens, completion_tokens FROM generations WHERE", keys)
        return {key: (text, pt, ct) for key, text, pt, ct in rows}

    @_translate_sqlite_errors
    def put(self, key: str, model: str, perspective: str, sample_id: str, sample_index: int,
            text: str, prompt_tokens: int, completion_tokens: int) -> str:
        """Store one completion and commit at once (this is the resume point); returns the stored text.

        The first writer wins: when another process sharing this cache generated the same key
        meanwhile, its text is kept and returned, so both runs report one and the same completion.
        """
        inserted = self._db.execute(
            "INSERT INTO generations VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(key) DO NOTHING",
            (key, model, perspective, sample_id, sample_index, text, prompt_tokens, completion_tokens,
             time.time()),
        ).rowcount
        if inserted:
            return text
        return self._db.execute("SELECT text FROM generations WHERE key=?", (key,)).fetchone()[0]

    # ---- external scores --------------------------------------------------------------

    @_translate_sqlite_errors
    def get_score(self, scorer: str, key: str) -> Any | None:
        row = self._db.execute("SELECT value FROM scores WHERE scorer=? AND key=?", (scorer, key)).fetchone()
        return json.loads(row[0]) if row else None

    @_translate_sqlite_errors
    def put_score(self, scorer: str, key: str, value: Any) -> None:
        self._db.execute("INSERT OR REPLACE INTO scores VALUES (?,?,?,?)",
                         (scorer, key, json.dumps(value), time.time()))

    # ---- log-likelihoods (benign MMLU) --------------------------------------------------

    @_translate_sqlite_errors
    def get_logliks(self, model: str, keys: Iterable[str]) -> dict[str, list[float]]:
        """``key -> choice log-probabilities`` cached for ``model`` (a backend fingerprint)."""
        rows = self._rows_with_keys("SELECT key, value FROM scores WHERE scorer=? AND", keys, loglik_scorer(model))
        return {key: json.loads(value) for key, value in rows}

    @_translate_sqlite_errors
    def put_logliks(self, model: str, values: dict[str, list[float]]) -> None:
        """Store many results in one transaction (a chunk of questions is the resume unit)."""
        now, scorer = time.time(), loglik_scorer(model)
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO scores VALUES (?,?,?,?)",
                                 [(scorer, k, json.dumps(v), now) for k, v in values.items()])

    # ---- maintenance ------------------------------------------------------------------

    @_translate_sqlite_errors
    def stats(self) -> dict[str, Any]:
        rows = self._db.execute(
            "SELECT model, perspective, COUNT(*), SUM(completion_tokens) FROM generations "
            "GROUP BY model, perspective ORDER BY model, perspective"
        ).fetchall()
        n_logliks = self._db.execute("SELECT COUNT(*) FROM scores WHERE scorer LIKE 'loglik:%'").fetchone()[0]
        n_scores = self._db.execute("SELECT COUNT(*) FROM scores").fetchone()[0] - n_logliks
        size = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())
        return {
            "path": str(self.path), "bytes": size, "scores": n_scores, "logliks": n_logliks,
            "generations": sum(r[2] for r in rows),
            "by_model": [{"model": m, "perspective": p, "generations": n, "completion_tokens": t or 0}
                         for m, p, n, t in rows],
        }

    @_translate_sqlite_errors
    def clear(self, model: str | None = None, perspective: str | None = None) -> int:
        """Delete cached generations (all, or one model's / perspective's); returns the count."""
        where, args = [], []
        if model:
            where.append("model = ?")
            args.append(model)
        if perspective:
            where.append("perspective = ?")
            args.append(perspective)
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        n = self._db.execute(f"DELETE FROM generations{clause}", args).rowcount
        if model and perspective in (None, "mmlu"):  # a model's MMLU log-likelihoods go with it
            self._db.execute("DELETE FROM scores WHERE scorer = ?", (loglik_scorer(model),))
        if not where:
            self._db.execute("DELETE FROM scores")
        self._db.execute("VACUUM")
        return n
