"""The SQLite cache and atomic run-directory writes."""

from __future__ import annotations

import json

from comptrust.store.cache import Cache, generation_key
from comptrust.store.files import atomic_write_json
from comptrust.store.runs import RunDir


def test_cache_roundtrip_stats_and_clear(tmp_path):
    cache = Cache(tmp_path / "c.sqlite")
    k1 = generation_key("m1", "stereotype", 1, "benign/0", "h", {"max_tokens": 5}, 0, 0)
    k2 = generation_key("m1", "stereotype", 1, "benign/0", "h", {"max_tokens": 5}, 1, 0)
    assert k1 != k2 != generation_key("m1", "stereotype", 2, "benign/0", "h", {"max_tokens": 5}, 0, 0)
    cache.put(k1, "m1", "stereotype", "benign/0", 0, "I agree.", 10, 3)
    cache.put(k2, "m2", "fairness", "x", 1, "no", 5, 1)
    assert cache.get_many([k1, "absent"]) == {k1: ("I agree.", 10, 3)}
    cache.put_score("perspective-api", "abc", 0.7)
    assert cache.get_score("perspective-api", "abc") == 0.7
    stats = cache.stats()
    assert stats["generations"] == 2 and stats["scores"] == 1
    assert cache.clear(model="m1") == 1
    assert cache.stats()["generations"] == 1
    cache.close()
    # WAL mode persists across connections
    assert Cache(tmp_path / "c.sqlite").get_many([k2])


def test_atomic_write_leaves_no_temp_files(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_run_dir_writes_perspective_files(tmp_path):
    run = RunDir(tmp_path / "run").prepare()
    run.write_perspective("stereotype", [{"a": 1}], [{"b": 2}], {"score": 50})
    assert run.read_result("stereotype") == {"score": 50}
    assert run.read_scores("stereotype") == [{"b": 2}]
