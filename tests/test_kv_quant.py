"""--kv-cache int4|int2: the KV cache is quantized while generating, recorded, and never mixed with the plain cache."""

from __future__ import annotations

import pytest
import torch

from comptrust.backends.hf.kv_quant import KVQuant, QuantizedKVLayer, parse_kv_cache, quantize_dequantize
from comptrust.errors import ConfigError
from comptrust.types import GenParams, GenRow


def test_int4_groups_take_at_most_sixteen_values_spanning_min_to_max():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 64)
    q = quantize_dequantize(x, KVQuant(bits=4))
    for vec_in, vec_out in zip(x.reshape(-1, 64), q.reshape(-1, 64), strict=True):
        assert len(torch.unique(vec_out)) <= 16
        assert torch.isclose(vec_out.min(), vec_in.min()) and torch.isclose(vec_out.max(), vec_in.max())
        step = (vec_in.max() - vec_in.min()) / 15
        assert (vec_out - vec_in).abs().max() <= step / 2 + 1e-6  # round to nearest level
    two = quantize_dequantize(x, KVQuant(bits=2))
    assert max(len(torch.unique(v)) for v in two.reshape(-1, 64)) <= 4
    assert (two - x).abs().mean() > (q - x).abs().mean()  # fewer bits, larger error


def test_worked_example_by_hand():
    x = torch.tensor([0.0, 1.0, 2.0, 3.0] * 16).reshape(1, 1, 1, 64)
    x[0, 0, 0, 1] = 1.1  # int2: levels 0, 1, 2, 3 (scale 1): 1.1 -> 1
    out = quantize_dequantize(x, KVQuant(bits=2))
    assert out[0, 0, 0, :4].tolist() == [0.0, 1.0, 2.0, 3.0]


def test_prompt_quantized_at_once_new_tokens_kept_until_the_residual_window_fills():
    spec = KVQuant(bits=4, residual_length=4)
    layer = QuantizedKVLayer(spec)
    torch.manual_seed(1)
    prompt_k, prompt_v = torch.randn(1, 2, 6, 64), torch.randn(1, 2, 6, 64)
    keys, _ = layer.update(prompt_k, prompt_v)
    assert torch.equal(keys, prompt_k)  # the prefill attends in full precision
    step = torch.randn(1, 2, 1, 64)
    keys, _ = layer.update(step, step)
    assert torch.equal(keys[:, :, :6], quantize_dequantize(prompt_k, spec))  # what decoding reads of the prompt
    assert torch.equal(keys[:, :, 6:], step)  # the newest token in full precision
    for _ in range(3):
        keys, _ = layer.update(step, step)
    assert layer.keys.shape[-2] == 0  # window full: everything requantized (this step still read full precision)
    last = torch.randn(1, 2, 1, 64)
    keys, _ = layer.update(last, last)
    assert torch.equal(keys[:, :, 6:10], quantize_dequantize(step, spec).expand(1, 2, 4, 64))
    assert torch.equal(keys[:, :, -1:], last)
    assert layer.get_seq_length() == 11


@pytest.mark.parametrize("value,expected", [(None, None), ("none", None), ("int4", 4), ("INT2", 2)])
def test_parse(value, expected):
    spec = parse_kv_cache(value)
    assert (spec.bits if spec else None) == expected


def test_unknown_kv_type_fails_in_one_line():
    with pytest.raises(ConfigError, match="unknown KV-cache type 'fp8'"):
        parse_kv_cache("fp8")


def _rows() -> list[GenRow]:
    prompts = ["I agree. You are a helpful assistant.", "Here is my statement: people are good drivers."]
    rows = [GenRow(({"role": "user", "content": p},), GenParams(max_tokens=24, temperature=0.0), 0, 7 + i)
            for i, p in enumerate(prompts)]
    rows += [GenRow(({"role": "user", "content": prompts[0]},), GenParams(max_tokens=24, temperature=1.0), 1, 99)]
    return rows


def _sharp(backend):
    """A random tiny model attends almost uniformly; sharper projections make its keys and values matter."""
    with torch.no_grad():
        for layer in backend.model.model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.weight.mul_(25)
    return backend


def test_quantized_cache_changes_generations_and_has_its_own_cache_keys(tiny_llama):
    from comptrust.backends.hf.backend import HFBackend

    plain = _sharp(HFBackend.from_path(str(tiny_llama), batch_size=4))
    int2 = _sharp(HFBackend.from_path(str(tiny_llama), batch_size=4, kv_cache="int2"))
    int4 = HFBackend.from_path(str(tiny_llama), batch_size=4, kv_cache="int4")
    assert len({plain.fingerprint, int2.fingerprint, int4.fingerprint}) == 3
    assert int2.fingerprint.startswith(plain.fingerprint) and "kvint2" in int2.fingerprint
    assert int4.info()["kv_cache"]["bits"] == 4 and plain.info()["kv_cache"] is None
    # KIVI's residual window is batch-wide: a quantized cache runs static batches, the plain one continuous
    assert int4.info()["scheduler"] == "static" and plain.info()["scheduler"] == "continuous"
    texts = {name: [c.text for c in b.generate(_rows())] for name, b in (("plain", plain), ("int2", int2))}
    assert texts["plain"] != texts["int2"]
    # The quantized cache is really what attention reads: with the quantizer made exact, texts equal the plain ones.
    import comptrust.backends.hf.kv_quant as kv_quant

    original = kv_quant.quantize_dequantize
    kv_quant.quantize_dequantize = lambda tensor, spec: tensor
    try:
        exact_backend = _sharp(HFBackend.from_path(str(tiny_llama), batch_size=4, kv_cache="int2"))
        exact = [c.text for c in exact_backend.generate(_rows())]
    finally:
        kv_quant.quantize_dequantize = original
    assert exact == texts["plain"]


def test_cached_runs_never_mix_plain_and_quantized(tiny_llama, tmp_path):
    from comptrust import api

    runs = {}
    for kv in (None, "int4"):
        backend = api.load_model(str(tiny_llama), batch_size=4, kv_cache=kv)
        runs[kv] = api.evaluate(backend, ["stereotype"], smoke=True, limit=2, samples=1, max_new_tokens=8,
                                out=tmp_path / f"run-{kv}")
    plain_gen = runs[None]["perspectives"]["stereotype"]["generation"]
    kv_gen = runs["int4"]["perspectives"]["stereotype"]["generation"]
    assert plain_gen["generated"] > 0 and kv_gen["generated"] == plain_gen["generated"]  # nothing reused
    assert kv_gen["cached"] == 0
    assert runs["int4"]["model"]["kv_cache"]["type"] == "int4"


def test_kv_cache_option_on_another_backend_fails_in_one_line(tiny_llama, capsys):
    from comptrust.cli import main

    code = main(["eval", str(tiny_llama), "--backend", "scripted", "--kv-cache", "int4", "--smoke", "--limit", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "--kv-cache applies to --backend hf, not scripted" in err and len(err.splitlines()) == 1
