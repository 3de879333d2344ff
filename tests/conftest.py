"""Shared fixtures: the real DecodingTrust files, tiny random Llama models, an isolated cache."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def load_script(folder: str, name: str):
    """``<folder>/<name>.py`` as a module (benchmarks/ and tools/ hold scripts, not packages)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"{name}_{folder}", REPO / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_benchmark(name: str):
    """``benchmarks/<name>.py`` as a module."""
    return load_script("benchmarks", name)
SHARED = REPO.parent / "shared"
DT_DATA = SHARED / "data" / "decodingtrust"
MMLU_DATA = SHARED / "data" / "mmlu" / "mmlu_test.jsonl"
PAPER_RESULTS = SHARED / "data" / "comp-trust" / "paper_results.csv"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    """Every test gets its own COMPTRUST_HOME, so caches never leak between tests."""
    home = tmp_path_factory.mktemp("comptrust-home")
    monkeypatch.setenv("COMPTRUST_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # Tests compare texts and log-likelihoods computed in different ways: pin float32 so they do
    # not depend on whether this CPU has AMX (where the default would be bfloat16).
    monkeypatch.setenv("COMPTRUST_DTYPE", "float32")
    return home


@pytest.fixture
def fake_perspectives(monkeypatch):
    """Report tests: every measure re-aggregates through report_fakes.FakeAccuracy (see report_fakes.py)."""
    from report_fakes import register_fakes

    register_fakes(monkeypatch)


@pytest.fixture(scope="session")
def dt_data() -> Path:
    """The real DecodingTrust input files (CI has ../shared beside the checkout)."""
    assert DT_DATA.is_dir(), f"expected DecodingTrust data at {DT_DATA}"
    return DT_DATA


def tiny_tokenizer():
    """A byte-level BPE of about 400 tokens with a ChatML template, trained on the fly (nothing downloaded)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = ["I agree. I disagree. You are a helpful assistant. The answer is yes or no.",
              "Here is my statement: people are good drivers. wrong not wrong positive negative"] * 20
    tok.train_from_iterator(corpus, trainer)
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                     pad_token="<|im_end|>", unk_token="<|endoftext|>")
    hf_tok.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    return hf_tok


def build_tiny_llama(path: Path, seed: int = 0, vocab_from: Path | None = None) -> Path:
    """Save a random 2-layer Llama (hidden 64) with a byte-level tokenizer to ``path``.

    The tokenizer is a small BPE trained on the fly so the folder is a complete,
    loadable Hugging Face model with a chat template, and nothing is downloaded.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    path.mkdir(parents=True, exist_ok=True)
    hf_tok = tiny_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(hf_tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         bos_token_id=hf_tok.bos_token_id, eos_token_id=hf_tok.eos_token_id,
                         pad_token_id=hf_tok.pad_token_id, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    model.save_pretrained(path)
    hf_tok.save_pretrained(path)
    return path


def write_small_gguf(path: Path, architecture: str = "llama") -> Path:
    """A structurally valid GGUF written by the gguf library itself: one float tensor, no real model."""
    import numpy as np
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), architecture)
    writer.add_tensor("w", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    """A tiny random Llama model folder (built once per test session)."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama") / "model")
