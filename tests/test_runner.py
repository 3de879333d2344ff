"""The runner end to end with a scripted backend: run directory, cache reuse, re-scoring."""

from __future__ import annotations

import json

from comptrust.api import evaluate, read_run
from comptrust.backends.scripted import ScriptedBackend
from comptrust.cli import main


def _responder(row):
    # agree with statements about drivers, disagree otherwise: a model with a visible bias
    return "I agree." if "wheel" in row.messages[-1]["content"] else "No. I disagree."


def test_eval_writes_run_dir_and_reuses_cache(tmp_path):
    backend = ScriptedBackend(_responder)
    out = tmp_path / "run"
    summary = evaluate(backend, ["stereotype"], smoke=True, samples=2, out=out)
    assert backend.calls == 24 * 2
    res = summary["perspectives"]["stereotype"]
    # 1 of 8 smoke cells agrees in every type -> mean agreement 0.125 -> round 0.12 -> 88 per type
    assert res["score"] == 88.0
    assert res["generation"] == {**res["generation"], "rows": 48, "cached": 0, "generated": 48}
    for name in ("spec.json", "summary.json", "stereotype/generations.jsonl", "stereotype/scores.jsonl",
                 "stereotype/result.json"):
        assert (out / name).is_file(), name
    spec = json.loads((out / "spec.json").read_text())
    assert spec["seed"] == 0 and spec["data"]["kind"] == "smoke" and spec["deviations"] == {"samples": 2}
    assert "torch" in spec["versions"] and spec["profile"] == "comp-trust"

    again = evaluate(backend, ["stereotype"], smoke=True, samples=2, out=tmp_path / "run2")
    assert backend.calls == 48  # nothing regenerated
    assert again["perspectives"]["stereotype"]["generation"]["cached"] == 48
    assert again["perspectives"]["stereotype"]["score"] == res["score"]
    assert read_run(out)["finished"] is True


def test_score_command_matches_eval(tmp_path, capsys):
    out = tmp_path / "run"
    summary = evaluate(ScriptedBackend(_responder), ["stereotype"], smoke=True, samples=2, out=out,
                       profile="decodingtrust")
    lines = []
    for row in map(json.loads, (out / "stereotype" / "scores.jsonl").read_text().splitlines()):
        lines.append({"perspective": "stereotype", "scenario": row["sample"]["scenario"],
                      "record": row["sample"]["record"], "responses": row["responses"]})
    path = tmp_path / "responses.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert main(["score", "--responses", str(path), "--profile", "decodingtrust"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["stereotype"]["score"] == summary["perspectives"]["stereotype"]["score"]
    assert printed["stereotype"]["profile"] == "decodingtrust"


def test_scenarios_route_to_the_perspective_that_has_them(tmp_path):
    import pytest

    from comptrust.errors import ConfigError

    backend = ScriptedBackend(_responder)
    summary = evaluate(backend, ["stereotype"], smoke=True, samples=1, scenarios=["stereotype:targeted"],
                       out=tmp_path / "a")
    assert {s["sample"]["scenario"] for s in map(json.loads, (tmp_path / "a" / "stereotype" / "scores.jsonl")
                                                  .read_text().splitlines())} == {"targeted"}
    assert summary["perspectives"]["stereotype"]["partial"]
    with pytest.raises(ConfigError, match="no perspective being evaluated has a scenario 'nope'"):
        evaluate(backend, ["stereotype"], smoke=True, scenarios=["nope"], out=tmp_path / "b")


def test_cli_eval_quiet_then_cache_stats_and_clear(tiny_llama, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["eval", str(tiny_llama), "--perspectives", "stereotype", "--smoke", "--limit", "2", "--samples", "1",
                 "--max-new-tokens", "4", "--out", str(out), "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == str(out)  # --quiet prints only where the run lives
    assert main(["cache", "stats", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["generations"] == 6 and stats["by_model"][0]["perspective"] == "stereotype"
    assert main(["cache", "clear"]) == 0
    assert "deleted 6 cached generations" in capsys.readouterr().out
    assert main(["cache", "stats", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["generations"] == 0
