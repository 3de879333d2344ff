"""benchmarks/throughput.py end to end on a toy random-weight shape (the path the GPU shapes take)."""

from __future__ import annotations

import importlib.util
import json

from conftest import load_benchmark


def test_every_way_generates_exactly_the_requested_tokens_and_vllm_absence_is_recorded(tiny_llama, tmp_path,
                                                                                      capsys):
    bench = load_benchmark("throughput")
    out = tmp_path / "result.json"
    code = bench.main(["--shape", "llama-tiny", "--tokenizer", str(tiny_llama), "--prompts", "6",
                       "--reference-prompts", "2", "--max-new-tokens", "5", "--plain-batch-size", "4",
                       "--temperature", "1", "--ways", "reference,hf-plain,hf,hf-static,hf-loop,vllm",
                       "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    results = report["results"]
    assert report["shape"] == "llama-tiny" and report["temperature"] == 1.0 and report["ignore_eos"] is True
    assert results["reference"]["tokens"] == 2 * 5  # EOS disabled: every prompt runs to max_new_tokens
    assert results["hf-plain"]["tokens"] == results["hf"]["tokens"] == results["hf-loop"]["tokens"] == 6 * 5
    assert results["hf-static"]["tokens"] == 6 * 5
    assert results["hf-plain"]["batch_size"] == 4 and results["hf"]["oom_retries"] == 0
    if importlib.util.find_spec("vllm") is None:
        assert "vllm" in results["vllm"]["skipped"]
    table = capsys.readouterr().out
    assert "hf-loop" in table and "vs reference" in table


def test_large_shapes_refuse_to_run_without_a_gpu(tiny_llama, capsys):
    import pytest
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the large shapes run there")
    assert load_benchmark("throughput").main(["--shape", "llama2-13b", "--tokenizer", str(tiny_llama)]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().out
