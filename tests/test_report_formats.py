"""Reports on the deployed formats: a quantized KV cache or llama.cpp running a GGUF is the variant, not a
confound; a GGUF's fallback tensors and every format's stored bits are shown."""

from __future__ import annotations

import json

import pytest

from comptrust.gguf.tools import fallback_summary
from report_fakes import compressed_model, dense_model, scored_samples, write_run
from test_gguf_quantizer_output import QUANTIZER_LINES

pytestmark = pytest.mark.usefixtures("fake_perspectives")


def answers(wrong: set[int], n: int = 10) -> list:
    return scored_samples([("a", i not in wrong) for i in range(n)])


def test_kv_cache_and_llama_cpp_are_the_variant_and_stored_bits_are_shown(tmp_path, capsys):
    from comptrust.cli import main

    dense = write_run(tmp_path, "dense", dense_model(), {"ood": answers(set())})
    kv = dense_model() | {"kv_cache": {"type": "int4", "bits": 4}}
    gguf = compressed_model("gguf", 4)
    gguf |= {"backend": "llamacpp", "dtype": "Q4_K_M"}
    gguf["compression"]["params"]["gguf_type"] = "Q4_K_M"
    gguf["compression"]["storage"] = {"effective_bits_per_weight": 5.5344}
    gguf["compression"]["engine"] = {"fallback": fallback_summary(QUANTIZER_LINES)}
    gptq = compressed_model("gptq", 4, group_size=64)
    gptq["compression"]["storage"] = {"effective_bits_per_weight": 4.5}
    gptq["compression"]["quantized_format"] = {"activation_bits": 8}
    runs = [dense, write_run(tmp_path, "kv", kv, {"ood": answers({1})}),
            write_run(tmp_path, "gguf", gguf, {"ood": answers({2})}),
            write_run(tmp_path, "gptq", gptq, {"ood": answers({3})})]
    assert main(["report", *map(str, runs), "--out", str(tmp_path / "r"), "--bootstrap", "50"]) == 0
    assert "differs from the dense run" not in capsys.readouterr().err
    data = json.loads((tmp_path / "r" / "scores.json").read_text())
    caveats = "\n".join(data["caveats"])
    assert "GGUF Q4_K_M was evaluated by llama.cpp" in caveats and "the dense model by hf" in caveats
    assert "GGUF Q4_K_M: llama.cpp wrote 180 of 272 tensors in other types (Q5_0 x2, Q8_0 x1)" in caveats
    assert "average 5.53 bits" in caveats
    md = (tmp_path / "r" / "report.md").read_text()
    assert "| dense + KV int4 | none | 32 bits, KV int4 |" in md
    assert "| 4 bits (5.53 stored) |" in md and "| 4 bits (4.50 stored), A8 |" in md
