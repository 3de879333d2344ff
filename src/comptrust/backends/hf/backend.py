"""Batched generation with transformers: continuous batching, shared prefixes, per-row seeds.

Why not one prompt at a time (as the reference implementation does)?  Batching
is the single largest speed-up available on any hardware.  Why continuous
batching (``backends/hf/continuous.py``) rather than static batches?  With EOS on,
answers end at very different lengths; a static batch computes its finished rows
until the longest ends, while here a finished row leaves at once and a waiting
row takes its slot.  Static batches (``scheduler="static"``: length buckets, left
padding, ``model.generate``) remain for models whose cache cannot be kept per row
(sliding-window or linear-attention layers) and as the benchmarks' yardstick.
Why a per-row sampler?  With one global RNG a sample's text would depend on which other
prompts shared its batch; here each (sample, draw) owns a ``torch.Generator``
seeded from the run seed, so the same seed gives the same text whatever the
batch size, up to floating-point differences between padded and unpadded
matrix products (see docs/reproducibility.md).
"""

from __future__ import annotations

import functools
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from comptrust.backends.base import OnResult
from comptrust.backends.hf import loglik  # a module: tests replace loglik.hf_choice_logprobs
from comptrust.backends.hf.continuous import ContinuousBatcher, Request, SchedulerStats
from comptrust.backends.hf.cpu_attention import cpu_attention, kv_cache_dtype
from comptrust.backends.hf.kv_quant import parse_kv_cache, quantized_cache
from comptrust.backends.hf.quantized_forward import describe_activation_quantization, prepare_quantized_forward
from comptrust.backends.hf.slot_cache import reserved_cache, slot_compatible
from comptrust.backends.sampling import SAMPLER, RowSampler
from comptrust.chat import choose_template, prompt_token_ids, render
from comptrust.divergence import hf_teacher_force
from comptrust.errors import BackendError, ConfigError
from comptrust.model_files import weights_fingerprint
from comptrust.models import ModelRef, load_causal_lm, resolve_model
from comptrust.runtime.quiet import quiet_transformers
from comptrust.types import Completion, GenRow

CPU_DEFAULT_BATCH = 16
# Continuous batching on a CPU: decode cost per row keeps falling up to ~32 rows (SmolLM2 on 2 cores;
# docs/benchmarks.md, "End to end, and where the time went"), and the pool's KV cache may take
# at most this share of the memory available when it starts.
CPU_MAX_SLOTS = 32
CPU_KV_FRACTION = 0.25
GPU_MAX_BATCH = 512
GPU_MEMORY_FRACTION = 0.8  # of the memory free after loading, for the batch's KV cache and activations
MIN_SHARED_PREFIX = 8  # shorter common prefixes are not worth a separate forward pass
PREFILL_TOKENS = {"cpu": 2048, "cuda": 8192}  # padded prompt tokens per prefill forward (continuous batching)
SCHEDULERS = ("continuous", "static")


DTYPES = ("auto", "float32", "bfloat16", "float16")


def choose_dtype(device: str, requested: str | None = None) -> Any:
    """The compute dtype: bfloat16 on GPUs and on CPUs with bf16 matmul units (AMX or AVX512-BF16), else float32.

    With AMX or AVX512-BF16, bf16 batched generation and prefill run much faster than fp32 on the
    CPUs measured (docs/benchmarks.md, "Generation (issue 2)" and "End to end, and where the
    time went"); without either, bf16 runs in slow emulation.  ``--dtype`` or
    ``$COMPTRUST_DTYPE`` override the choice; the dtype is part of the backend fingerprint, so
    cached texts never mix across dtypes.
    """
    import torch

    name = requested or os.environ.get("COMPTRUST_DTYPE") or "auto"
    if name not in DTYPES:
        raise ConfigError(f"unknown dtype {name!r}", f"choose one of: {', '.join(DTYPES)}")
    if name != "auto":
        return getattr(torch, name)
    if device != "cpu":
        return torch.bfloat16
    return torch.bfloat16 if cpu_has_bf16_matmul() else torch.float32


def cpu_has_bf16_matmul() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (AMX tiles or AVX512-BF16)."""
    import torch

    return any(getattr(torch.cpu, probe, lambda: False)()
               for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))


def available_host_memory() -> int:
    """Bytes of RAM free now (Linux); half the physical memory where the OS does not say."""
    page = os.sysconf("SC_PAGE_SIZE")
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * page
    except (ValueError, OSError):  # macOS has no SC_AVPHYS_PAGES
        return os.sysconf("SC_PHYS_PAGES") * page // 2


def position_limit(model: Any) -> int | None:
    """Positions a model with a learned position table can take (OPT: 2048), None for rotary/ALiBi models."""
    import torch

    inputs = model.get_input_embeddings()
    limits = [module.num_embeddings - int(getattr(module, "offset", 0))
              for name, module in model.named_modules()
              if isinstance(module, torch.nn.Embedding) and module is not inputs
              and name.rsplit(".", 1)[-1] in ("embed_positions", "wpe", "position_embeddings")]
    return min(limits) if limits else None


def common_prefix_length(prompts: list[list[int]]) -> int:
    """Tokens all prompts share at the start, leaving at least one token of each to feed generate()."""
    limit = min(len(p) for p in prompts) - 1
    first = prompts[0]
    n = 0
    while n < limit and all(p[n] == first[n] for p in prompts):
        n += 1
    return n


class HFBackend:
    """A transformers causal LM behind the :class:`~comptrust.backends.base.Backend` protocol."""

    name = "hf"

    def __init__(self, model: Any, tokenizer: Any, ref: ModelRef, chat_template: str = "model",
                 batch_size: int | None = None, weights_hash: str | None = None,
                 scheduler: str = "continuous", kv_cache: str | None = None) -> None:
        """``weights_hash`` names weights that exist only in memory (benchmarks); else the folder's files are hashed.

        ``scheduler``: "continuous" (the default, where the model allows it) or "static" batches; both
        give the same texts (tested), so it is not part of the fingerprint.  ``kv_cache`` ("int4"/"int2"):
        a quantized KV cache (backends/hf/kv_quant.py), which runs static batches.
        """
        chat_template, self.chat_template_warning = choose_template(chat_template, tokenizer)  # raw if none
        if scheduler not in SCHEDULERS:
            raise ConfigError(f"unknown scheduler {scheduler!r}", f"choose one of: {', '.join(SCHEDULERS)}")
        self.scheduler = scheduler
        self.model = model
        self.tokenizer = tokenizer
        self.ref = ref
        self.chat_template = chat_template
        self.requested_batch_size = batch_size
        self.device = next(model.parameters()).device
        self.weights_hash = weights_hash or weights_fingerprint(ref.path)
        self.fingerprint = (f"hf-{self.weights_hash}-{chat_template}-{str(model.dtype).replace('torch.', '')}"
                            f"-{SAMPLER}")
        self.kv_quant = parse_kv_cache(kv_cache)
        if self.kv_quant is not None:  # quantized-cache texts never share cache keys with the plain cache
            self.fingerprint += f"-{self.kv_quant.tag}"
        self.eos_ids = self._eos_ids()
        self.oom_retries = 0  # automatic batches halved after running out of memory
        self.stats = SchedulerStats()  # continuous batching's running totals (prefill/decode time, rows computed)
        self.timings: dict[str, float] = {}  # from_path: when loading began, seconds of imports, resolve, load
        self._loglik_prefixes: dict[tuple[int, ...], Any] = {}  # MMLU: the current subject's encoded demonstrations

    @classmethod
    def from_path(cls, spec: str | Path, batch_size: int | None = None, chat_template: str | None = None,
                  device: str | None = None, allow_pickle: bool = False, dtype: str | None = None,
                  scheduler: str = "continuous", kv_cache: str | None = None) -> HFBackend:
        """Resolve ``spec`` (folder, GGUF, alias or hub id) and load it for generation."""
        import time

        if scheduler not in SCHEDULERS:  # before loading gigabytes
            raise ConfigError(f"unknown scheduler {scheduler!r}", f"choose one of: {', '.join(SCHEDULERS)}")
        started_at, started = time.time(), time.perf_counter()
        import torch
        from transformers import AutoTokenizer

        quiet_transformers()
        imported = time.perf_counter()
        ref = resolve_model(str(spec), allow_pickle=allow_pickle)
        resolved = time.perf_counter()
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        torch_dtype = choose_dtype(device, dtype)
        try:
            tokenizer = AutoTokenizer.from_pretrained(ref.path, padding_side="left")
            # On a GPU the weights load straight into its memory (a 13B model would otherwise pass
            # through 26 GB of host memory first).
            placement = {"device_map": device} if device != "cpu" else {}
            model = load_causal_lm(ref.path, dtype=torch_dtype, use_safetensors=not allow_pickle, **placement)
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot load the model in {ref.path} ({str(exc).splitlines()[0]})",
                               "check that the folder holds a complete Hugging Face causal LM") from exc
        except (ImportError, RuntimeError) as exc:  # a quantizer's package or GPU is missing: its own words say which
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise BackendError(f"transformers cannot load {ref.path} here: {first}",
                               "install what it names, or evaluate the checkpoint's base model on this machine"
                               ) from exc
        if not placement:
            model.to(device)
        model.eval()
        prepare_quantized_forward(model, torch_dtype)  # FP8/INT8/FP4 activations stay quantized
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        backend = cls(model, tokenizer, ref, chat_template or "model", batch_size, scheduler=scheduler,
                      kv_cache=kv_cache)
        loaded = time.perf_counter()
        # The weights hash (in __init__) reads every file: it belongs to loading.
        backend.timings = {"load_started_at": started_at, "imports": imported - started,
                           "model_resolve": resolved - imported, "model_load": loaded - resolved}
        return backend

    # ---- protocol ---------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        import torch
        import transformers

        return {
            "backend": self.name, "fingerprint": self.fingerprint, "name": self.ref.name,
            "path": str(self.ref.path), "source": self.ref.source, "weights_sha256": self.weights_hash,
            "chat_template": self.chat_template, "chat_template_warning": self.chat_template_warning,
            "dtype": str(self.model.dtype), "device": str(self.device),
            "batch_size": self.requested_batch_size or "auto", "compression": self.ref.manifest(),
            "scheduler": self.scheduler if self._continuous() else "static",
            "activation_quantization": describe_activation_quantization(self.model),
            "kv_cache": self.kv_quant.to_json() if self.kv_quant else None,
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        }

    def prompt_text(self, messages: Sequence[dict[str, str]]) -> str:
        return render(messages, self.chat_template, self.tokenizer)

    def generate(self, rows: Sequence[GenRow], on_result: OnResult | None = None) -> list[Completion]:
        """Complete every row, calling ``on_result(i, completion)`` the moment row ``i`` ends.

        Both schedulers attend alike (``cpu_attention``: the same numbers on a CPU), so their texts agree.
        """
        self._check_positions(rows)
        continuous = self._continuous()  # before cpu_attention renames the attention implementation
        with cpu_attention(self.model):
            if continuous:
                return self._generate_continuous(rows, on_result)
            return self._generate_static(rows, on_result)

    def _check_positions(self, rows: Sequence[GenRow]) -> None:
        """A one-line error, before any work, where a row needs positions a learned-position model lacks.

        OPT and GPT-2 look each position up in a table of ``max_position_embeddings`` rows: a prompt
        plus its new tokens past the table ended in "IndexError: index out of range in self" mid-run.
        Rotary models have no such table and are not checked (llamacpp checks its context likewise).
        """
        limit = position_limit(self.model)
        if limit is None:
            return
        for row in rows:
            prompt = len(self._encode(self.prompt_text(row.messages)))
            if prompt + row.params.max_tokens > limit:
                hint = ("pass a smaller --max-new-tokens" if prompt < limit else
                        "leave this perspective out (--perspectives) or evaluate a model with a longer context")
                raise BackendError(f"a prompt of {prompt} tokens + {row.params.max_tokens} new tokens exceeds the "
                                   f"{limit} positions {type(self.model).__name__} has learned", hint)

    def _continuous(self) -> bool:
        """Whether this model can run continuous batching (else static batches).

        It needs every layer's cache kept per row (full or per-layer sliding-window attention, see
        ``kv_cache.slot_compatible``) and an
        attention implementation that takes a 4-D mask (SDPA or eager).
        A quantized KV cache (``--kv-cache``) keeps KIVI's batch-wide residual window, which the per-row
        slots do not implement: it runs static batches.
        """
        attention = getattr(self.model.config, "_attn_implementation", "sdpa")
        return (self.scheduler == "continuous" and self.kv_quant is None and slot_compatible(self.model.config)
                and attention in ("sdpa", "eager"))

    def _generate_continuous(self, rows: Sequence[GenRow], on_result: OnResult | None) -> list[Completion]:
        import torch

        results: list[Completion | None] = [None] * len(rows)
        pending = {i: Request(i, tuple(self._encode(self.prompt_text(r.messages))), r.params.max_tokens,
                              r.params.temperature, r.params.top_p, r.row_seed) for i, r in enumerate(rows)}

        def finished(request: Request, tokens: list[int], _eos: bool) -> None:
            completion = Completion(text=self.tokenizer.decode(tokens, skip_special_tokens=False),
                                    prompt_tokens=len(request.prompt), completion_tokens=len(tokens))
            results[request.index] = completion
            del pending[request.index]
            if on_result:
                on_result(request.index, completion)

        cap = None  # slots after running out of memory
        while pending:
            for tier in self._tiers([pending[i] for i in sorted(pending)]):
                slots = cap or self._slot_count(max(r.need for r in tier))
                batcher = ContinuousBatcher(self.model, self.eos_ids, slots,
                                            PREFILL_TOKENS.get(self.device.type, 8192), MIN_SHARED_PREFIX,
                                            self.tokenizer.pad_token_id)
                try:
                    batcher.run(tier, finished)
                except torch.OutOfMemoryError as exc:
                    # Rows finished so far were reported; the rest restart from their prompts with fewer
                    # slots (same seeds, so the same texts).
                    cap = self._smaller_batch_after(exc, slots)
                    batcher.stats.restarts += len(pending)
                    break
                finally:
                    self.stats.add(batcher.stats)
        return [r for r in results if r is not None]

    def _tiers(self, requests: list[Request]) -> list[list[Request]]:
        """Requests in pools of similar length, longest first (a GPU pool's slots are sized for its longest row).

        A new pool starts where rows need at most half the columns of the current pool's longest, so
        it holds about twice the rows; at each change the last rows of a pool finish while no row
        joins (fewer rows per step, none computed for nothing).  One pool on a CPU or with a chosen
        batch size, where the slot count does not depend on length.
        """
        if self.requested_batch_size or self.device.type != "cuda":
            return [requests]
        tiers: list[list[Request]] = []
        for r in sorted(requests, key=lambda r: -r.need):
            if not tiers or 2 * r.need <= tiers[-1][0].need:
                tiers.append([])
            tiers[-1].append(r)
        return tiers

    def _generate_static(self, rows: Sequence[GenRow], on_result: OnResult | None) -> list[Completion]:
        """Static batches: rows with equal decoding parameters share ``model.generate`` calls."""
        import torch

        results: list[Completion | None] = [None] * len(rows)
        encoded = [self._encode(self.prompt_text(r.messages)) for r in rows]
        groups: dict[tuple[int, float, float], list[int]] = defaultdict(list)
        for i, row in enumerate(rows):
            groups[(row.params.max_tokens, row.params.temperature, row.params.top_p)].append(i)
        for (max_tokens, temperature, top_p), idxs in groups.items():
            idxs.sort(key=lambda i: -len(encoded[i]))  # length buckets: similar lengths share a batch
            start, cap = 0, len(idxs)
            while start < len(idxs):
                # Each batch is sized for its own longest prompt: shorter prompts come later, in larger batches.
                batch = min(cap, self._batch_size(len(encoded[idxs[start]]) + max_tokens))
                chunk = idxs[start:start + batch]
                try:
                    texts = self._generate_batch([encoded[i] for i in chunk], [rows[i].row_seed for i in chunk],
                                                 max_tokens, temperature, top_p)
                except torch.OutOfMemoryError as exc:
                    cap = self._smaller_batch_after(exc, len(chunk))
                    continue
                for i, completion in zip(chunk, texts, strict=True):
                    results[i] = completion
                    if on_result:
                        on_result(i, completion)
                start += len(chunk)
        return [r for r in results if r is not None]

    def choice_logprobs(self, prompts: list[str], choices: list[str]) -> list[list[float]]:
        """``LoglikelihoodBackend``: log p(choice | raw prompt), lm-eval conventions (benign MMLU)."""
        import torch

        batch = self.requested_batch_size or CPU_DEFAULT_BATCH
        while True:
            try:
                return loglik.hf_choice_logprobs(self.model, self.tokenizer, prompts, choices, batch_size=batch,
                                                 prefixes=self._loglik_prefixes)
            except torch.OutOfMemoryError as exc:  # long few-shot prompts: halve an automatic batch
                self._loglik_prefixes.clear()
                batch = self._smaller_batch_after(exc, batch)

    def teacher_force(self, requests: list[Any], k: int) -> list[Any]:
        """Top-``k`` and requested log-probabilities at each response token (divergence from dense).

        A sequence past a learned position table (OPT) is a one-line error before any forward pass,
        as in :meth:`_check_positions`.
        """
        limit = position_limit(self.model)
        longest = max((len(r.ids) for r in requests), default=0)
        if limit is not None and longest > limit:
            raise BackendError(f"a dense response to score by teacher forcing is {longest} tokens long, past the "
                               f"{limit} positions {type(self.model).__name__} has learned",
                               "compare with a dense run of this model's own family (its responses fit its "
                               "positions), or leave that perspective out (--perspectives)")
        return hf_teacher_force(self.model, requests, k)

    # ---- internals --------------------------------------------------------------------

    def _eos_ids(self) -> list[int]:
        ids = self.model.generation_config.eos_token_id
        ids = [ids] if isinstance(ids, int) else list(ids or [])
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in ids:
            ids.append(self.tokenizer.eos_token_id)
        return ids

    def _encode(self, prompt: str) -> list[int]:
        return prompt_token_ids(prompt, self.chat_template, self.tokenizer)

    def _batch_size(self, tokens_per_row: int) -> int:
        """Rows of a static batch whose rows hold ``tokens_per_row`` positions (prefill of all of them at once)."""
        if self.requested_batch_size:
            return self.requested_batch_size
        if self.device.type != "cuda":
            return CPU_DEFAULT_BATCH
        kv_per_token, activations_per_token = self._bytes_per_token()
        # The reserved KV cache is allocated once (no copy per step), so most of the free memory can
        # hold it; the rest is left to the allocator's fragmentation and the logits.
        fit = int(self._free_memory() * GPU_MEMORY_FRACTION
                  // max(1, (kv_per_token + activations_per_token) * tokens_per_row))
        return max(1, min(GPU_MAX_BATCH, fit))

    def _slot_count(self, capacity: int) -> int:
        """Slots of a continuous-batching pool whose rows hold up to ``capacity`` positions each.

        Unlike a static batch, only one prefill chunk (``PREFILL_TOKENS``) holds activations at a
        time, so the pool itself can take the rest of the memory budget.
        """
        if self.requested_batch_size:
            return self.requested_batch_size
        kv_per_token, activations_per_token = self._bytes_per_token()
        if self.device.type != "cuda":
            fit = int(available_host_memory() * CPU_KV_FRACTION // max(1, kv_per_token * (capacity + 1)))
            return max(1, min(CPU_MAX_SLOTS, fit))
        vocab = self.model.config.get_text_config(decoder=True).vocab_size
        prefill = PREFILL_TOKENS["cuda"] * activations_per_token + GPU_MAX_BATCH * vocab * 8  # + logits
        budget = self._free_memory() * GPU_MEMORY_FRACTION - prefill
        return max(1, min(GPU_MAX_BATCH, int(budget // max(1, kv_per_token * (capacity + 1)))))

    def _free_memory(self) -> int:
        import torch

        free, _total = torch.cuda.mem_get_info(self.device)
        # Memory PyTorch's allocator holds but no tensor uses (the previous batch's cache) is free to us,
        # though CUDA counts it as taken.
        return free + torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device)

    def _bytes_per_token(self) -> tuple[int, int]:
        """(KV cache bytes, prefill activation bytes) per token of one row."""
        cfg = self.model.config.get_text_config(decoder=True)
        heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        itemsize = self.model.dtype.itemsize
        kv_per_token = 2 * cfg.num_hidden_layers * heads * head_dim * kv_cache_dtype(self.model).itemsize
        # Prefill holds one layer's activations at a time: the MLP's gate, up and product, and
        # the attention projections.
        intermediate = getattr(cfg, "intermediate_size", None) or 4 * cfg.hidden_size
        return kv_per_token, (3 * intermediate + 4 * cfg.hidden_size) * itemsize

    def _new_cache(self, capacity: int) -> Any:
        """An empty KV cache reserved for ``capacity`` positions per row (None: transformers' default).

        With ``--kv-cache`` this is where new keys and values get quantized (backends/hf/kv_quant.py).
        """
        if self.kv_quant is not None:
            return quantized_cache(self.model.config, self.kv_quant)
        return reserved_cache(self.model.config, capacity)

    def _smaller_batch_after(self, exc: BaseException, rows: int) -> int:
        """The batch size to retry with after an out-of-memory error, or the error for the user.

        An automatic batch size is an estimate; halving it on OOM costs one batch's work and
        changes no text (each row has its own seed).  A batch size the user chose is kept and
        the error says how to change it.
        """
        import torch

        if self.requested_batch_size or rows == 1:
            raise BackendError(f"out of memory on a batch of {rows}", "pass a smaller --batch-size") from exc
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        self.oom_retries += 1
        return max(1, rows // 2)

    @functools.cached_property
    def _cache_only(self) -> dict[str, int]:
        """Forward arguments for a prefill whose logits are unused: one position, not rows x length x vocab."""
        import inspect

        return {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(self.model.forward).parameters else {}

    def _prefix_cache(self, prefix: Any, rows: int, capacity: int) -> Any:
        """KV cache of a prefix all rows share (system prompt, instructions, demonstrations), encoded once."""
        import torch

        prefix = prefix.to(self.device)
        out = self.model(input_ids=prefix, attention_mask=torch.ones_like(prefix), use_cache=True,
                         past_key_values=self._new_cache(capacity), **self._cache_only)
        cache = out.past_key_values
        cache.reorder_cache(torch.zeros(rows, dtype=torch.long, device=self.device))
        return cache

    def _shared_prefill(self, prompts: list[list[int]], input_ids: Any, attention: Any, capacity: int) -> Any:
        """Encode each distinct prompt once and share its KV cache among its draws.

        DecodingTrust samples n=25 completions per prompt; without this the prompt would be
        encoded 25 times.  Returns None (plain generate) when every prompt in the batch is
        distinct or too short.  The cache covers all prompt tokens but the last, which
        ``generate`` then feeds as usual.
        """
        import torch

        unique: dict[tuple[int, ...], int] = {}
        row_to_unique = [unique.setdefault(tuple(p), len(unique)) for p in prompts]
        if len(unique) == len(prompts) or min(len(p) for p in prompts) < 2:
            return None
        firsts = [row_to_unique.index(u) for u in range(len(unique))]
        ids = input_ids[firsts, :-1].to(self.device)
        mask = attention[firsts, :-1].to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                         past_key_values=self._new_cache(capacity), **self._cache_only)
        cache = out.past_key_values
        cache.reorder_cache(torch.tensor(row_to_unique, device=self.device))
        return cache

    def _generate_batch(self, prompts: list[list[int]], seeds: list[int], max_tokens: int,
                        temperature: float, top_p: float) -> list[Completion]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        pad_id = self.tokenizer.pad_token_id
        width = max(len(p) for p in prompts)
        shared = common_prefix_length(prompts)
        if shared < MIN_SHARED_PREFIX or self.kv_quant is not None:
            shared = 0
        # Layout: [shared prefix][padding][rest of the prompt].  With no shared prefix this is plain
        # left padding; with one, every row's prefix sits in the same columns, so its KV cache can
        # be computed once and copied to all rows.  Position ids follow the attention mask, so
        # padding in the middle changes nothing but which columns are masked.
        input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            input_ids[i, :shared] = torch.tensor(p[:shared], dtype=torch.long)
            attention[i, :shared] = 1
            input_ids[i, width - len(p) + shared:] = torch.tensor(p[shared:], dtype=torch.long)
            attention[i, width - len(p) + shared:] = 1
        config = GenerationConfig(max_new_tokens=max_tokens, do_sample=False, num_beams=1,
                                  eos_token_id=self.eos_ids, pad_token_id=pad_id)
        processors = LogitsProcessorList()
        if temperature > 0:
            processors.append(RowSampler(seeds, temperature, top_p, self.device))
        with torch.inference_mode():
            capacity = width + max_tokens
            if shared:
                cache = self._prefix_cache(input_ids[:1, :shared], len(prompts), capacity)
            elif self.kv_quant is None:  # a quantized cache quantizes the whole prompt at once, as transformers'
                cache = self._shared_prefill(prompts, input_ids, attention, capacity)
            else:
                cache = None
            if cache is None:
                cache = self._new_cache(capacity)
            out = self.model.generate(input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device),
                                      past_key_values=cache, generation_config=config, logits_processor=processors)
        completions = []
        for i, p in enumerate(prompts):
            new = out[i, width:].tolist()
            for j, tok in enumerate(new):
                if tok in self.eos_ids:
                    new = new[:j]
                    break
            text = self.tokenizer.decode(new, skip_special_tokens=False)
            completions.append(Completion(text=text, prompt_tokens=len(p), completion_tokens=len(new)))
        return completions
