"""Continuous batching for the hf backend: a finished row leaves at once and a waiting row takes its slot.

Why?  DecodingTrust's real ``max_tokens`` (150 for stereotype and toxicity) with EOS on
means answers of very different lengths; a static batch keeps computing its finished rows
until the longest one ends, and no waiting row can enter.  Here every decode step
computes exactly the rows still generating (:class:`SlotCache` keeps each row's keys and
values in its own slot, compacted so the running rows are always slots ``0..n-1``), and
as soon as slots free up the next prompts are prefilled into them (in chunks of at most
``prefill_tokens`` padded tokens per forward).

What makes a row's text independent of its batch and of when it joined: position ids,
cache columns and the attention mask are the row's own (its keys sit in columns
``0..length-1`` of its slot, as if it ran alone), and sampling uses the row's seed with its
own token index as the counter (:func:`comptrust.backends.sampling.next_tokens`).

Prefix sharing: distinct prompts that start alike (system prompt, instructions,
demonstrations) are grouped so that the tokens saved are largest
(:func:`shared_prefix_groups`); a group's prefix is encoded once (batch 1) and copied into
each member's slot, and only the rest of each prompt is prefilled.  The draws of one prompt
share its whole encoding (copied from the first draw's slot) and its first-token logits.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from comptrust.backends.hf.cpu_attention import kv_cache_dtype
from comptrust.backends.hf.slot_cache import ReservedCache, SlotCache, sliding_window
from comptrust.backends.sampling import next_tokens, seed_tensor


@dataclass(frozen=True)
class Request:
    """One completion to produce: prompt tokens and the row's own decoding parameters."""

    index: int
    prompt: tuple[int, ...]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int

    @property
    def need(self) -> int:
        """Cache columns the row can fill: its prompt and every generated token but the last."""
        return len(self.prompt) + self.max_tokens


@dataclass
class SchedulerStats:
    """What the loop computed, so a run (and the benchmarks) can say where time went."""

    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0
    prefill_forwards: int = 0
    decode_forwards: int = 0
    decode_row_steps: int = 0  # rows computed, summed over decode forwards
    decode_tokens: int = 0  # tokens those rows produced (each row's EOS included)
    first_tokens: int = 0  # tokens sampled from prefill logits
    prompt_tokens: int = 0  # prompt tokens of the finished rows
    prefilled_tokens: int = 0  # prompt tokens actually run through the model (shared ones once)
    restarts: int = 0  # rows restarted after running out of memory

    def add(self, other: SchedulerStats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def useful_fraction(self) -> float | None:
        """Generated tokens / rows computed by decode steps (1.0: no step computed a finished row)."""
        return self.decode_tokens / self.decode_row_steps if self.decode_row_steps else None


def common_length(a: Sequence[int], b: Sequence[int], leave: int = 1) -> int:
    """Leading tokens ``a`` and ``b`` share, leaving at least ``leave`` tokens of each (one to prefill)."""
    limit = min(len(a), len(b)) - leave
    n = 0
    while n < limit and a[n] == b[n]:
        n += 1
    return n


def shared_prefix_groups(prompts: Sequence[tuple[int, ...]], min_shared: int) -> list[tuple[list[int], int]]:
    """Groups of distinct prompts and the prefix each group shares, chosen to save the most prefill.

    Sorted prompts and their neighbours' common lengths form a Cartesian tree (the smallest common
    length at the root); each subtree either shares its common length (saving ``(members - 1) x
    length`` tokens) or splits into its two subtrees, whichever saves more.  Returns
    ``[(prompt indices, shared length)]``; a prompt that shares nothing is a group of one with 0.
    """
    order = sorted(range(len(prompts)), key=lambda i: prompts[i])
    if len(order) < 2:
        return [(order, 0)] if order else []
    common = [common_length(prompts[order[i]], prompts[order[i + 1]]) for i in range(len(order) - 1)]
    # Cartesian tree over ``common`` (min at the root), built with a stack in one pass.
    left: list[int | None] = [None] * len(common)
    right: list[int | None] = [None] * len(common)
    stack: list[int] = []
    for k, value in enumerate(common):
        last = None
        while stack and common[stack[-1]] > value:
            last = stack.pop()
        left[k] = last
        if stack:
            right[stack[-1]] = k
        stack.append(k)
    root = stack[0]
    # Node k covers sorted prompts lo..hi (inclusive); children split it at k | k + 1.
    span: dict[int, tuple[int, int]] = {}
    best: dict[int, int] = {}
    share: dict[int, bool] = {}
    visit = [(root, 0, len(order) - 1, False)]
    while visit:  # post-order without recursion (chains of thousands of prompts)
        k, lo, hi, expanded = visit.pop()
        if not expanded:
            span[k] = (lo, hi)
            visit.append((k, lo, hi, True))
            if left[k] is not None:
                visit.append((left[k], lo, k, False))
            if right[k] is not None:
                visit.append((right[k], k + 1, hi, False))
            continue
        split = sum(best[c] for c in (left[k], right[k]) if c is not None)
        whole = (hi - lo) * common[k] if common[k] >= min_shared else 0
        share[k] = whole > 0 and whole >= split
        best[k] = max(whole, split)
    groups: list[tuple[list[int], int]] = []
    todo: list[tuple[int | None, int, int]] = [(root, 0, len(order) - 1)]
    while todo:
        k, lo, hi = todo.pop()
        if k is None:  # a leaf: one prompt
            groups.append(([order[lo]], 0))
        elif share[k]:
            groups.append(([order[i] for i in range(lo, hi + 1)], common[k]))
        else:
            todo.append((left[k], lo, k))
            todo.append((right[k], k + 1, hi))
    return groups


@dataclass
class _Row:
    """A request in a slot: its generated tokens and how many cache columns it has filled."""

    request: Request
    length: int = 0
    tokens: list[int] = field(default_factory=list)


@dataclass
class _Job:
    """A prompt being prefilled into one slot; its other draws copy its encoding."""

    key: tuple[int, ...]
    members: list[Request] = field(default_factory=list)  # the draws admitted together; the first prefills
    slot: int = -1
    position: int = 0  # next prompt token to feed
    draws: list[int] = field(default_factory=list)  # slots of the other members


class ContinuousBatcher:
    """Runs requests through a fixed pool of slots until every one has finished.

    ``on_finish(request, tokens, finished_by_eos)`` is called the moment a row ends (EOS, which is
    not in ``tokens``, or its own ``max_tokens``).  Out-of-memory errors propagate; the rows
    finished by then have been reported, so the caller can restart the rest with fewer slots.
    """

    def __init__(self, model: Any, eos_ids: Sequence[int], slots: int, prefill_tokens: int,
                 min_shared: int, pad_id: int) -> None:
        self.model = model
        self.eos = set(eos_ids)
        self.slots = max(1, slots)
        self.prefill_tokens = max(1, prefill_tokens)
        self.min_shared = min_shared
        self.pad_id = pad_id
        self.device = next(model.parameters()).device
        self.stats = SchedulerStats()
        self._bool_mask = getattr(model.config, "_attn_implementation", "sdpa") != "eager"
        self._window = sliding_window(model.config)  # sliding-window layers get their own mask (Gemma 3)
        import inspect

        self._keep = ({"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters
                      else {})

    # ---- the loop ---------------------------------------------------------------------

    def run(self, requests: Sequence[Request], on_finish: Callable[[Request, list[int], bool], None]) -> None:
        import torch

        todo = [r for r in requests if r.max_tokens > 0]
        for r in requests:
            if r.max_tokens <= 0:
                on_finish(r, [], False)
        if not todo:
            return
        self.on_finish = on_finish
        queue, self._prefix_of = self._plan(todo)
        self._prefixes: dict[int, tuple[Any, int]] = {}  # group -> (batch-1 cache, length)
        self._left_in_group: dict[int, int] = {}
        for r in queue:
            group = self._prefix_of[r.prompt][0]
            self._left_in_group[group] = self._left_in_group.get(group, 0) + 1
        self._first_logits: dict[tuple[int, ...], Any] = {}  # prompt -> logits, while draws still wait
        self._draws_left: dict[tuple[int, ...], int] = {}
        for r in queue:
            self._draws_left[r.prompt] = self._draws_left.get(r.prompt, 0) + 1
        capacity = max(r.need for r in todo)
        self.cache = SlotCache(self.model.config, self.slots, capacity, kv_cache_dtype(self.model), self.device)
        self.active: list[_Row] = []
        waiting = deque(queue)
        admit_at = max(1, self.slots // 8)  # admit in groups: each prefill forward reads all the weights once
        try:
            with torch.inference_mode():
                while waiting or self.active:
                    free = self.slots - len(self.active)
                    if waiting and (free >= admit_at or not self.active or len(waiting) <= free):
                        self._admit([waiting.popleft() for _ in range(min(free, len(waiting)))])
                    if self.active:
                        self._decode()
        finally:  # also after running out of memory: the caller retries with a smaller pool
            self.cache = None
            self._prefixes.clear()
            self._first_logits.clear()

    def _plan(self, requests: list[Request]) -> tuple[list[Request], dict[tuple[int, ...], tuple[int, int]]]:
        """The admission order and each prompt's (group, shared prefix length).

        Groups go longest first (the pool is sized for the longest row anyway), a group's
        members one after another (its prefix is kept only until its last member is admitted),
        and the draws of a prompt together (they share its encoding).
        """
        by_prompt: dict[tuple[int, ...], list[Request]] = {}
        for r in requests:
            by_prompt.setdefault(r.prompt, []).append(r)
        prompts = list(by_prompt)
        groups = shared_prefix_groups(prompts, self.min_shared)
        prefix_of: dict[tuple[int, ...], tuple[int, int]] = {}
        ordered_groups = []
        for g, (members, length) in enumerate(groups):
            for i in members:
                prefix_of[prompts[i]] = (g, length)
            need = max(r.need for i in members for r in by_prompt[prompts[i]])
            ordered_groups.append((-need, g, members))
        queue: list[Request] = []
        for _need, _g, members in sorted(ordered_groups):
            for i in sorted(members, key=lambda i: (-len(prompts[i]), prompts[i])):
                queue += sorted(by_prompt[prompts[i]], key=lambda r: r.index)
        return queue, prefix_of

    # ---- admission and prefill ---------------------------------------------------------

    def _admit(self, requests: list[Request]) -> None:
        """Give each request a slot, prefill what is new, and sample every first token."""
        started = time.perf_counter()
        jobs: dict[tuple[int, ...], _Job] = {}
        copies: list[tuple[Request, int]] = []  # (request, running row whose slot holds the prompt)
        for r in requests:
            self._draws_left[r.prompt] -= 1
            self._left_in_group[self._prefix_of[r.prompt][0]] -= 1
            donor = self._donor(r.prompt) if r.prompt in self._first_logits and r.prompt not in jobs else None
            if donor is not None:
                copies.append((r, donor))
            else:
                jobs.setdefault(r.prompt, _Job(r.prompt)).members.append(r)
        # Slots: the rows that prefill first, longest first (a forward computes a contiguous range of
        # slots), then the other draws of their prompts, then rows copying a running row's prompt.
        order = sorted(jobs.values(), key=lambda j: -(len(j.key) - self._prefix_of[j.key][1]))
        for job in order:
            job.slot = self._add_row(job.members[0])
        for job in order:
            job.draws = [self._add_row(r) for r in job.members[1:]]
        logits: dict[tuple[int, ...], Any] = {}
        for r, donor in copies:
            slot = self._add_row(r)
            self.cache.copy_row(donor, [slot], len(r.prompt))
            self.active[slot].length = len(r.prompt)
            logits[r.prompt] = self._first_logits[r.prompt]
        logits.update(self._prefill(order))
        for group in {self._prefix_of[r.prompt][0] for r in requests}:
            if self._left_in_group[group] == 0:
                self._prefixes.pop(group, None)  # its last member is in: nobody copies it again
        for job in order:
            if job.draws:
                self.cache.copy_row(job.slot, job.draws, len(job.key))
                for slot in job.draws:
                    self.active[slot].length = len(job.key)
        for key, row_logits in logits.items():
            if self._draws_left[key] > 0:
                self._first_logits[key] = row_logits
            else:
                self._first_logits.pop(key, None)
        new = self.active[len(self.active) - len(requests):]
        self.stats.first_tokens += len(new)
        import torch

        self._step(new, torch.stack([logits[row.request.prompt] for row in new]))
        self.stats.prefill_seconds += time.perf_counter() - started

    def _add_row(self, request: Request) -> int:
        self.active.append(_Row(request))
        return len(self.active) - 1

    def _donor(self, prompt: tuple[int, ...]) -> int | None:
        """A running row with this prompt (its slot holds the prompt's encoding in columns 0..len-1)."""
        return next((slot for slot, row in enumerate(self.active) if row.request.prompt == prompt), None)

    def _prefix(self, group: int, prompt: tuple[int, ...]) -> tuple[Any, int]:
        """The group's shared prefix, encoded once (batch 1) and kept until its last member is admitted."""
        import torch

        if group not in self._prefixes:
            length = self._prefix_of[prompt][1]
            cache = ReservedCache(len(self.cache.layers), length)
            for start in range(0, length, self.prefill_tokens):  # in chunks, as every prefill
                ids = torch.tensor([prompt[start:min(length, start + self.prefill_tokens)]], device=self.device)
                mask = torch.ones((1, start + ids.shape[1]), dtype=torch.long, device=self.device)
                self.model(input_ids=ids, attention_mask=mask, past_key_values=cache, use_cache=True, **self._keep)
                self.stats.prefill_forwards += 1
            self.stats.prefilled_tokens += length
            self._prefixes[group] = (cache, length)
        return self._prefixes[group]

    def _prefill(self, jobs: list[_Job]) -> dict[tuple[int, ...], Any]:
        """Encode each job's prompt into its slot; returns each prompt's last-position logits."""
        for job in jobs:
            group, length = self._prefix_of[job.key]
            if length:
                cache, length = self._prefix(group, job.key)
                self.cache.copy_prefix(cache, [job.slot], length)
                self.active[job.slot].length = length
            job.position = length
            self.stats.prefilled_tokens += len(job.key) - length
        budget = self.prefill_tokens

        def left(job: _Job) -> int:
            return len(job.key) - job.position

        def feed(batch: list[_Job], width: int) -> Any:
            chunks = [job.key[job.position:job.position + width] for job in batch]
            out = self._forward([self.active[j.slot] for j in batch], batch[0].slot, chunks)
            for job, chunk in zip(batch, chunks, strict=True):
                job.position += len(chunk)
            return out

        for job in jobs:  # a prompt longer than the budget: all but its last chunk, alone
            while left(job) > budget:
                feed([job], budget)
                self.stats.prefill_forwards += 1
        logits: dict[tuple[int, ...], Any] = {}
        i = 0
        while i < len(jobs):  # contiguous runs of jobs whose padded rest fits the budget
            width, stop = left(jobs[i]), i + 1
            while stop < len(jobs) and (stop - i + 1) * max(width, left(jobs[stop])) <= budget:
                width = max(width, left(jobs[stop]))
                stop += 1
            out = feed(jobs[i:stop], width)
            self.stats.prefill_forwards += 1
            for b, job in enumerate(jobs[i:stop]):
                logits[job.key] = out[b]
            i = stop
        return logits

    # ---- forwards ---------------------------------------------------------------------

    def _forward(self, rows: list[_Row], start: int, chunks: list[Sequence[int]]) -> Any:
        """One forward over slots ``start..start+len(rows)``, each row fed its chunk; last-position logits.

        Chunks are left-padded to one width; padding is written to the spare column and
        attends only to its row's first new token, so it changes nothing.
        """
        import torch

        width = max(len(c) for c in chunks)
        k = len(rows)
        ids = torch.full((k, width), self.pad_id, dtype=torch.long)
        pads = torch.tensor([width - len(c) for c in chunks])[:, None]
        for b, c in enumerate(chunks):
            ids[b, width - len(c):] = torch.tensor(c, dtype=torch.long)
        lengths = torch.tensor([r.length for r in rows])[:, None]
        index = torch.arange(width)[None, :] - pads  # each token's index among its row's new tokens
        real = index >= 0
        positions = lengths + index.clamp(min=0)
        columns = torch.where(real, positions, self.cache.spare_column)
        key_length = max(r.length + len(c) for r, c in zip(rows, chunks, strict=True))
        keys = torch.arange(key_length)[None, None, :]
        mask = keys <= positions[:, :, None]
        attention = self._mask(mask[:, None])
        if self._window:  # one mask per layer type, as transformers' create_masks_for_generate makes them
            window = mask & (keys > positions[:, :, None] - self._window)
            attention = {"full_attention": attention, "sliding_attention": self._mask(window[:, None])}
        self.cache.plan.set(start, start + k, columns.to(self.device), key_length)
        out = self.model(input_ids=ids.to(self.device), attention_mask=attention,
                         position_ids=positions.to(self.device), past_key_values=self.cache, use_cache=True,
                         **self._keep)
        for r, c in zip(rows, chunks, strict=True):
            r.length += len(c)
        return out.logits[:, -1]

    def _mask(self, allowed: Any) -> Any:
        """The 4-D mask as the attention implementation wants it: boolean, or additive for eager attention."""
        import torch

        allowed = allowed.to(self.device)
        if self._bool_mask:
            return allowed
        return torch.zeros(allowed.shape, dtype=self.model.dtype, device=self.device).masked_fill_(
            ~allowed, torch.finfo(self.model.dtype).min)

    def _decode(self) -> None:
        """One token for every running row."""
        started = time.perf_counter()
        rows = list(self.active)
        logits = self._forward(rows, 0, [[r.tokens[-1]] for r in rows])
        self.stats.decode_forwards += 1
        self.stats.decode_row_steps += len(rows)
        self.stats.decode_tokens += len(rows)
        self._step(rows, logits)
        self.stats.decode_seconds += time.perf_counter() - started

    def _step(self, rows: list[_Row], scores: Any) -> None:
        """Sample each row's next token; finished rows are reported and leave their slots."""
        import torch

        seeds = seed_tensor([r.request.seed for r in rows], self.device)
        steps = torch.tensor([len(r.tokens) for r in rows], dtype=torch.long, device=self.device)[:, None]
        tokens = next_tokens(scores, seeds, steps, [r.request.temperature for r in rows],
                             [r.request.top_p for r in rows]).tolist()
        finished = []
        for row, token in zip(rows, tokens, strict=True):
            row.tokens.append(token)
            eos = token in self.eos
            if eos or len(row.tokens) >= row.request.max_tokens:
                finished.append(row)
                self.stats.prompt_tokens += len(row.request.prompt)
                self.on_finish(row.request, row.tokens[:-1] if eos else list(row.tokens), eos)
        if finished:
            self._release(finished)

    def _release(self, finished: list[_Row]) -> None:
        """Free the finished rows' slots, moving the last running rows into the gaps."""
        gone = {id(r) for r in finished}
        keep = len(self.active) - len(finished)
        gaps = [slot for slot in range(keep) if id(self.active[slot]) in gone]
        movers = [slot for slot in range(keep, len(self.active)) if id(self.active[slot]) not in gone]
        for gap, slot in zip(gaps, movers, strict=True):  # one copy per gap: the rows past the end fill them
            self.cache.copy_row(slot, [gap], self.active[slot].length)
            self.active[gap] = self.active[slot]
        del self.active[keep:]
