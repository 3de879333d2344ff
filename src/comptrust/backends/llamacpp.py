"""A GGUF evaluated with llama.cpp's own kernels (llama-cpp-python, in process).

Why not transformers' GGUF loader?  It dequantizes every tensor to floats, so a
Q4_K_M model would be evaluated with float matmuls, while llama.cpp and Ollama
multiply the quantized blocks directly (activations quantized to Q8 inside
its dot products on CPU).  Here the numbers are llama.cpp's.

Batching uses llama.cpp's multi-sequence decoding: each row of a batch is its
own sequence in one context (separate KV cells), prompts are prefilled together
and every step decodes one token for every unfinished row in one call.  Prompts
are rendered and tokenized with the model's Hugging Face tokenizer (the one
beside a comptrust GGUF, else rebuilt from the GGUF's metadata), exactly as the
hf backend does, so both backends see the same tokens.  Sampling uses the same
per-row seeded sampler as the hf backend (``sampling.RowSampler``), so a row's
draws never depend on its batch.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from comptrust.backends.base import OnResult, encode_pair
from comptrust.backends.sampling import SAMPLER, RowSampler
from comptrust.chat import choose_template, prompt_token_ids, render
from comptrust.divergence import from_log_softmax
from comptrust.errors import BackendError, ConfigError
from comptrust.gguf.header import describe_gguf
from comptrust.gguf.record import gguf_manifest
from comptrust.gguf.tokenizer import gguf_hf_tokenizer
from comptrust.gguf.tools import package_version
from comptrust.model_files import weights_fingerprint
from comptrust.models import resolve_gguf
from comptrust.runtime.quiet import quiet_transformers
from comptrust.types import Completion, GenRow

DEFAULT_BATCH = 8
CTX_ROUND = 256  # context sizes are rounded up so similar batches reuse one llama.cpp context


def import_llama_cpp() -> Any:
    try:
        import llama_cpp
        import llama_cpp._internals  # noqa: F401
        import llama_cpp._logger as llama_logger
    except ImportError:
        raise ConfigError("--backend llamacpp needs llama-cpp-python, which is not installed",
                          "run 'make install' (it builds llama-cpp-python==0.3.36 from source)") from None
    llama_logger.set_verbose(False)
    return llama_cpp


def gguf_fingerprint(path: Path) -> str:
    """SHA-256 of the GGUF file's bytes (the folder fingerprint's cache covers GGUF files too)."""
    return weights_fingerprint(path.parent, only=path.name)


class LlamaCppBackend:
    """A GGUF file behind the :class:`~comptrust.backends.base.Backend` protocol, run by llama.cpp."""

    name = "llamacpp"

    def __init__(self, gguf: Path, tokenizer: Any, label: str, chat_template: str = "model",
                 batch_size: int | None = None, threads: int | None = None, source: str = "gguf") -> None:
        chat_template, self.chat_template_warning = choose_template(chat_template, tokenizer)  # raw if none
        llama_cpp = import_llama_cpp()

        self.llama_cpp = llama_cpp
        self.gguf = gguf
        self.tokenizer = tokenizer
        self.label = label
        self.source = source
        self.chat_template = chat_template
        self.requested_batch_size = batch_size
        self.threads = threads or os.cpu_count() or 1
        self.file = describe_gguf(gguf)
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = 0 if not _gpu_offload() else -1
        try:
            self.model = llama_cpp._internals.LlamaModel(path_model=str(gguf), params=params, verbose=False)
        except ValueError as exc:
            raise BackendError(f"llama.cpp cannot load {gguf} ({exc})",
                               "check that the file is a complete GGUF of an architecture llama.cpp supports"
                               ) from None
        self.n_vocab = self.model.n_vocab()
        self.n_ctx_train = self.model.n_ctx_train()
        self.weights_hash = gguf_fingerprint(gguf)
        self.fingerprint = f"llamacpp-{self.weights_hash}-{chat_template}-{SAMPLER}"
        self._context: Any = None
        self._context_shape = (0, 0)

    @classmethod
    def from_spec(cls, spec: str, batch_size: int | None = None, chat_template: str | None = None,
                  threads: int | None = None, allow_pickle: bool = False) -> LlamaCppBackend:
        """``spec``: a .gguf file, a comptrust GGUF artifact folder, or the demo alias (its Q4_1 GGUF)."""
        gguf, label, source = resolve_gguf(spec)
        return cls(gguf, load_tokenizer(gguf), label, chat_template or "model", batch_size, threads, source)

    # ---- protocol ---------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        return {
            "backend": self.name, "fingerprint": self.fingerprint, "name": self.label, "path": str(self.gguf),
            "source": self.source, "weights_sha256": self.weights_hash, "chat_template": self.chat_template,
            "chat_template_warning": self.chat_template_warning, "dtype": self.file["gguf_type"], "gguf": self.file,
            "device": "cpu" if not _gpu_offload() else "gpu",
            "threads": self.threads, "batch_size": self.requested_batch_size or DEFAULT_BATCH,
            "compression": gguf_manifest(self.gguf),
            "versions": {"llama-cpp-python": package_version("llama-cpp-python"), "gguf": package_version("gguf")},
        }

    def prompt_text(self, messages: Sequence[dict[str, str]]) -> str:
        return render(messages, self.chat_template, self.tokenizer)

    def generate(self, rows: Sequence[GenRow], on_result: OnResult | None = None) -> list[Completion]:
        """Complete every row; rows with equal decoding parameters share batches (sorted by length)."""
        results: list[Completion | None] = [None] * len(rows)
        encoded = [prompt_token_ids(self.prompt_text(r.messages), self.chat_template, self.tokenizer) for r in rows]
        groups: dict[tuple[int, float, float], list[int]] = defaultdict(list)
        for i, row in enumerate(rows):
            groups[(row.params.max_tokens, row.params.temperature, row.params.top_p)].append(i)
        batch = self.requested_batch_size or DEFAULT_BATCH
        for (max_tokens, temperature, top_p), idxs in groups.items():
            idxs.sort(key=lambda i: -len(encoded[i]))
            for start in range(0, len(idxs), batch):
                chunk = idxs[start:start + batch]
                texts = self._generate_batch([encoded[i] for i in chunk], [rows[i].row_seed for i in chunk],
                                             max_tokens, temperature, top_p)
                for i, completion in zip(chunk, texts, strict=True):
                    results[i] = completion
                    if on_result:
                        on_result(i, completion)
        return [r for r in results if r is not None]

    def choice_logprobs(self, prompts: list[str], choices: list[str]) -> list[list[float]]:
        """``LoglikelihoodBackend`` with llama.cpp's logits, lm-eval's tokenization (benign MMLU)."""

        if not prompts:
            return []
        if not choices:
            raise BackendError("choice_logprobs needs at least one choice", "pass the answer strings to score")
        plan = []  # per prompt: [(input key, first scored position, continuation tokens)] per choice
        first: dict[tuple[int, ...], int] = {}
        for prompt in prompts:
            row = []
            for choice in choices:
                ctx, cont = encode_pair(self.tokenizer, prompt, choice)
                whole = (ctx + cont)[-(self.n_ctx_train + 1):]  # lm-eval: left-truncate to the context
                start = len(whole) - len(cont)
                if start < 1 or not cont:
                    raise BackendError("a log-likelihood request has an empty context or continuation",
                                       "check the MMLU prompts and choices")
                key = tuple(whole[:-1])
                first[key] = min(first.get(key, start), start)
                row.append((key, start, cont))
            plan.append(row)
        tables = self._score_inputs(first)
        return [[float(sum(float(tables[key][start + k][tok]) for k, tok in enumerate(cont)))
                 for key, start, cont in row] for row in plan]

    def teacher_force(self, requests: list[Any], k: int) -> list[Any]:
        """Top-``k`` and requested log-probabilities at each response token, from llama.cpp's full logits."""
        import torch

        too_long = [len(r.ids) for r in requests if len(r.ids) > self.n_ctx_train]
        if too_long:
            raise BackendError(f"a response of {too_long[0]} tokens with its prompt exceeds the model's context "
                               f"of {self.n_ctx_train}", "pass a smaller --divergence-responses or --max-new-tokens")
        out = []
        batch = self.requested_batch_size or DEFAULT_BATCH
        for begin in range(0, len(requests), batch):  # a batch's full rows at a time (positions x vocabulary)
            chunk = requests[begin:begin + batch]
            first: dict[tuple[int, ...], int] = {}
            for r in chunk:  # the input is every token but the last; position q predicts ids[q]
                key = tuple(r.ids[:-1])
                first[key] = min(first.get(key, r.start), r.start)
            tables = self._score_inputs(first)
            for r in chunk:
                table = tables[tuple(r.ids[:-1])]
                rows = torch.stack([table[q] for q in range(r.start, len(r.ids))])
                out.append(from_log_softmax(rows, k, r.support))
        return out

    # ---- internals --------------------------------------------------------------------

    def _context_for(self, n_seq: int, per_seq: int) -> Any:
        """A llama.cpp context with ``n_seq`` sequences of ``per_seq`` cells each (reused when large enough)."""
        per_seq = -(-per_seq // CTX_ROUND) * CTX_ROUND
        if self._context is not None and self._context_shape[0] >= n_seq and self._context_shape[1] >= per_seq:
            self._context.kv_cache_clear()
            return self._context
        llama_cpp = self.llama_cpp
        params = llama_cpp.llama_context_default_params()
        params.n_seq_max = n_seq
        params.n_ctx = n_seq * per_seq
        params.n_batch = params.n_ctx
        params.n_ubatch = min(512, params.n_ctx)
        params.n_threads = params.n_threads_batch = self.threads
        params.kv_unified = False  # each sequence owns per_seq cells
        params.no_perf = True
        if self._context is not None:
            self._context.close()
        self._context = llama_cpp._internals.LlamaContext(model=self.model, params=params, verbose=False)
        self._context_shape = (n_seq, per_seq)
        return self._context

    def _decode(self, ctx: Any, entries: list[tuple[int, int, int, bool]]) -> dict[tuple[int, int], Any]:
        """Decode (token, position, sequence, want_logits) entries in one call; logits by (sequence, position)."""
        import numpy as np

        batch = self.llama_cpp._internals.LlamaBatch(n_tokens=len(entries), embd=0, n_seq_max=1, verbose=False)
        raw = batch.batch
        raw.n_tokens = len(entries)
        wanted = []
        for j, (token, pos, seq, logits) in enumerate(entries):
            raw.token[j], raw.pos[j], raw.n_seq_id[j], raw.logits[j] = token, pos, 1, logits
            raw.seq_id[j][0] = seq
            if logits:
                wanted.append((j, seq, pos))
        try:
            ctx.decode(batch)
        except RuntimeError as exc:
            raise BackendError(f"llama.cpp failed to decode a batch of {len(entries)} tokens ({exc})",
                               "pass a smaller --batch-size") from None
        out = {}
        for j, seq, pos in wanted:
            ptr = ctx.get_logits_ith(j)
            out[(seq, pos)] = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()
        batch.close()
        return out

    def _generate_batch(self, prompts: list[list[int]], seeds: list[int], max_tokens: int,
                        temperature: float, top_p: float) -> list[Completion]:
        import numpy as np
        import torch

        too_long = [len(p) for p in prompts if len(p) + max_tokens > self.n_ctx_train]
        if too_long:
            raise BackendError(f"a prompt of {too_long[0]} tokens + {max_tokens} new tokens exceeds the model's "
                               f"context of {self.n_ctx_train}", "pass a smaller --max-new-tokens")
        ctx = self._context_for(len(prompts), max(len(p) for p in prompts) + max_tokens)
        last = self._decode(ctx, [(tok, pos, seq, pos == len(p) - 1)
                                  for seq, p in enumerate(prompts) for pos, tok in enumerate(p)])
        logits = np.stack([last[(seq, len(p) - 1)] for seq, p in enumerate(prompts)])
        sampler = RowSampler(seeds, temperature, top_p, "cpu") if temperature > 0 else None
        vocab = self.model.vocab
        new: list[list[int]] = [[] for _ in prompts]
        done = [False] * len(prompts)
        for step in range(max_tokens):
            scores = torch.from_numpy(logits)
            tokens = (sampler(None, scores) if sampler else scores).argmax(-1).tolist()
            entries = []
            for seq, tok in enumerate(tokens):
                if done[seq]:
                    continue
                if self.llama_cpp.llama_vocab_is_eog(vocab, tok) or tok in self._stop_ids:
                    done[seq] = True
                    continue
                new[seq].append(tok)
                if step + 1 < max_tokens:
                    entries.append((tok, len(prompts[seq]) + step, seq, True))
            if not entries:
                break
            out = self._decode(ctx, entries)
            for (seq, _pos), row in out.items():
                logits[seq] = row
        return [Completion(text=self.tokenizer.decode(toks, skip_special_tokens=False), prompt_tokens=len(p),
                           completion_tokens=len(toks)) for p, toks in zip(prompts, new, strict=True)]

    @property
    def _stop_ids(self) -> set[int]:
        eos = self.tokenizer.eos_token_id
        return {eos} if eos is not None else set()

    def _score_inputs(self, first: dict[tuple[int, ...], int]) -> dict[tuple[int, ...], dict[int, Any]]:
        """For every input, ``table[q]`` = log-softmax of the logits predicting position q (q >= first[input]).

        Several inputs share one decode call, each as its own sequence; inputs that several
        requests share (MMLU: one prompt, four one-token letters) are decoded once.
        """
        import numpy as np
        import torch

        batch = self.requested_batch_size or DEFAULT_BATCH
        out: dict[tuple[int, ...], dict[int, Any]] = {}
        order = sorted(first, key=len, reverse=True)
        for begin in range(0, len(order), batch):
            chunk = order[begin:begin + batch]
            ctx = self._context_for(len(chunk), max(len(k) for k in chunk))
            logits = self._decode(ctx, [(tok, pos, seq, pos >= first[key] - 1)
                                        for seq, key in enumerate(chunk) for pos, tok in enumerate(key)])
            for seq, key in enumerate(chunk):
                positions = range(first[key] - 1, len(key))
                rows = torch.from_numpy(np.stack([logits[(seq, p)] for p in positions]))
                table = torch.log_softmax(rows.float(), dim=-1)
                out[key] = {p + 1: table[i] for i, p in enumerate(positions)}
        return out


def _gpu_offload() -> bool:
    return os.environ.get("COMPTRUST_LLAMACPP_GPU", "") == "1"


def load_tokenizer(gguf: Path) -> Any:
    """The Hugging Face tokenizer for ``gguf``: the files beside it, else rebuilt from its metadata."""
    from transformers import AutoTokenizer

    quiet_transformers()
    folder = gguf.parent
    try:
        if (folder / "tokenizer_config.json").is_file() or (folder / "tokenizer.json").is_file():
            tokenizer = AutoTokenizer.from_pretrained(folder)
        else:
            # transformers converts a Gemma vocabulary wrongly; comptrust rebuilds it (gguf/tokenizer.py)
            tokenizer = gguf_hf_tokenizer(gguf) or AutoTokenizer.from_pretrained(folder, gguf_file=gguf.name)
            _eos_from_metadata(tokenizer, gguf)
    except (OSError, ValueError, KeyError) as exc:
        raise BackendError(f"cannot build a tokenizer for {gguf.name} ({str(exc).splitlines()[0][:160]})",
                           "put the model's tokenizer files (tokenizer.json, tokenizer_config.json) beside the "
                           ".gguf") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _eos_from_metadata(tokenizer: Any, gguf: Path) -> None:
    """GGUF metadata can leave transformers with <|im_start|> as EOS; the file's eos id is the real one."""
    from gguf import GGUFReader

    field = GGUFReader(str(gguf)).fields.get("tokenizer.ggml.eos_token_id")
    if field is not None and field.data:
        eos_id = int(field.parts[field.data[0]][0])
        if eos_id < len(tokenizer):
            tokenizer.eos_token = tokenizer.convert_ids_to_tokens(eos_id)

