"""Per-row seeded sampling for batched generation, vectorized over the batch.

Why per-row streams?  With one global RNG a sample's text would depend on which
other prompts shared its batch; here each (sample, draw) has its own seed, so the
same seed gives the same text whatever the batch size (docs/reproducibility.md).
Why a per-row counter?  Under continuous batching rows join a running batch at
different times, so "step" is each row's own token index, not the batch's.
"""

from __future__ import annotations

from typing import Any

SAMPLER = "sm64race"  # in the fingerprint: cached sampled texts never mix across sampling algorithms
_GAMMA = 0x9E3779B97F4A7C15  # SplitMix64's increment
_MIX = (0xBF58476D1CE4E5B9, 0x94D049BB133111EB)  # SplitMix64's finalizer multipliers


def _int64(value: int) -> int:
    """``value`` mod 2**64 as the signed integer torch.int64 stores (int64 arithmetic wraps the same way)."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def seed_tensor(seeds: list[int], device: Any) -> Any:
    """Row seeds as the int64 column (rows x 1) the generator takes."""
    import torch

    return torch.tensor([_int64(s) for s in seeds], dtype=torch.long, device=device)[:, None]


def splitmix64_uniforms(seeds: Any, counter_start: Any, width: int) -> Any:
    """Uniforms in (0, 1): row r, column j is SplitMix64 output ``counter_start + j + 1`` of the stream ``seeds[r]``.

    Counter-based, so any row's numbers follow from its seed and the counter alone, on any device
    and in any batch.  ``seeds`` is an int64 tensor (rows x 1); ``counter_start`` an int shared by
    all rows or an int64 tensor (rows x 1), one counter per row; 53 bits per uniform, as
    ``random.random`` uses.  The Weyl term ``seed + (counter_start + j + 1) x gamma`` is computed as
    ``(j + 1) x gamma`` (kept per width and device) plus a per-row offset: the same integers mod
    2**64, one vocabulary-wide pass instead of three.
    """
    import torch

    if isinstance(counter_start, int):
        offset = seeds + _int64(counter_start * _GAMMA)
    else:
        offset = counter_start * _int64(_GAMMA) + seeds  # int64 arithmetic wraps mod 2**64
    z = _weyl_steps(width, seeds.device) + offset
    scratch = torch.empty_like(z)
    for shift, multiplier in ((30, _MIX[0]), (27, _MIX[1]), (31, None)):
        torch.bitwise_right_shift(z, shift, out=scratch)
        z.bitwise_xor_(scratch.bitwise_and_((1 << (64 - shift)) - 1))  # logical shift: drop the sign fill
        if multiplier is not None:
            z.mul_(_int64(multiplier))
    z.bitwise_right_shift_(11).bitwise_and_((1 << 53) - 1)
    return z.double().add_(0.5).mul_(2.0 ** -53)


_WEYL: dict[tuple[int, str], Any] = {}


def _weyl_steps(width: int, device: Any) -> Any:
    """``(j + 1) x gamma`` mod 2**64 for ``j < width`` (int64), computed once per width and device."""
    import torch

    key = (width, str(device))
    if key not in _WEYL:
        _WEYL[key] = torch.arange(1, width + 1, dtype=torch.long, device=device).mul_(_int64(_GAMMA))
    return _WEYL[key]


def race(scores: Any, temperature: float, top_p: float, seeds: Any, counter_start: Any) -> Any:
    """One sampled token per row (rows x 1): the exponential race over ``softmax(scores / temperature)``.

    token = argmax_j p_j / E_j with E_j = -log(u_j) draws j with probability p_j exactly; u comes
    from :func:`splitmix64_uniforms` with the row seed as the stream and ``counter_start + j`` as
    the counter.  Top-p keeps the smallest set of most likely tokens whose mass reaches ``top_p``.
    """
    import torch

    scores = scores.float()
    probs = torch.softmax(scores if temperature == 1.0 else scores / temperature, dim=-1)  # x / 1.0 is x
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        drop = sorted_p.cumsum(-1) - sorted_p > top_p
        sorted_p[drop] = 0.0
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    vocab = scores.shape[-1]
    # p / E with E = -log u is -(p / log u) exactly, so its argmax is the argmin of p / log u (one pass fewer).
    logs = splitmix64_uniforms(seeds, counter_start, vocab).log_()
    return probs.double().div_(logs).argmin(-1, keepdim=True)


def next_tokens(scores: Any, seeds: Any, steps: Any, temperatures: list[float], top_ps: list[float]) -> Any:
    """The next token of each row (a 1-D tensor), rows with their own decoding parameters and token index.

    ``scores``: last-position logits (rows x vocab); ``seeds``/``steps``: int64 (rows x 1), ``steps``
    being each row's number of tokens generated so far.  Greedy rows (temperature 0) take the
    argmax, as transformers' greedy search does; sampled rows race with the counter
    ``step x vocab``, so a row's draw is the one :class:`RowSampler` makes at that step.  Rows
    sharing a temperature and top-p are sampled together with scalar parameters (the same
    arithmetic as ``RowSampler``, bit for bit, also on GPUs where a tensor divisor would round
    differently from a scalar one).
    """
    import torch

    logits = scores.float()
    groups: dict[tuple[float, float], list[int]] = {}
    for row, (temperature, top_p) in enumerate(zip(temperatures, top_ps, strict=True)):
        if temperature > 0:
            groups.setdefault((temperature, top_p), []).append(row)
    vocab = logits.shape[-1]
    if len(groups) == 1 and len(next(iter(groups.values()))) == len(temperatures):  # every row samples alike
        (temperature, top_p), = groups
        return race(logits, temperature, top_p, seeds, steps * vocab)[:, 0]
    tokens = logits.argmax(-1)
    for (temperature, top_p), rows in groups.items():
        idx = torch.tensor(rows, device=logits.device)
        tokens[idx] = race(logits[idx], temperature, top_p, seeds[idx], steps[idx] * vocab)[:, 0]
    return tokens


class RowSampler:
    """A logits processor that samples each row from its own random stream, the whole batch at once.

    Why not ``torch.multinomial`` with one generator per row (comptrust's first sampler)?  That loop is a few
    kernel launches per row per step: thousands of launches per generated token at batch 512 on a GPU,
    and slow even at batch 16 on a CPU.  Here a step is one exponential race for
    all rows (:func:`race`) with ``step x vocab + j`` as the counter, so a row's draws never depend
    on the rest of its batch.  (Timings of both: docs/benchmarks.md, "Throughput", its "Sampler" paragraph; the race,
    unlike an inverse CDF, does not turn the last-bit differences between batch layouts into different tokens.)

    It returns scores that are -inf everywhere but the drawn token, so transformers' greedy step
    picks exactly that token.  Temperature and top-p are applied here.  The static-batch path uses
    it inside ``model.generate``; continuous batching calls :func:`next_tokens` directly.
    """

    def __init__(self, seeds: list[int], temperature: float, top_p: float, device: Any) -> None:
        self.temperature = temperature
        self.top_p = top_p
        self.seeds = seed_tensor(seeds, device)
        self.step = 0

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        tokens = race(scores, self.temperature, self.top_p, self.seeds, self.step * scores.shape[-1])
        self.step += 1
        return torch.full_like(scores, float("-inf")).scatter_(-1, tokens, 0.0)
