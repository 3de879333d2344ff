"""benchmarks/scheduling.py: real DecodingTrust prompts, EOS on, the useful fraction of each scheduler."""

from __future__ import annotations

import json

from conftest import load_benchmark


def test_real_prompts_every_way_same_texts_and_no_step_computes_a_finished_row(tiny_llama, dt_data, tmp_path,
                                                                               capsys):
    bench = load_benchmark("scheduling")
    out = tmp_path / "result.json"
    code = bench.main(["--model", str(tiny_llama), "--data-dir", str(dt_data), "--workloads", "stereotype",
                       "--limit", "1", "--samples", "2", "--max-new-tokens", "12",
                       "--ways", "one,helm,static,continuous", "--one-rows", "2", "--slots", "4",
                       "--static-batch", "4", "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    ways = report["results"]["stereotype"]
    assert ways["continuous"][0]["rows"] == ways["static"][0]["rows"] == 3 * 2  # 3 scenarios x 1 record x 2 draws
    assert ways["continuous"][0]["useful_fraction"] == 1.0  # a finished row is never computed again
    assert ways["one"][0]["useful_fraction"] == 1.0 and ways["helm"][0]["rows"] == 2
    assert ways["static"][0]["texts"] == ways["continuous"][0]["texts"]
    lengths = ways["continuous"][0]["lengths"]
    # a static batch computes every row for as many steps as its longest row (+ its EOS)
    assert ways["static"][0]["useful_fraction"] <= 1.0
    if len(set(lengths)) > 1 and max(lengths) < 12:
        assert ways["static"][0]["useful_fraction"] < 1.0
    table = capsys.readouterr().out
    assert "useful" in table and "static texts equal to continuous batching's: 6/6" in table


def test_random_weights_end_at_lengths_drawn_from_real_outputs(tiny_llama, dt_data, tmp_path, capsys):
    """The GPU path (random-weight shapes): prompts from a file, each row ended at a drawn length."""
    import comptrust.backends.hf.backend as hf
    import comptrust.backends.hf.continuous as continuous

    bench = load_benchmark("scheduling")
    prompts = tmp_path / "prompts.json"
    assert bench.main(["--data-dir", str(dt_data), "--workloads", "stereotype", "--limit", "2", "--samples", "2",
                       "--ways", "", "--save-prompts", str(prompts)]) == 0
    saved = json.loads(prompts.read_text())["stereotype"]
    assert len(saved) == 3 * 2 * 2 and saved[0]["params"]["max_tokens"] == 150
    lengths = tmp_path / "lengths.json"
    lengths.write_text(json.dumps({"stereotype": [2, 7]}))
    originals = continuous.next_tokens, hf.RowSampler
    out = tmp_path / "result.json"
    code = bench.main(["--shape", "llama-tiny", "--tokenizer", str(tiny_llama), "--workloads", "stereotype",
                       "--prompts-file", str(prompts), "--lengths-file", str(lengths), "--max-new-tokens", "10",
                       "--ways", "static,continuous", "--slots", "4", "--static-batch", "4", "--json", str(out)])
    assert code == 0 and (continuous.next_tokens, hf.RowSampler) == originals  # patches undone
    ways = json.loads(out.read_text())["results"]["stereotype"]
    for way in ("static", "continuous"):
        assert set(ways[way][0]["lengths"]) <= {2, 7} and len(ways[way][0]["lengths"]) == 12
    assert ways["static"][0]["lengths"] == ways["continuous"][0]["lengths"]
    assert ways["continuous"][0]["useful_fraction"] == 1.0
    if len(set(ways["continuous"][0]["lengths"])) > 1:
        assert ways["static"][0]["useful_fraction"] < 1.0
