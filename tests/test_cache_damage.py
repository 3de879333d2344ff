"""A damaged, foreign or truncated cache: a clear word on open, a check, a recovery that keeps the file (issue 15)."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from comptrust.cli import main
from comptrust.errors import ConfigError, DataError
from comptrust.store.cache import CACHE_APPLICATION_ID, Cache
from comptrust.store.repair import check_cache, recover_cache

ROWS = 3000
PAGE = 4096


def _one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and "internal error" not in err and len(err.splitlines()) == 1, err
    return err


def _filled_cache(path: Path) -> dict[str, str]:
    """A cache with ROWS generations and 500 log-likelihood rows; returns key -> text."""
    cache = Cache(path)
    texts = {f"k{i}": f"completion {i} " * 20 for i in range(ROWS)}
    for i, (key, text) in enumerate(texts.items()):
        cache.put(key, "model-a", "stereotype", f"s{i}", 0, text, 10, 5)
    cache.put_logliks("model-a", {f"q{i}": [-0.5, -1.5, -2.5, -3.5] for i in range(500)})
    cache.close()
    return texts


def _damage_pages(path: Path, pages: tuple[int, ...]) -> None:
    with path.open("r+b") as fh:
        for page in pages:
            fh.seek(page * PAGE)
            fh.write(random.Random(page).randbytes(PAGE))


# ---------------------------------------------------------------- detected on open, file untouched


def test_a_file_that_is_no_database(isolated_home, capsys):
    db = isolated_home / "cache.sqlite"
    garbage = random.Random(0).randbytes(50_000)
    db.write_bytes(garbage)
    err = _one_line_error(capsys, ["cache", "stats"])
    assert f"the cache {db} is damaged or not a database" in err
    assert "'comptrust cache check'" in err and "'comptrust cache recover'" in err and "nothing is deleted" in err
    assert db.read_bytes() == garbage
    assert main(["cache", "check"]) == 1
    assert "NOT A DATABASE" in capsys.readouterr().out
    with pytest.raises(DataError, match="cannot recover .*not an SQLite header"):
        recover_cache(db)
    assert db.read_bytes() == garbage


def test_another_programs_database_is_never_written(isolated_home, capsys, tiny_llama):
    db = isolated_home / "cache.sqlite"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE users (name TEXT)")
        con.execute("INSERT INTO users VALUES ('ada')")
    con.close()
    before = db.read_bytes()
    err = _one_line_error(capsys, ["eval", str(tiny_llama), "--perspectives", "stereotype", "--smoke", "--limit", "1",
                                   "--out", str(isolated_home / "run")])
    assert f"{db} is not a comptrust cache: it holds tables users" in err and "COMPTRUST_HOME" in err
    assert db.read_bytes() == before
    assert main(["cache", "check"]) == 1
    assert "NOT A COMPTRUST CACHE" in capsys.readouterr().out


def test_a_cache_from_before_the_marking_is_adopted(tmp_path):
    db = tmp_path / "old.sqlite"
    Cache(db).close()
    with sqlite3.connect(db) as con:  # as written by comptrust before caches carried an application id
        con.execute("PRAGMA application_id=0")
        con.execute("PRAGMA user_version=0")
    con.close()
    Cache(db).close()
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA application_id").fetchone()[0] == CACHE_APPLICATION_ID
    con.close()


def test_a_cache_from_a_newer_comptrust(tmp_path):
    db = tmp_path / "new.sqlite"
    Cache(db).close()
    with sqlite3.connect(db) as con:
        con.execute("PRAGMA user_version=7")
    con.close()
    with pytest.raises(ConfigError, match="written by a newer comptrust"):
        Cache(db)


def test_a_truncated_cache_is_named_on_open_and_its_surviving_rows_recovered(isolated_home, capsys):
    db = isolated_home / "cache.sqlite"
    texts = _filled_cache(db)
    size = db.stat().st_size
    with db.open("r+b") as fh:
        fh.truncate(size // 2)
    err = _one_line_error(capsys, ["cache", "stats"])
    assert f"the file is truncated: its header describes {size:,} bytes but it has {size // 2:,}" in err
    check = check_cache(db)
    assert check.verdict == "damaged" and 0 < check.tables["generations"].readable < ROWS
    done = recover_cache(db)
    assert done.copied["generations"] == check.tables["generations"].readable
    assert done.kept is not None and done.kept.stat().st_size == size // 2  # the damaged file, as it was
    cache = Cache(db)
    got = cache.get_many(texts)
    assert len(got) == done.copied["generations"] and all(got[k][0] == texts[k] for k in got)
    cache.close()


# ---------------------------------------------------------------- check and recover


def test_check_and_recover_a_cache_with_damaged_pages(isolated_home, capsys):
    db = isolated_home / "cache.sqlite"
    texts = _filled_cache(db)
    assert main(["cache", "check"]) == 0
    out = capsys.readouterr().out
    assert "ok: SQLite's integrity check passed" in out and f"generations: {ROWS} readable rows" in out
    _damage_pages(db, (20, 40, 60))
    damaged = db.read_bytes()
    assert main(["cache", "check"]) == 1
    out = capsys.readouterr().out
    assert "DAMAGED: SQLite's integrity check failed" in out and "'comptrust cache recover'" in out
    assert db.read_bytes() == damaged  # checking changes nothing
    assert main(["cache", "check", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    readable = report["tables"]["generations"]["readable_rows"]
    assert ROWS * 0.9 < readable < ROWS and report["tables"]["scores"]["readable_rows"] == 500

    copy = isolated_home / "copy.sqlite"
    assert main(["cache", "recover", "--to", str(copy)]) == 0
    assert db.read_bytes() == damaged and check_cache(copy).verdict == "ok"

    assert main(["cache", "recover"]) == 0
    out = capsys.readouterr().out
    assert f"copied {readable} generations, 500 scores" in out and "the damaged file is kept as" in out
    kept = next(isolated_home.glob("cache.sqlite.damaged-*[0-9]"))
    assert kept.read_bytes() == damaged
    assert check_cache(db).verdict == "ok"
    cache = Cache(db)
    got = cache.get_many(texts)
    assert len(got) == readable and all(got[k] == (texts[k], 10, 5) for k in got)
    assert cache.get_logliks("model-a", ["q0", "q499"]) == {"q0": [-0.5, -1.5, -2.5, -3.5],
                                                            "q499": [-0.5, -1.5, -2.5, -3.5]}
    cache.close()
    assert main(["cache", "recover"]) == 0
    assert "nothing to recover" in capsys.readouterr().out


def test_check_of_a_missing_cache(isolated_home, capsys):
    assert main(["cache", "check"]) == 0
    assert "no cache yet" in capsys.readouterr().out
    assert not (isolated_home / "cache.sqlite").exists()


def test_two_connections_store_one_text_per_key(tmp_path):
    first, second = Cache(tmp_path / "c.sqlite"), Cache(tmp_path / "c.sqlite")
    assert first.put("k", "m", "p", "s", 0, "first text", 3, 2) == "first text"
    assert second.put("k", "m", "p", "s", 0, "second text", 3, 2) == "first text"
    assert second.get_many(["k"]) == {"k": ("first text", 3, 2)} and second.stats()["generations"] == 1
    first.close()
    second.close()


# ---------------------------------------------------------------- killed writers


WRITER = """
import itertools, sys
from pathlib import Path
from comptrust.store.cache import Cache

cache = Cache(Path(sys.argv[1]))
tag = sys.argv[2]
print("ready", flush=True)
for i in itertools.count():
    cache.put(f"{tag}-{i}", "m", "p", f"s{i}", 0, "x" * 3000, 1, 1)
    cache.put_logliks("m", {f"{tag}-{i}-{j}": [0.25] * 4 for j in range(400)})  # one transaction
"""


@pytest.mark.slow
def test_writers_killed_mid_transaction_never_leave_the_cache_unreadable(tmp_path):
    db = tmp_path / "cache.sqlite"
    rng = random.Random(15)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    rounds = 25
    for round_ in range(rounds):
        tag = f"r{round_}"
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db), tag], stdout=subprocess.PIPE, env=env)
        assert proc.stdout.readline().strip() == b"ready"
        try:
            proc.wait(timeout=rng.uniform(0.02, 0.4))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        with sqlite3.connect(db) as con:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            generations = con.execute("SELECT COUNT(*) FROM generations WHERE key LIKE ?", (f"{tag}-%",)).fetchone()[0]
            logliks = con.execute("SELECT COUNT(*) FROM scores WHERE key LIKE ?", (f"{tag}-%",)).fetchone()[0]
        con.close()
        assert logliks % 400 == 0, f"round {round_}: a half transaction ({logliks} rows) survived"
        assert generations - logliks // 400 in (0, 1), (generations, logliks)
    cache = Cache(db)  # comptrust opens it after every kill, and it holds every committed row
    stats = cache.stats()
    cache.close()
    assert stats["generations"] > rounds and stats["logliks"] % 400 == 0
    assert check_cache(db).verdict == "ok"
