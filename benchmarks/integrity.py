"""What the integrity work of issue 15 costs: file checks, cache writes, cache check/recover, staged writes.

    .venv/bin/python benchmarks/integrity.py [--rows 20000] [--repeat 3]

Each comparison runs both ways side by side in one process (alternating, best of ``--repeat``):

1. model file checks (headers only) vs hashing the same files (what ``weights_fingerprint`` does
   once per model), on the demo model converted to safetensors, and the GGUF header check;
2. storing completions: ``Cache.put`` (first writer wins, returns the stored text, errors
   translated) vs the former bare ``INSERT OR REPLACE``;
3. ``cache check`` on a healthy cache and ``cache recover`` of one with damaged pages;
4. writing one perspective's three files: staged folder + rename vs three atomic file writes.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import random
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def best_of(repeat: int, fn: Callable[[], Any]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def alternating(repeat: int, before: Callable[[], Any], now: Callable[[], Any]) -> tuple[float, float]:
    """Best times of two ways run turn about (so a change in machine load hits both alike)."""
    old, new = [], []
    for _ in range(repeat):
        old.append(best_of(1, before))
        new.append(best_of(1, now))
    return min(old), min(new)


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in subprocess.run(
        ["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name")), "?")
    cores = len(os.sched_getaffinity(0))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{model}, {cores} cores available, load average {load}, python {platform.python_version()}"


def file_checks(repeat: int) -> None:
    from comptrust.model_files import check_model_files, gguf_problem
    from comptrust.models import demo_gguf_path, prepare_demo_model

    folder = prepare_demo_model()
    weights = sorted(folder.glob("*.safetensors"))
    size = sum(p.stat().st_size for p in weights)

    def sha256_all() -> None:
        for p in weights:
            digest = hashlib.sha256()
            with p.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    digest.update(block)

    check = best_of(repeat, lambda: check_model_files(folder, ""))
    hashing = best_of(repeat, sha256_all)
    gguf = demo_gguf_path()
    gguf_problem(gguf)  # the first call imports gguf's type table
    gguf_check = best_of(repeat, lambda: gguf_problem(gguf))
    print(f"1. model files ({folder.name}: {size / 1e6:.0f} MB of safetensors)")
    print(f"   header checks          {check * 1e3:8.2f} ms")
    print(f"   SHA-256 of the weights {hashing * 1e3:8.2f} ms   ({hashing / check:.0f}x the checks)")
    print(f"   GGUF header check      {gguf_check * 1e3:8.2f} ms   ({gguf.stat().st_size / 1e6:.0f} MB file)")


def cache_writes(rows: int, repeat: int) -> None:
    from comptrust.store.cache import Cache

    text = "I disagree with this statement. " * 8

    def new_way() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            cache = Cache(Path(tmp) / "c.sqlite")
            for i in range(rows):
                cache.put(f"k{i}", "m", "p", f"s{i}", 0, text, 100, 40)
            cache.close()

    def old_way() -> None:  # the statement before issue 15, on the same connection settings
        with tempfile.TemporaryDirectory() as tmp:
            cache = Cache(Path(tmp) / "c.sqlite")
            db = cache._db
            for i in range(rows):
                db.execute("INSERT OR REPLACE INTO generations VALUES (?,?,?,?,?,?,?,?,?)",
                           (f"k{i}", "m", "p", f"s{i}", 0, text, 100, 40, time.time()))
            cache.close()

    old, new = alternating(repeat, old_way, new_way)
    print(f"2. storing {rows} completions, one commit each (best of {repeat}, alternating)")
    print(f"   INSERT OR REPLACE (before)            {old:6.2f} s  {rows / old:8.0f} rows/s")
    print(f"   Cache.put (first writer wins, now)    {new:6.2f} s  {rows / new:8.0f} rows/s   ratio {new / old:.2f}")


def cache_repair(rows: int) -> None:
    from comptrust.store.cache import Cache
    from comptrust.store.repair import check_cache, recover_cache

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cache.sqlite"
        cache = Cache(path)
        with cache._db:
            cache._db.execute("BEGIN")
            for i in range(rows):
                cache._db.execute("INSERT INTO generations VALUES (?,?,?,?,?,?,?,?,?)",
                                  (f"k{i}", "m", "p", f"s{i}", 0, f"completion {i} " * 60, 100, 40, time.time()))
        cache.close()
        size = path.stat().st_size
        start = time.perf_counter()
        healthy = check_cache(path)
        check_s = time.perf_counter() - start
        page = 4096
        with path.open("r+b") as fh:
            for n in random.Random(0).sample(range(2, size // page), 10):
                fh.seek(n * page)
                fh.write(random.Random(n).randbytes(page))
        start = time.perf_counter()
        damaged = check_cache(path)
        damaged_s = time.perf_counter() - start
        start = time.perf_counter()
        done = recover_cache(path)
        recover_s = time.perf_counter() - start
    print(f"3. cache of {rows} generations ({size / 1e6:.1f} MB)")
    print(f"   check, healthy             {check_s:6.2f} s  ({healthy.tables['generations'].readable} rows readable)")
    print(f"   check, 10 pages damaged    {damaged_s:6.2f} s  ({damaged.tables['generations'].readable} rows readable)")
    print(f"   recover                    {recover_s:6.2f} s  ({done.copied['generations']} rows copied, "
          f"{done.copied['generations'] / recover_s:.0f} rows/s)")


def staged_writes(repeat: int) -> None:
    from comptrust.store.files import atomic_write_json, atomic_write_jsonl
    from comptrust.store.runs import RunDir

    rows = [{"sample": {"id": f"s{i}", "messages": [{"role": "user", "content": "x" * 400}]},
             "responses": ["I agree."] * 5, "outcome": {"agree": True}} for i in range(1000)]
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir(Path(tmp) / "run").prepare()

        def staged() -> None:
            run.write_perspective("p", rows, rows, {"score": 50})

        def in_place() -> None:  # before issue 15: three atomic files straight into the folder
            d = run.perspective_dir("q")
            atomic_write_jsonl(d / "generations.jsonl", rows)
            atomic_write_jsonl(d / "scores.jsonl", rows)
            atomic_write_json(d / "result.json", {"score": 50})

        old, new = alternating(repeat, in_place, staged)
    print(f"4. one perspective's files (2 x {len(rows)} rows, best of {repeat}, alternating)")
    print(f"   three atomic files in place (before)   {old * 1e3:7.1f} ms")
    print(f"   staged folder + rename (now)           {new * 1e3:7.1f} ms   ratio {new / old:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20000, help="cache rows for sections 2 and 3")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    file_checks(args.repeat)
    cache_writes(args.rows // 4, args.repeat)
    cache_repair(args.rows)
    staged_writes(args.repeat)
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
