"""The batched transformers backend: seeds, batch-size invariance, EOS, prompt formats.

Tests of static batches (the fallback for models without a per-row cache, and the benchmarks'
yardstick) set ``scheduler = "static"``; continuous batching has tests/test_continuous_batching.py.
"""

from __future__ import annotations

import pytest

from comptrust.backends.base import row_seed
from comptrust.backends.hf.backend import HFBackend
from comptrust.types import GenParams, GenRow


def _rows(params: GenParams, n_prompts: int = 5, draws: int = 2) -> list[GenRow]:
    rows = []
    for i in range(n_prompts):
        messages = ({"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": "Here is my statement: " + "people are good drivers. " * (i + 1)})
        for j in range(draws):
            rows.append(GenRow(messages, params, j, row_seed(params.seed, f"s{i}", "h", j)))
    return rows


@pytest.fixture(scope="module")
def backend(tiny_llama):
    return HFBackend.from_path(tiny_llama, batch_size=4, dtype="float32")  # module scope: before the float32 pin


@pytest.fixture
def static(backend):
    """The module's backend on static batches for one test."""
    backend.scheduler = "static"
    yield backend
    backend.scheduler = "continuous"


def test_sampling_is_reproducible_and_independent_of_batch_size(backend):
    params = GenParams(max_tokens=12, temperature=1.0, n=2, seed=7)
    rows = _rows(params)
    backend.requested_batch_size = 4
    batched = [c.text for c in backend.generate(rows)]
    backend.requested_batch_size = 1
    single = [c.text for c in backend.generate(rows)]
    backend.requested_batch_size = 4
    assert batched == single
    # draws of the same prompt differ (their own seeds), and another run seed changes the text
    assert batched[0] != batched[1]
    other = [c.text for c in backend.generate(_rows(GenParams(max_tokens=12, temperature=1.0, n=2, seed=8)))]
    assert other != batched


def test_greedy_is_deterministic_across_batch_sizes(backend):
    rows = _rows(GenParams(max_tokens=10, temperature=0.0), draws=1)
    backend.requested_batch_size = 3
    a = [c.text for c in backend.generate(rows)]
    backend.requested_batch_size = 1
    b = [c.text for c in backend.generate(rows)]
    backend.requested_batch_size = 4
    assert a == b


def test_completion_lengths_and_on_result_callback(backend):
    rows = _rows(GenParams(max_tokens=6, temperature=1.0, seed=1), n_prompts=3, draws=1)
    seen = {}
    out = backend.generate(rows, on_result=lambda i, c: seen.__setitem__(i, c.text))
    assert sorted(seen) == [0, 1, 2] and [seen[i] for i in range(3)] == [c.text for c in out]
    assert all(0 < c.completion_tokens <= 6 for c in out)
    assert out[2].prompt_tokens > out[0].prompt_tokens  # longer statement, longer prompt


@pytest.mark.parametrize("scheduler", ["continuous", "static"])
def test_generation_stops_at_eos(tiny_llama, monkeypatch, scheduler):
    import comptrust.backends.hf.backend as hf

    monkeypatch.setattr(hf, "MIN_SHARED_PREFIX", 10**9)  # every lm_head call below is a generate step
    backend = HFBackend.from_path(tiny_llama, batch_size=2, scheduler=scheduler)
    eos = backend.tokenizer.eos_token_id
    calls = {"n": 0}

    def eos_on_third_step(_module, _inputs, logits):
        calls["n"] += 1
        if calls["n"] == 3:  # the first two steps pick ordinary tokens, the third is forced to EOS
            logits[..., eos] = 1e4
        return logits

    hook = backend.model.lm_head.register_forward_hook(eos_on_third_step)
    try:
        out = backend.generate(_rows(GenParams(max_tokens=8, temperature=0.0), n_prompts=2, draws=1))
    finally:
        hook.remove()
    assert [c.completion_tokens for c in out] == [2, 2]  # EOS itself is not part of the text
    assert all("<|im_end|>" not in c.text for c in out)


def test_dt_templates_change_the_prompt(tiny_llama):
    b = HFBackend.from_path(tiny_llama, chat_template="llama-2")
    text = b.prompt_text([{"role": "user", "content": "Hi"}])
    assert text.startswith("<s>[INST] <<SYS>>") and text.endswith("Hi[/INST]")
    assert b.fingerprint != HFBackend.from_path(tiny_llama).fingerprint


def _texts(backend, rows):
    return [c.text for c in backend.generate(rows)]


def test_prefix_and_prompt_sharing_give_the_same_text_as_plain_batches(static, monkeypatch):
    import comptrust.backends.hf.backend as hf

    backend = static
    sampled = _rows(GenParams(max_tokens=10, temperature=1.0, n=3, seed=5), n_prompts=3, draws=3)
    greedy = _rows(GenParams(max_tokens=8, temperature=0.0), n_prompts=3, draws=1)
    assert hf.common_prefix_length([backend._encode(backend.prompt_text(r.messages)) for r in sampled]) >= 8
    used = {"prefix": 0, "unique": 0}
    prefix_cache, shared_prefill = HFBackend._prefix_cache, HFBackend._shared_prefill

    def count(kind, fn):
        def wrapper(self, *args):
            cache = fn(self, *args)
            used[kind] += cache is not None
            return cache
        return wrapper

    monkeypatch.setattr(HFBackend, "_prefix_cache", count("prefix", prefix_cache))
    monkeypatch.setattr(HFBackend, "_shared_prefill", count("unique", shared_prefill))
    with_prefix = (_texts(backend, sampled), _texts(backend, greedy))
    assert used["prefix"] > 0
    monkeypatch.setattr(hf, "MIN_SHARED_PREFIX", 10**9)  # no prefix sharing: duplicates share their prompt
    with_unique = (_texts(backend, sampled), _texts(backend, greedy))
    assert used["unique"] > 0
    monkeypatch.setattr(HFBackend, "_shared_prefill", lambda self, *args: None)  # nothing shared at all
    plain = (_texts(backend, sampled), _texts(backend, greedy))
    assert with_prefix == plain and with_unique == plain


def test_dtype_choice_and_bfloat16_generation(tiny_llama, monkeypatch):
    import torch

    from comptrust.backends.hf.backend import choose_dtype
    from comptrust.errors import ConfigError

    monkeypatch.delenv("COMPTRUST_DTYPE")
    assert choose_dtype("cuda") == torch.bfloat16
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    assert choose_dtype("cpu") == torch.float32  # bf16 would run emulated
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert choose_dtype("cpu") == torch.bfloat16  # Xeon with AMX
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert choose_dtype("cpu") == torch.bfloat16  # AMD Zen 4 / Cooper Lake: AVX512-BF16, no AMX
    assert choose_dtype("cpu", "float32") == torch.float32
    with pytest.raises(ConfigError, match="unknown dtype 'int3'"):
        choose_dtype("cpu", "int3")
    b16 = HFBackend.from_path(tiny_llama, dtype="bfloat16")
    assert b16.model.dtype == torch.bfloat16 and "bfloat16" in b16.fingerprint
    out = b16.generate(_rows(GenParams(max_tokens=5, temperature=1.0, seed=2), n_prompts=2, draws=1))
    assert len(out) == 2 and all(0 < c.completion_tokens <= 5 for c in out)


def test_reserved_kv_cache_gives_the_same_text_as_transformers_dynamic_cache(static, monkeypatch):
    import comptrust.backends.hf.backend as hf

    backend = static
    sampled = _rows(GenParams(max_tokens=10, temperature=1.0, n=3, seed=5), n_prompts=3, draws=3)
    greedy = _rows(GenParams(max_tokens=8, temperature=0.0), n_prompts=4, draws=1)
    made = []
    new_cache = HFBackend._new_cache
    monkeypatch.setattr(HFBackend, "_new_cache", lambda self, capacity: made.append(capacity) or
                        new_cache(self, capacity))
    reserved = (_texts(backend, sampled), _texts(backend, greedy))
    monkeypatch.setattr(hf, "MIN_SHARED_PREFIX", 10**9)  # also the shared-prefill and the plain path
    reserved_unshared = (_texts(backend, sampled), _texts(backend, greedy))
    assert made and all(c > 10 for c in made)
    monkeypatch.setattr(HFBackend, "_new_cache", lambda self, capacity: None)  # transformers' DynamicCache
    dynamic_unshared = (_texts(backend, sampled), _texts(backend, greedy))
    monkeypatch.setattr(hf, "MIN_SHARED_PREFIX", 8)
    dynamic = (_texts(backend, sampled), _texts(backend, greedy))
    assert reserved == dynamic and reserved_unshared == dynamic_unshared


def test_reserved_layer_writes_in_place_and_selects_crops_and_grows():
    import torch

    from comptrust.backends.hf.slot_cache import ReservedCache, reservable

    cache = ReservedCache(num_layers=1, capacity=4)
    layer = cache.layers[0]
    k1 = torch.arange(2 * 1 * 3 * 2, dtype=torch.float32).reshape(2, 1, 3, 2)
    keys, values = cache.update(k1, -k1, 0)
    assert keys.shape == (2, 1, 3, 2) and torch.equal(keys, k1) and torch.equal(values, -k1)
    buffer = layer._keys
    k2 = torch.full((2, 1, 1, 2), 7.0)
    keys, _ = cache.update(k2, k2, 0)
    assert layer._keys is buffer and keys.data_ptr() == buffer.data_ptr()  # no copy while it fits
    assert torch.equal(keys, torch.cat([k1, k2], dim=-2)) and cache.get_seq_length() == 4
    keys, _ = cache.update(k2 + 1, k2 + 1, 0)  # past the reservation: grows, keeps the contents
    assert layer.capacity >= 5 and torch.equal(keys[:, :, :4], torch.cat([k1, k2], dim=-2))
    assert torch.equal(keys[:, :, 4], torch.full((2, 1, 2), 8.0))
    cache.reorder_cache(torch.tensor([1, 1, 0]))
    assert layer.keys.shape[0] == 3 and torch.equal(layer.keys[0], layer.keys[1])
    assert torch.equal(layer.keys[2, :, :3], k1[0])
    layer.batch_select_indices(torch.tensor([False, True, True]))
    assert layer.keys.shape[0] == 2 and torch.equal(layer.keys[1, :, :3], k1[0])
    layer.crop(-2)
    assert cache.get_seq_length() == 3 and layer.keys.shape[-2] == 3

    class Config:
        num_hidden_layers = 2

    assert reservable(Config())
    Config.layer_types = ["full_attention", "sliding_attention"]
    assert not reservable(Config())


def test_gpu_batch_size_fits_the_reserved_cache_and_prefill_in_free_memory(tiny_llama, monkeypatch):
    import torch

    b = HFBackend.from_path(tiny_llama)  # float32 in tests: 2 layers, 2 KV heads of 16, hidden 64, MLP 128
    monkeypatch.setattr(b, "device", torch.device("cuda"))
    # per token: KV 2*2*2*16*4 = 512 bytes, prefill activations (3*128 + 4*64)*4 = 2560 bytes
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (100_000_000, 200_000_000))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: 0)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: 0)
    assert b._batch_size(100) == int(0.8 * 100_000_000 // (3072 * 100)) == 260
    # the allocator's cached but unused blocks (the last batch's KV cache) count as free
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (40_000_000, 200_000_000))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: 70_000_000)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: 10_000_000)
    assert b._batch_size(100) == 260
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (10**12, 10**12))
    assert b._batch_size(100) == 512  # capped
    b.requested_batch_size = 3
    assert b._batch_size(100) == 3


def test_out_of_memory_halves_an_automatic_batch_and_keeps_every_text(tiny_llama, monkeypatch):
    import torch

    from comptrust.errors import BackendError

    b = HFBackend.from_path(tiny_llama, batch_size=8)
    b.scheduler = "static"
    rows = _rows(GenParams(max_tokens=6, temperature=1.0, n=2, seed=3), n_prompts=4, draws=2)
    expected = _texts(b, rows)
    real = HFBackend._generate_batch
    sizes = []

    def small_memory(self, prompts, *args):
        sizes.append(len(prompts))
        if len(prompts) > 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, prompts, *args)

    monkeypatch.setattr(HFBackend, "_generate_batch", small_memory)
    b.requested_batch_size = None  # automatic: 16 on CPU
    assert _texts(b, rows) == expected
    assert sizes[:3] == [8, 4, 2] and b.oom_retries == 2 and sum(sizes[2:]) == 8
    b.requested_batch_size = 4  # the user's choice is kept: a clear error instead
    with pytest.raises(BackendError, match="out of memory on a batch of 4.*smaller --batch-size"):
        b.generate(rows)


def test_gpu_batches_grow_as_prompts_get_shorter(tiny_llama, monkeypatch):
    import torch

    b = HFBackend.from_path(tiny_llama)
    b.scheduler = "static"
    monkeypatch.setattr(b, "device", torch.device("cuda"))
    # room for 3072 * 1000 bytes / 0.8: tokens_per_row 40 -> 25 rows, 20 -> 50 rows
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (3072 * 1000 / 0.8, 0))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: 0)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: 0)
    sizes = []
    monkeypatch.setattr(HFBackend, "_encode", lambda self, prompt: [5] * int(prompt.split("|")[1]))
    monkeypatch.setattr(HFBackend, "_generate_batch", lambda self, prompts, seeds, *a: sizes.append(
        (len(prompts), max(map(len, prompts)))) or [None] * len(prompts))
    monkeypatch.setattr(HFBackend, "prompt_text", lambda self, messages: messages[0]["content"])
    params = GenParams(max_tokens=10)
    rows = [GenRow(({"role": "user", "content": f"p|{30 if i < 30 else 10}"},), params, 0, i) for i in range(100)]
    b.generate(rows)
    # 30 long prompts then 70 short: batches sized by their own longest prompt
    assert sizes == [(25, 30), (25, 30), (50, 10)]


@pytest.mark.parametrize(("temperature", "top_p", "expected"), [
    (1.0, 1.0, [0.5, 0.3, 0.15, 0.05]),
    (0.5, 1.0, [0.25 / 0.365, 0.09 / 0.365, 0.0225 / 0.365, 0.0025 / 0.365]),  # p^2, renormalised
    (1.0, 0.7, [0.625, 0.375, 0.0, 0.0]),  # nucleus: 0.5 + 0.3 covers 0.7, the rest is dropped
])
def test_row_sampler_draws_follow_temperature_and_top_p(temperature, top_p, expected):
    import math

    import torch

    from comptrust.backends.sampling import RowSampler

    rows = 4000
    scores = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log().repeat(rows, 1)
    sampler = RowSampler(list(range(rows)), temperature, top_p, "cpu")
    out = sampler(None, scores)
    assert torch.isinf(out).sum(-1).eq(3).all()  # exactly one token left per row
    tokens = out.argmax(-1)
    for token, p in enumerate(expected):
        share = (tokens == token).float().mean().item()
        assert abs(share - p) <= 4 * math.sqrt(p * (1 - p) / rows) + 1e-12, (token, share, p)
    # a row's draw depends on its own seed only: alone, or at another position in another batch
    alone = RowSampler([17], temperature, top_p, "cpu")(None, scores[:1]).argmax(-1)
    elsewhere = RowSampler([5, 17], temperature, top_p, "cpu")(None, scores[:2]).argmax(-1)
    assert alone.item() == tokens[17].item() == elsewhere[1].item()


def test_row_sampler_uses_a_fresh_uniform_each_step():
    import torch

    from comptrust.backends.sampling import RowSampler

    scores = torch.zeros(1, 1000)  # uniform over 1000 tokens
    sampler = RowSampler([3], 1.0, 1.0, "cpu")
    draws = [sampler(None, scores).argmax(-1).item() for _ in range(5)]
    assert len(set(draws)) == 5


def test_splitmix64_uniforms_equal_the_reference_generator():
    import torch

    from comptrust.backends.sampling import splitmix64_uniforms

    def splitmix64(seed: int, n: int) -> int:  # the published algorithm, in Python integers
        mask = (1 << 64) - 1
        z = (seed + n * 0x9E3779B97F4A7C15) & mask
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    seeds = [0, 1, 2**63 - 1, 1234567890123456789]
    u = splitmix64_uniforms(torch.tensor(seeds)[:, None], counter_start=700, width=9)
    for r, seed in enumerate(seeds):
        for j in range(9):
            assert u[r, j].item() == ((splitmix64(seed, 700 + j + 1) >> 11) + 0.5) * 2.0 ** -53
    assert 0 < u.min().item() and u.max().item() < 1
    counters = [0, 49152 * 3, 2**40 + 5, 7]  # one counter per row, as continuous batching passes them
    u = splitmix64_uniforms(torch.tensor(seeds)[:, None], torch.tensor(counters)[:, None], width=9)
    for r, (seed, counter) in enumerate(zip(seeds, counters, strict=True)):
        for j in range(9):
            assert u[r, j].item() == ((splitmix64(seed, counter + j + 1) >> 11) + 0.5) * 2.0 ** -53


def test_race_draws_the_argmax_of_p_over_exponentials_from_the_row_streams():
    """The race's shortcuts (the cached Weyl steps, argmin of p / log u) pick the textbook race's token."""
    import torch

    from comptrust.backends.sampling import next_tokens, race, seed_tensor, splitmix64_uniforms

    torch.manual_seed(0)
    rows, vocab = 6, 300
    scores = torch.randn(rows, vocab) * 4
    scores[:, 7] = 9.0  # one dominant token: top-p 0.5 then keeps a short list, top-p 0.9 a longer one
    seeds = seed_tensor([5, 2**62 + 11, 0, 77, 123456789, 2**63 - 1], "cpu")
    steps = torch.tensor([0, 3, 9, 1, 40, 2])[:, None]
    for temperature, top_p in ((1.0, 1.0), (0.7, 1.0), (1.0, 0.9), (0.3, 0.5)):
        probs = torch.softmax(scores / temperature, dim=-1)
        if top_p < 1.0:
            sorted_p, order = probs.sort(dim=-1, descending=True)
            sorted_p[sorted_p.cumsum(-1) - sorted_p > top_p] = 0.0
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
        exponentials = -torch.log(splitmix64_uniforms(seeds, steps * vocab, vocab))
        expected = (probs.double() / exponentials).argmax(-1)
        got = race(scores, temperature, top_p, seeds, steps * vocab)[:, 0]
        assert got.tolist() == expected.tolist()
        assert next_tokens(scores, seeds, steps, [temperature] * rows, [top_p] * rows).tolist() == expected.tolist()
    mixed = next_tokens(scores, seeds, steps, [1.0, 0.0, 1.0, 0.0, 1.0, 1.0], [1.0] * rows)
    greedy = scores.argmax(-1)
    assert (mixed[1].item(), mixed[3].item()) == (greedy[1].item(), greedy[3].item())  # greedy rows: the argmax
    assert mixed[0].item() == race(scores, 1.0, 1.0, seeds, steps * vocab)[0, 0].item()


def test_mmlu_log_likelihoods_halve_an_automatic_batch_after_out_of_memory(tiny_llama, monkeypatch):
    import torch

    import comptrust.backends.hf.loglik as loglik
    from comptrust.errors import BackendError

    b = HFBackend.from_path(tiny_llama)
    prompts, choices = ["Question one? Answer:", "Question two? Answer:"], [" A", " B"]
    expected = b.choice_logprobs(prompts, choices)
    real, sizes = loglik.hf_choice_logprobs, []

    def small_memory(model, tokenizer, prompts, choices, batch_size, prefixes):
        sizes.append(batch_size)
        if batch_size > 4:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real(model, tokenizer, prompts, choices, batch_size=batch_size, prefixes=prefixes)

    monkeypatch.setattr(loglik, "hf_choice_logprobs", small_memory)
    assert b.choice_logprobs(prompts, choices) == expected and sizes == [16, 8, 4]
    b.requested_batch_size = 8
    with pytest.raises(BackendError, match="out of memory on a batch of 8"):
        b.choice_logprobs(prompts, choices)
