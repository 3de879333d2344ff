"""A run killed with SIGKILL mid-generation resumes from the cache and scores identically."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest


def _cmd(model, out):
    return [sys.executable, "-m", "comptrust", "eval", str(model), "--perspectives", "stereotype", "--smoke",
            "--samples", "2", "--max-new-tokens", "16", "--batch-size", "1", "--seed", "3", "--out", str(out),
            "--quiet"]


def _count(db):
    if not db.is_file():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as con:
            return con.execute("SELECT COUNT(*) FROM generations").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


@pytest.mark.slow
def test_sigkill_then_rerun_matches_uninterrupted_run(tiny_llama, tmp_path):
    total = 24 * 2
    home = tmp_path / "home"
    env = {**os.environ, "COMPTRUST_HOME": str(home)}
    proc = subprocess.Popen(_cmd(tiny_llama, tmp_path / "killed"), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    db = home / "cache.sqlite"
    deadline = time.time() + 120
    while _count(db) < 10 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_at_kill = _count(db)
    assert 10 <= done_at_kill < total, f"kill landed at {done_at_kill}/{total}; the test needs a mid-run kill"
    assert not (tmp_path / "killed" / "stereotype" / "result.json").exists()

    rerun = subprocess.run(_cmd(tiny_llama, tmp_path / "killed"), env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    resumed = json.loads((tmp_path / "killed" / "summary.json").read_text())["perspectives"]["stereotype"]
    assert resumed["generation"]["cached"] == done_at_kill
    assert resumed["generation"]["generated"] == total - done_at_kill

    fresh_env = {**os.environ, "COMPTRUST_HOME": str(tmp_path / "home2")}
    clean = subprocess.run(_cmd(tiny_llama, tmp_path / "clean"), env=fresh_env, capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr
    uninterrupted = json.loads((tmp_path / "clean" / "summary.json").read_text())["perspectives"]["stereotype"]
    assert uninterrupted["generation"]["generated"] == total
    assert resumed["score"] == uninterrupted["score"]
    assert resumed["metrics"] == uninterrupted["metrics"]
    a = (tmp_path / "killed" / "stereotype" / "scores.jsonl").read_text()
    b = (tmp_path / "clean" / "stereotype" / "scores.jsonl").read_text()
    assert a == b  # same responses, same parsed labels, same order
