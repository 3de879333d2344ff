"""benchmarks/end_to_end.py: comptrust eval and the HELM-style loop, each in its own process, same work."""

from __future__ import annotations

import json

import pytest

from conftest import load_benchmark


@pytest.mark.slow
def test_both_ways_do_the_same_work_and_comptrust_reports_where_its_time_went(tiny_llama, dt_data, tmp_path,
                                                                              capsys):
    bench = load_benchmark("end_to_end")
    out = tmp_path / "result.json"
    assert bench.main(["--model", str(tiny_llama), "--perspective", "stereotype", "--limit", "1", "--samples", "2",
                       "--data-dir", str(dt_data), "--json", str(out)]) == 0
    runs = json.loads(out.read_text())["runs"]
    ours, loop = runs["comptrust"][0], runs["loop"][0]
    assert ours["rows"] == loop["rows"] == 3 * 2  # 3 scenarios x 1 record x 2 draws
    assert ours["seconds"] > 0 and loop["seconds"] > 0
    assert {"startup_and_imports", "model_load", "prefill", "decode", "scoring", "writing"} <= set(ours["timing"])
    table = capsys.readouterr().out
    assert "x the loop" in table and "prefill" in table
