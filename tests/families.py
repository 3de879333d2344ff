"""Tiny random models of every family users run (2 layers, hidden 64), built from their config classes.

Each folder is a complete Hugging Face model with conftest's small trained BPE tokenizer and chat
template, so nothing is downloaded.  The configs keep each family's distinctive parts (fused
qkv/gate_up for Phi-3, experts and routers for Mixtral / Qwen3-MoE, learned positions for OPT,
partial rotary for GPT-NeoX, sliding windows for Mistral / Gemma), only smaller.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import tiny_tokenizer

FAMILIES = ("llama", "qwen2", "qwen3", "mistral", "gemma2", "gemma3", "phi3", "mixtral", "qwen3_moe", "opt",
            "gpt_neox")
MOE_FAMILIES = ("mixtral", "qwen3_moe")


def family_config(family: str, tokenizer: Any) -> Any:
    """The family's transformers config, 2 layers of width 64, with the tokenizer's special ids."""
    import transformers

    ids = {"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id,
           "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    common = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "max_position_embeddings": 2048, **ids}
    if family == "llama":
        return transformers.LlamaConfig(**common, tie_word_embeddings=True)
    if family == "qwen2":
        return transformers.Qwen2Config(**common, tie_word_embeddings=True)
    if family == "qwen3":
        return transformers.Qwen3Config(**common, head_dim=16, tie_word_embeddings=True)
    if family == "mistral":
        return transformers.MistralConfig(**common, sliding_window=4096)
    if family == "gemma2":
        return transformers.Gemma2Config(**common, head_dim=16, sliding_window=32)
    if family == "gemma3":
        return transformers.Gemma3TextConfig(**common, head_dim=16, sliding_window=32)
    if family == "phi3":
        return transformers.Phi3Config(**common)
    if family == "mixtral":
        return transformers.MixtralConfig(**common, num_local_experts=4, num_experts_per_tok=2)
    if family == "qwen3_moe":
        return transformers.Qwen3MoeConfig(**common, head_dim=16, num_experts=4, num_experts_per_tok=2,
                                           moe_intermediate_size=32, decoder_sparse_step=1, mlp_only_layers=[])
    if family == "opt":
        return transformers.OPTConfig(hidden_size=64, ffn_dim=128, num_hidden_layers=2, num_attention_heads=4,
                                      word_embed_proj_dim=64, max_position_embeddings=2048, **ids)
    if family == "gpt_neox":
        return transformers.GPTNeoXConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                          num_attention_heads=4, max_position_embeddings=2048, rotary_pct=0.25,
                                          **ids)
    raise ValueError(f"unknown family {family!r}")


def smollm2_tokenizer() -> Any:
    """SmolLM2's tokenizer (from the demo GGUF): one llama.cpp's converter recognises, unlike the tiny BPE."""
    from transformers import AutoTokenizer

    from comptrust.models import demo_gguf_path

    gguf = demo_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def build_family(family: str, path: Path, seed: int = 0, tokenizer: Any = None) -> Path:
    """Save a random ``family`` causal LM with ``tokenizer`` (default: the tiny one) to ``path``."""
    import torch
    from transformers import AutoModelForCausalLM

    path.mkdir(parents=True, exist_ok=True)
    tokenizer = tokenizer or tiny_tokenizer()
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(family_config(family, tokenizer))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
