"""GGUF: llama.cpp's converter and quantizer write real files; the llamacpp backend evaluates them with llama.cpp."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comptrust.compression import compress_model, load_manifest, make_config
from comptrust.errors import ConfigError
from comptrust.types import GenParams, GenRow

pytestmark = pytest.mark.slow


def build_tiny_llama_smol_vocab(path: Path) -> Path:
    """A random Llama (hidden 256: k-quant blocks are 256 wide) with SmolLM2's tokenizer, which llama.cpp knows."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from comptrust.models import demo_gguf_path

    gguf = demo_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.pad_token = tokenizer.eos_token
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True, initializer_range=0.08)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return build_tiny_llama_smol_vocab(tmp_path_factory.mktemp("gguf") / "tiny-smol")


@pytest.fixture(scope="module")
def q4km(base, tmp_path_factory) -> Path:
    return compress_model(base, "gguf", tmp_path_factory.mktemp("q4") / "q4km", gguf_type="Q4_K_M")


@pytest.fixture(scope="module")
def f32(base, tmp_path_factory) -> Path:
    return compress_model(base, "gguf", tmp_path_factory.mktemp("f32") / "f32", gguf_type="F32")


def test_q4_k_m_is_a_real_k_quant_file_that_llama_cpp_loads(q4km):
    from comptrust.backends.llamacpp import LlamaCppBackend
    from comptrust.gguf.header import describe_gguf

    files = list(q4km.glob("*.gguf"))
    assert len(files) == 1 and files[0].name == "tiny-smol.Q4_K_M.gguf"
    assert files[0].read_bytes()[:4] == b"GGUF"
    info = describe_gguf(files[0])
    assert info["gguf_type"] == "Q4_K_M" and info["architecture"] == "llama"
    assert "Q4_K" in info["tensor_types"] and "Q6_K" in info["tensor_types"]  # the _M mix keeps some at 6 bits
    assert 4.0 < info["storage"]["effective_bits_per_weight"] < 6.0
    manifest = load_manifest(q4km)
    assert manifest["method"] == "gguf" and manifest["params"]["gguf_type"] == "Q4_K_M"
    assert manifest["engine"]["quantizer"].startswith("llama.cpp") and manifest["engine"]["intermediate"] == "F32"
    assert manifest["engine"]["fallback"] is None  # rows 256 wide: every k-quant tensor got its type
    assert "llama.cpp" in manifest["quantized_format"]["runtime"]
    backend = LlamaCppBackend.from_spec(str(q4km), batch_size=2)
    assert backend.info()["compression"]["params"]["gguf_type"] == "Q4_K_M" and backend.info()["dtype"] == "Q4_K_M"
    rows = [GenRow(({"role": "user", "content": "Say hello."},), GenParams(max_tokens=6), 0, 1)]
    out = backend.generate(rows)
    assert len(out) == 1 and out[0].completion_tokens > 0 and out[0].prompt_tokens > 5


def test_llamacpp_log_likelihoods_equal_transformers_on_an_f32_file(base, f32):
    """Same weights, same tokens: llama.cpp's F32 logits and transformers' agree (MMLU's path).

    Not to the last bit: llama.cpp keeps its KV cache in F16 by default (measured: 4e-4 relative).
    """
    from comptrust.backends.hf.backend import HFBackend
    from comptrust.backends.llamacpp import LlamaCppBackend

    prompts = ["Question: What is 2+2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:", "The capital of France is"]
    choices = [" A", " B", " C", " D", " Paris and more"]
    ours = LlamaCppBackend.from_spec(str(f32), batch_size=3).choice_logprobs(prompts, choices)
    reference = HFBackend.from_path(str(base), batch_size=3).choice_logprobs(prompts, choices)
    for row, ref in zip(ours, reference, strict=True):
        assert row == pytest.approx(ref, rel=1e-3)
    assert ours[0] != pytest.approx(ours[1])  # the scores depend on the prompt


def test_sampled_text_does_not_depend_on_the_batch(q4km):
    from comptrust.backends.llamacpp import LlamaCppBackend

    backend = LlamaCppBackend.from_spec(str(q4km), batch_size=4)
    rows = [GenRow(({"role": "user", "content": f"Tell me about {topic}."},), GenParams(max_tokens=8, temperature=1.0),
                   0, 1000 + i) for i, topic in enumerate(["cats", "the sea", "trains", "music"])]
    together = [c.text for c in backend.generate(rows)]
    alone = [backend.generate([row])[0].text for row in rows]
    assert together == alone
    assert len(set(together)) > 1


def test_q8_0_without_llama_cpp_uses_the_converters_numpy_quantizer(base, tmp_path, monkeypatch):
    import comptrust.gguf.tools as gguf_module
    from comptrust.gguf.header import describe_gguf

    monkeypatch.setattr(gguf_module, "llama_cpp_available", lambda: False)
    out = compress_model(base, "gguf", tmp_path / "q8", gguf_type="Q8_0")
    assert describe_gguf(next(out.glob("*.gguf")))["gguf_type"] == "Q8_0"
    assert load_manifest(out)["engine"]["quantizer"].startswith("gguf-py numpy Q8_0")
    with pytest.raises(ConfigError, match="GGUF Q4_K_M needs llama.cpp's quantizer"):
        compress_model(base, "gguf", tmp_path / "q4", gguf_type="Q4_K_M")


def test_a_user_gguf_is_evaluated_and_labelled_by_its_type(q4km, tmp_path):
    from comptrust.cli import main

    user_file = tmp_path / "downloads" / "someones-model.Q4_K_M.gguf"
    user_file.parent.mkdir()
    user_file.write_bytes(next(q4km.glob("*.gguf")).read_bytes())  # no manifest, no tokenizer files beside it
    code = main(["eval", str(user_file), "--backend", "llamacpp", "--smoke", "--perspectives", "stereotype",
                 "--limit", "1", "--samples", "1", "--max-new-tokens", "4", "--out", str(tmp_path / "run"),
                 "--quiet"])
    assert code == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["model"]["backend"] == "llamacpp"
    assert summary["model"]["compression"]["params"]["gguf_type"] == "Q4_K_M"
    from comptrust.report.runs import load_run

    assert load_run(tmp_path / "run").describe() == "GGUF Q4_K_M"


def test_a_gguf_artifact_evaluated_by_hf_is_the_dequantized_copy_and_keeps_its_manifest(q4km):
    from comptrust.models import resolve_model

    ref = resolve_model(str(q4km))
    assert ref.source == "gguf" and (ref.path / "config.json").is_file()
    assert ref.manifest()["params"]["gguf_type"] == "Q4_K_M"
    # The GGUF's chat template survives the conversion (it was dropped: "this model has no chat template").
    from comptrust.backends.hf.backend import HFBackend

    prompt = HFBackend.from_path(q4km).prompt_text([{"role": "user", "content": "Hi"}])
    assert prompt.startswith("<|im_start|>") and "Hi" in prompt
    # The converted folder itself loads too (its manifest copy names a .gguf that stays in the artifact).
    assert HFBackend.from_path(ref.path).ref.manifest()["method"] == "gguf"


@pytest.mark.parametrize("params,message", [
    ({}, "--method gguf needs --type"),
    ({"gguf_type": "Q4_K_X"}, "unknown GGUF type 'Q4_K_X'"),
    ({"gguf_type": "Q4_K_M", "bits": 8}, "gguf stores 4-bit weights, not 8"),
    ({"gguf_type": "Q8_0", "group_size": 32}, "--group-size does not apply to gguf"),
])
def test_bad_gguf_options_fail_in_one_line(params, message):
    with pytest.raises(ConfigError, match=message):
        make_config("gguf", **params)


def test_llamacpp_backend_refuses_a_folder_that_is_not_gguf(tiny_llama):
    from comptrust.backends.llamacpp import LlamaCppBackend
    from comptrust.errors import ModelError

    with pytest.raises(ModelError, match="--backend llamacpp evaluates GGUF files"):
        LlamaCppBackend.from_spec(str(tiny_llama))


def test_a_downloaded_gguf_with_base_model_is_paired_with_its_dense_run(base, q4km, tmp_path):
    from comptrust.cli import main

    user_file = tmp_path / "downloads" / "someones-model.Q4_K_M.gguf"
    user_file.parent.mkdir()
    user_file.write_bytes(next(q4km.glob("*.gguf")).read_bytes())
    common = ["--smoke", "--perspectives", "stereotype", "--limit", "2", "--samples", "1", "--max-new-tokens", "4",
              "--quiet"]
    assert main(["eval", str(base), *common, "--out", str(tmp_path / "dense")]) == 0
    for backend in ("hf", "llamacpp"):  # the dequantized copy is a GGUF variant too, not a dense model
        assert main(["eval", str(user_file), "--backend", backend, "--base-model", str(base), *common,
                     "--out", str(tmp_path / backend)]) == 0
        record = json.loads((tmp_path / backend / "summary.json").read_text())["model"]["compression"]
        assert record["method"] == "gguf" and record["produced_by"] == "third party"
        assert record["base_model"]["given_by"] == "--base-model" and record["base_model"]["weights_sha256"]
    assert main(["report", str(tmp_path / "dense"), str(tmp_path / "hf"), str(tmp_path / "llamacpp"),
                 "--out", str(tmp_path / "report"), "--bootstrap", "50", "--quiet"]) == 0
    data = json.loads((tmp_path / "report" / "scores.json").read_text())
    assert len(data["bases"]) == 1
    labels = sorted(v["label"] for v in data["variants"] if not v["dense"])
    assert labels == ["GGUF Q4_K_M", "GGUF Q4_K_M (dequantized, hf)"]
    assert all(v["deltas"]["stereotype"]["paired"] for v in data["variants"] if not v["dense"])
