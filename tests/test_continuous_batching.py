"""Continuous batching in the hf backend: rows leave when done, join when slots free, texts never change."""

from __future__ import annotations

import pytest

from comptrust.backends.base import row_seed
from comptrust.backends.hf.backend import HFBackend
from comptrust.backends.hf.continuous import ContinuousBatcher, shared_prefix_groups
from comptrust.types import GenParams, GenRow

SYSTEM = {"role": "system", "content": "You are a helpful assistant. The answer is yes or no."}


def _row(i: int, params: GenParams, draw: int = 0, system: dict | None = SYSTEM) -> GenRow:
    user = {"role": "user", "content": "Here is my statement: " + "people are good drivers. " * (1 + i % 4)}
    messages = (system, user) if system else (user,)
    return GenRow(messages, params, draw, row_seed(params.seed, f"s{i}", "h", draw))


def _mixed_rows() -> list[GenRow]:
    """Greedy and sampled rows, several draws of one prompt, different max_tokens / temperature / top-p."""
    rows = []
    for i in range(6):
        rows.append(_row(i, GenParams(max_tokens=3 + 4 * (i % 3), temperature=0.0)))
    for i in range(4):
        params = GenParams(max_tokens=12, temperature=(1.0, 0.7)[i % 2], top_p=(1.0, 0.9)[i // 2], n=3, seed=5)
        rows += [_row(10 + i, params, draw) for draw in range(3)]
    rows.append(_row(20, GenParams(max_tokens=9, temperature=1.0, seed=2), system=None))
    return rows


@pytest.fixture(scope="module")
def backend(tiny_llama):
    return HFBackend.from_path(tiny_llama, batch_size=3, dtype="float32")  # module scope: before the float32 pin


def _texts(backend, rows, scheduler="continuous", batch_size=3):
    backend.scheduler, backend.requested_batch_size = scheduler, batch_size
    try:
        return [c.text for c in backend.generate(rows)]
    finally:
        backend.scheduler, backend.requested_batch_size = "continuous", 3


def test_texts_equal_one_at_a_time_and_static_batches_whatever_joins_when(backend):
    rows = _mixed_rows()
    alone = [_texts(backend, [r], "static", 1)[0] for r in rows]  # the reference: each row by itself
    assert _texts(backend, rows) == alone  # 3 slots: rows join as others finish, mixed parameters
    assert _texts(backend, rows, batch_size=64) == alone  # everything in one running batch
    assert _texts(backend, list(reversed(rows)), batch_size=2) == list(reversed(alone))  # other join times
    assert _texts(backend, rows, "static", 4) == alone
    # the rows really differ: greedy rows by prompt, draws of one prompt by seed
    assert len(set(alone[6:9])) > 1


def test_a_finished_row_leaves_at_once_and_is_reported_before_longer_rows_end(backend):
    short = [_row(i, GenParams(max_tokens=2, temperature=1.0, seed=1)) for i in range(3)]
    long = [_row(i, GenParams(max_tokens=20, temperature=1.0, seed=1)) for i in range(3, 5)]
    backend.eos_ids, eos = [], backend.eos_ids  # no early stop: lengths are exactly max_tokens
    order = []
    before = backend.stats.decode_row_steps, backend.stats.decode_tokens, backend.stats.decode_forwards
    try:
        backend.requested_batch_size = 4
        out = backend.generate(long + short, on_result=lambda i, c: order.append(i))
    finally:
        backend.eos_ids, backend.requested_batch_size = eos, 3
    assert [c.completion_tokens for c in out] == [20, 20, 2, 2, 2]
    # the short rows finish (and reach the cache) while the long ones are still generating
    assert sorted(order[:3]) == [2, 3, 4] and sorted(order[3:]) == [0, 1]
    row_steps = backend.stats.decode_row_steps - before[0]
    assert row_steps == backend.stats.decode_tokens - before[1]  # no decode step computed a finished row
    # 2 x 19 + 3 x 1 decode tokens (each row's first token comes from its prefill)
    assert row_steps == 2 * 19 + 3 * 1
    # a static batch would have run 4 rows for 19 steps, then the last row for 19 more
    assert backend.stats.decode_forwards - before[2] < 19 * 2


def test_generation_stops_at_eos_and_the_row_leaves(tiny_llama, monkeypatch):
    import comptrust.backends.hf.backend as hf

    monkeypatch.setattr(hf, "MIN_SHARED_PREFIX", 10**9)  # no prefix forward: lm_head calls are prefill + decode
    b = HFBackend.from_path(tiny_llama, batch_size=2)
    eos = b.tokenizer.eos_token_id
    calls = {"n": 0}

    def eos_for_row_0_on_third_call(_module, _inputs, logits):
        calls["n"] += 1
        if calls["n"] == 3:
            logits[0, ..., eos] = 1e4  # the first running row ends; the other goes on
        return logits

    hook = b.model.lm_head.register_forward_hook(eos_for_row_0_on_third_call)
    try:
        out = b.generate([_row(0, GenParams(max_tokens=8)), _row(1, GenParams(max_tokens=8))])
    finally:
        hook.remove()
    assert sorted(c.completion_tokens for c in out) == [2, 8]  # EOS itself is not part of the text
    assert all("<|im_end|>" not in c.text for c in out)
    assert calls["n"] == 1 + 7  # one prefill, then 7 decode steps: the ended row was not computed again


def test_prefix_groups_and_draws_share_their_encoding_without_changing_text(backend, monkeypatch):
    import comptrust.backends.hf.backend as hf

    rows = _mixed_rows()
    before = backend.stats.prefilled_tokens, backend.stats.prompt_tokens
    shared = _texts(backend, rows, batch_size=4)
    prefilled = backend.stats.prefilled_tokens - before[0]
    prompt_tokens = backend.stats.prompt_tokens - before[1]
    assert prefilled < prompt_tokens / 2  # the system prompt once per group, each prompt once for its draws
    monkeypatch.setattr(hf, "MIN_SHARED_PREFIX", 10**9)
    assert _texts(backend, rows, batch_size=4) == shared


def test_long_prompts_are_prefilled_in_chunks_with_the_same_text(backend, monkeypatch):
    import comptrust.backends.hf.backend as hf

    rows = _mixed_rows()
    forwards = backend.stats.prefill_forwards
    expected = _texts(backend, rows)
    whole = backend.stats.prefill_forwards - forwards
    monkeypatch.setattr(hf, "PREFILL_TOKENS", {"cpu": 7})  # prompts (after the shared prefix) are longer
    forwards, prefilled = backend.stats.prefill_forwards, backend.stats.prefilled_tokens
    assert _texts(backend, rows) == expected
    chunked = backend.stats.prefill_forwards - forwards
    assert chunked > whole and chunked >= (backend.stats.prefilled_tokens - prefilled) / 7


def test_out_of_memory_restarts_unfinished_rows_with_fewer_slots_and_keeps_every_text(tiny_llama, monkeypatch):
    import torch

    from comptrust.errors import BackendError

    b = HFBackend.from_path(tiny_llama, batch_size=8)
    rows = _mixed_rows()
    expected = _texts(b, rows, batch_size=8)
    real = ContinuousBatcher._decode
    pools = []

    def small_memory(self):
        pools.append(self.slots)
        if len(self.active) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self)

    monkeypatch.setattr(ContinuousBatcher, "_decode", small_memory)
    monkeypatch.setattr(HFBackend, "_slot_count", lambda self, capacity: self.requested_batch_size or 8)
    b.requested_batch_size = None  # automatic
    seen = {}
    out = b.generate(rows, on_result=lambda i, c: seen.__setitem__(i, c.text))
    assert [c.text for c in out] == expected and [seen[i] for i in range(len(rows))] == expected
    assert sorted(set(pools), reverse=True) == [8, 4, 2] and b.oom_retries == 2 and b.stats.restarts > 0
    b.requested_batch_size = 4  # the user's choice is kept: a clear error instead
    with pytest.raises(BackendError, match="out of memory on a batch of 4.*smaller --batch-size"):
        b.generate(rows)


def test_models_without_a_per_row_cache_fall_back_to_static_batches(backend, monkeypatch):
    import comptrust.backends.hf.backend as hf

    assert backend._continuous() and backend.info()["scheduler"] == "continuous"
    monkeypatch.setattr(hf, "slot_compatible", lambda config: False)  # e.g. linear-attention layers
    assert not backend._continuous() and backend.info()["scheduler"] == "static"
    calls = []
    monkeypatch.setattr(ContinuousBatcher, "run", lambda *a: calls.append(a))
    assert len(backend.generate(_mixed_rows()[:3])) == 3 and not calls


def test_unknown_scheduler_is_a_one_line_config_error(tiny_llama):
    from comptrust.errors import ConfigError

    b = HFBackend.from_path(tiny_llama)
    with pytest.raises(ConfigError, match="unknown scheduler 'fifo'.*continuous, static"):
        HFBackend(b.model, b.tokenizer, b.ref, scheduler="fifo")


def test_shared_prefix_groups_save_the_most_prefill():
    system_a = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
    system_b = (1, 2, 3, 4, 50, 60, 70, 80, 90, 100)
    prompts = [system_a + (11, 12), system_a + (13,), system_b + (14, 15), system_b + (16,), (7, 7, 7)]
    groups = sorted((sorted(members), length) for members, length in shared_prefix_groups(prompts, min_shared=3))
    # the 4-token prefix common to all four would save 3 x 4 = 12 tokens; two groups of 10 save 10 + 10
    assert groups == [([0, 1], 10), ([2, 3], 10), ([4], 0)]
    assert sorted(shared_prefix_groups(prompts, min_shared=11)) == [([i], 0) for i in range(5)]
    # a prefix never covers a whole prompt: one token is left to prefill (it gives the first logits)
    assert shared_prefix_groups([(1, 2, 3), (1, 2, 3, 4)], min_shared=1) == [([0, 1], 2)]


def test_slot_cache_writes_each_row_at_its_own_column_and_copies_rows():
    import torch

    from comptrust.backends.hf.slot_cache import SlotCache

    class Config:
        num_hidden_layers, num_key_value_heads, num_attention_heads, hidden_size, head_dim = 1, 1, 1, 2, 2

    cache = SlotCache(Config(), slots=3, capacity=4, dtype=torch.float32, device="cpu")
    layer = cache.layers[0]
    # slots 1..2 take two new tokens each: row 0 at columns 0-1, row 1 (one token, one pad) at column 3
    columns = torch.tensor([[0, 1], [cache.spare_column, 3]])
    cache.plan.set(1, 3, columns, key_length=4)
    new = torch.arange(8, dtype=torch.float32).reshape(2, 1, 2, 2)
    keys, values = cache.update(new, -new, 0)
    assert keys.shape == (2, 1, 4, 2) and keys.data_ptr() == layer._keys[1].data_ptr()  # a view, no copy
    assert torch.equal(keys[0, 0, :2], new[0, 0]) and torch.equal(keys[1, 0, 3], new[1, 0, 1])
    assert torch.equal(layer._keys[2, 0, cache.spare_column], new[1, 0, 0])  # padding went to the spare column
    assert torch.equal(values[0, 0, :2], -new[0, 0])
    cache.copy_row(1, [0], 2)
    assert torch.equal(layer._keys[0, 0, :2], new[0, 0]) and layer._keys[0, 0, 2:].eq(0).all()


def test_next_tokens_draw_what_the_batch_sampler_draws_at_each_rows_own_step():
    import torch

    from comptrust.backends.sampling import RowSampler, next_tokens, seed_tensor

    torch.manual_seed(0)
    scores = torch.randn(4, 50)
    seeds = [11, 12, 13, 14]
    steps = [0, 3, 7, 2]  # rows that joined at different times
    expected = []
    for r in range(4):
        sampler = RowSampler([seeds[r]], 0.7, 0.9, "cpu")
        for _ in range(steps[r]):
            sampler(None, scores[r:r + 1])  # earlier steps of this row
        expected.append(sampler(None, scores[r:r + 1]).argmax(-1).item())
    got = next_tokens(scores, seed_tensor(seeds, "cpu"), torch.tensor(steps)[:, None], [0.7] * 4, [0.9] * 4)
    assert got.tolist() == expected
    # a greedy row in the same batch takes the argmax; the sampled rows are unchanged
    mixed = next_tokens(scores, seed_tensor(seeds, "cpu"), torch.tensor(steps)[:, None], [0.7, 0.0, 0.7, 0.7],
                        [0.9] * 4)
    assert mixed.tolist() == [expected[0], scores[1].argmax().item(), expected[2], expected[3]]


def test_gpu_slot_count_fits_the_pool_and_one_prefill_chunk_in_free_memory(tiny_llama, monkeypatch):
    import torch

    import comptrust.backends.hf.backend as hf

    b = HFBackend.from_path(tiny_llama)  # float32: KV 512 bytes/token, prefill activations 2560 bytes/token
    monkeypatch.setattr(b, "device", torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (500_000_000, 10**9))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: 0)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: 0)
    vocab = b.model.config.vocab_size
    budget = 0.8 * 500_000_000 - hf.PREFILL_TOKENS["cuda"] * 2560 - 512 * vocab * 8
    assert b._slot_count(1000) == min(512, int(budget // (512 * 1001)))
    assert b._slot_count(100_000) == int(budget // (512 * 100_001)) < b._slot_count(1000)
    b.requested_batch_size = 5
    assert b._slot_count(1000) == 5


def test_cpu_slot_count_is_capped_and_fits_a_quarter_of_free_ram(tiny_llama, monkeypatch):
    import comptrust.backends.hf.backend as hf

    b = HFBackend.from_path(tiny_llama)  # float32 on CPU: KV 512 bytes/token
    monkeypatch.setattr(hf, "available_host_memory", lambda: 16 * 2**30)
    assert b._slot_count(1000) == hf.CPU_MAX_SLOTS == 32  # plenty of memory: the measured sweet spot
    monkeypatch.setattr(hf, "available_host_memory", lambda: 4_000_000)
    assert b._slot_count(1000) == int(0.25 * 4_000_000 // (512 * 1001)) == 1  # little free memory: one slot, never zero
    monkeypatch.setattr(hf, "available_host_memory", lambda: 40_000_000)
    assert b._slot_count(1000) == 19


def test_gpu_pools_get_more_slots_as_rows_get_shorter(tiny_llama, monkeypatch):
    import torch

    b = HFBackend.from_path(tiny_llama)
    monkeypatch.setattr(b, "device", torch.device("cuda"))
    monkeypatch.setattr(HFBackend, "_slot_count", lambda self, capacity: self.requested_batch_size or
                        10_000 // capacity)
    pools = []

    def run(self, requests, on_finish):
        pools.append((self.slots, sorted({r.need for r in requests})))
        for r in requests:
            on_finish(r, [5], True)

    monkeypatch.setattr(ContinuousBatcher, "run", run)
    monkeypatch.setattr(HFBackend, "_encode", lambda self, prompt: [5] * int(prompt.split("|")[1]))
    monkeypatch.setattr(HFBackend, "prompt_text", lambda self, messages: messages[0]["content"])
    lengths = [390, 300, 190, 150, 90, 10]  # + max_tokens 10: needs 400, 310, 200, 160, 100, 20
    rows = [GenRow(({"role": "user", "content": f"p|{n}"},), GenParams(max_tokens=10), 0, i)
            for i, n in enumerate(lengths)]
    assert len(b.generate(rows)) == 6
    assert pools == [(25, [310, 400]), (50, [160, 200]), (100, [100]), (500, [20])]
    b.requested_batch_size = 4  # a chosen batch size: one pool
    pools.clear()
    b.generate(rows)
    assert pools == [(4, [20, 100, 160, 200, 310, 400])]
