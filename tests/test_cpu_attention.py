"""Attention on a CPU (backends/hf/cpu_attention.py): GQA heads not repeated under a mask, bf16 computed in float32."""

from __future__ import annotations

import pytest
import torch
from transformers import AttentionInterface, AutoModelForCausalLM

from comptrust.backends.hf import cpu_attention as module
from comptrust.backends.hf.cpu_attention import NAME, cpu_attention


def _padded_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Two left-padded rows: the mask is not all ones, so transformers passes SDPA a mask."""
    ids = torch.tensor([[0, 0, 5, 9, 12, 7], [3, 8, 5, 9, 12, 7]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    return ids, mask


def _spy_sdpa(monkeypatch) -> list[tuple[int, bool, bool, torch.dtype]]:
    """Record (key heads, enable_gqa, mask given, dtype) of every SDPA call."""
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(query, key, value, **kwargs):
        calls.append((key.shape[1], kwargs.get("enable_gqa", False), kwargs.get("attn_mask") is not None,
                      query.dtype))
        return sdpa(query, key, value, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    return calls


def test_same_logits_and_no_repeated_heads(tiny_llama, monkeypatch):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32).eval()
    assert model.config.num_key_value_heads < model.config.num_attention_heads  # the tiny model is GQA
    ids, mask = _padded_batch()
    with torch.inference_mode():
        plain = model(input_ids=ids, attention_mask=mask).logits
    calls = _spy_sdpa(monkeypatch)
    with torch.inference_mode(), cpu_attention(model):
        assert model.config._attn_implementation == NAME
        ours = model(input_ids=ids, attention_mask=mask).logits
    assert model.config._attn_implementation == "sdpa"  # restored
    # Every layer attended with the key/value heads as stored (2), grouped, with the padding mask.
    assert calls == [(model.config.num_key_value_heads, True, True, torch.float32)] * model.config.num_hidden_layers
    real = mask.bool()
    assert torch.allclose(ours[real], plain[real], atol=1e-6, rtol=0)


def test_bfloat16_attention_runs_in_float32(tiny_llama, monkeypatch):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.bfloat16).eval()
    ids, mask = _padded_batch()
    with torch.inference_mode():
        plain = model(input_ids=ids, attention_mask=mask).logits
    calls = _spy_sdpa(monkeypatch)
    with torch.inference_mode(), cpu_attention(model):
        ours = model(input_ids=ids, attention_mask=mask).logits
        unmasked = model(input_ids=ids[1:]).logits  # no mask: transformers' own path, still in float32
    assert ours.dtype == torch.bfloat16  # the model's dtype outside attention
    layers = model.config.num_hidden_layers
    assert [c[3] for c in calls] == [torch.float32] * (2 * layers)
    assert [c[2] for c in calls] == [True] * layers + [False] * layers
    real = mask.bool()
    assert (ours[real].float() - plain[real].float()).abs().max() < 0.05  # bf16 rounding apart
    assert torch.allclose(unmasked[0].float(), ours[1].float(), atol=0.05)


def test_restored_after_an_error(tiny_llama):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32).eval()
    with pytest.raises(RuntimeError, match="boom"), cpu_attention(model):
        raise RuntimeError("boom")
    assert model.config._attn_implementation == "sdpa"


def test_eager_models_untouched(tiny_llama):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32, attn_implementation="eager")
    with cpu_attention(model):
        assert model.config._attn_implementation == "eager"
    assert model.config._attn_implementation == "eager"


def test_without_a_mask_transformers_path_gives_identical_logits(tiny_llama, monkeypatch):
    """No mask (one unpadded row): transformers' own SDPA path, which groups heads itself."""
    module._register()
    seen = []

    def spy(mod, query, key, value, attention_mask, **kwargs):
        seen.append(attention_mask is None)
        return module.sdpa_cpu_forward(mod, query, key, value, attention_mask, **kwargs)

    monkeypatch.setitem(AttentionInterface._global_mapping, NAME, spy)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32).eval()
    ids = torch.tensor([[3, 8, 5, 9]])
    with torch.inference_mode():
        plain = model(input_ids=ids).logits
        with cpu_attention(model):
            ours = model(input_ids=ids).logits
    assert seen and all(seen)
    assert torch.equal(plain, ours)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_static_and_continuous_generation_both_use_it(tiny_llama, monkeypatch, dtype):
    """Same texts from both schedulers, greedy and sampled; in bf16 the slots hold float32 keys and values."""
    from comptrust.backends.hf.backend import HFBackend
    from comptrust.types import GenParams, GenRow

    used = []
    original = module.sdpa_cpu_forward
    module._register()
    monkeypatch.setitem(AttentionInterface._global_mapping, NAME,
                        lambda *a, **k: used.append(1) or original(*a, **k))
    prompts = ["I agree.", "You are a helpful assistant. The answer is", "people are good drivers"]
    rows = [GenRow(({"role": "user", "content": text},), GenParams(max_tokens=12, temperature=t), 0, 7 + i)
            for i, text in enumerate(prompts) for t in (0.0, 1.0)]
    texts = {}
    for scheduler in ("continuous", "static"):
        used.clear()
        backend = HFBackend.from_path(tiny_llama, scheduler=scheduler, dtype=dtype)
        texts[scheduler] = [c.text for c in backend.generate(rows)]
        assert used, scheduler
        assert backend.info()["scheduler"] == scheduler
        assert (backend.stats.decode_forwards > 0) == (scheduler == "continuous")  # the loop itself ran
        assert backend.model.config._attn_implementation == "sdpa"
        assert module.kv_cache_dtype(backend.model) == torch.float32  # bf16 values kept exactly
    assert texts["continuous"] == texts["static"]
