"""vLLM on a GPU: continuous batching and paged attention, same rows and cache keys as ``hf``.

Why token ids and not strings?  The prompt is rendered and tokenized exactly as
:class:`~comptrust.backends.hf.HFBackend` does (same chat template, same BOS
rule), then handed to vLLM as ``prompt_token_ids``, so both backends see the
same tokens.  Each :class:`~comptrust.types.GenRow` is one vLLM request with
``n=1`` and its own ``seed`` (the row seed), so a sample's draws are the same
(sample, draw index, seed) cache entries the runner uses for every backend.

vLLM lives in its own environment (``make vllm-env``, CUDA only): its pins
collide with the compression stack's (requirements/vllm-env.txt says how).  It
is imported inside the functions that need it.  Compressed artifacts
(compressed-tensors) load directly: vLLM reads their ``quantization_config``.
Not run on a GPU in this repository's CI; see docs/scale.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from comptrust.backends.base import OnResult, encode_pair
from comptrust.chat import choose_template, prompt_token_ids, render
from comptrust.divergence import from_top_dicts
from comptrust.errors import BackendError, ConfigError
from comptrust.model_files import weights_fingerprint
from comptrust.models import ModelRef, resolve_model
from comptrust.types import Completion, GenRow

INSTALL_HINT = ("on a CUDA machine run 'make vllm-env' and use .venv-vllm/bin/comptrust (vLLM needs its own "
                "environment: requirements/vllm-env.txt), or serve the model with 'vllm serve' and use "
                "--backend openai")
CHUNK_ROWS = 2048  # rows per llm.generate call: results reach the cache at least this often


def import_vllm() -> Any:
    """The ``vllm`` module, or a one-line BackendError saying how to get it."""
    try:
        import vllm
    except ImportError as exc:
        raise BackendError(f"the vllm backend needs the vllm package ({type(exc).__name__}: {exc})",
                           INSTALL_HINT) from None
    return vllm


def engine_kwargs(path: str, batch_size: int | None = None, dtype: str = "auto", seed: int = 0,
                  gpu_memory_utilization: float = 0.9, tensor_parallel_size: int = 1,
                  max_model_len: int | None = None, enforce_eager: bool = False) -> dict[str, Any]:
    """Arguments of ``vllm.LLM`` for a local model folder (``batch_size`` caps concurrent sequences)."""
    if not 0.0 < gpu_memory_utilization <= 1.0:
        raise ConfigError(f"gpu_memory_utilization {gpu_memory_utilization} is outside (0, 1]",
                          "pass a fraction such as 0.9")
    kwargs: dict[str, Any] = {"model": path, "tokenizer": path, "dtype": dtype, "seed": seed,
                              "gpu_memory_utilization": gpu_memory_utilization,
                              "tensor_parallel_size": tensor_parallel_size, "enforce_eager": enforce_eager,
                              "trust_remote_code": False}
    if batch_size:
        kwargs["max_num_seqs"] = batch_size
    if max_model_len:
        kwargs["max_model_len"] = max_model_len
    return kwargs


def sampling_kwargs(row: GenRow, eos_ids: Sequence[int], ignore_eos: bool = False) -> dict[str, Any]:
    """Arguments of ``vllm.SamplingParams`` for one row: one draw, the row's own seed."""
    greedy = row.params.temperature <= 0
    return {
        "n": 1,
        "max_tokens": row.params.max_tokens,
        "temperature": 0.0 if greedy else row.params.temperature,
        "top_p": 1.0 if greedy else row.params.top_p,
        "seed": row.row_seed,
        "stop_token_ids": [] if ignore_eos else list(eos_ids),
        "ignore_eos": ignore_eos,
        "skip_special_tokens": False,  # the hf backend decodes with special tokens kept
    }


class VLLMBackend:
    """A model served in-process by ``vllm.LLM``."""

    name = "vllm"

    def __init__(self, llm: Any, tokenizer: Any, ref: ModelRef, chat_template: str = "model",
                 batch_size: int | None = None, dtype: str = "auto", ignore_eos: bool = False) -> None:
        chat_template, self.chat_template_warning = choose_template(chat_template, tokenizer)  # raw if none
        self.llm = llm
        self.tokenizer = tokenizer
        self.ref = ref
        self.chat_template = chat_template
        self.batch_size = batch_size
        self.ignore_eos = ignore_eos
        self.weights_hash = weights_fingerprint(ref.path)
        self.dtype = dtype
        self.fingerprint = f"vllm-{self.weights_hash}-{chat_template}-{dtype}"
        eos = getattr(tokenizer, "eos_token_id", None)
        self.eos_ids = [eos] if eos is not None else []

    @classmethod
    def from_spec(cls, spec: str, batch_size: int | None = None, chat_template: str | None = None,
                  allow_pickle: bool = False, ignore_eos: bool = False, **engine: Any) -> VLLMBackend:
        """Resolve ``spec`` like the hf backend, then start a vLLM engine on it."""
        vllm = import_vllm()
        from transformers import AutoTokenizer

        ref = resolve_model(str(spec), allow_pickle=allow_pickle)
        kwargs = engine_kwargs(str(ref.path), batch_size=batch_size, **engine)
        try:
            llm = vllm.LLM(**kwargs)
        except Exception as exc:  # vLLM raises many types (CUDA, config, OOM); the user needs the first line
            raise BackendError(f"vLLM cannot load {ref.path} ({type(exc).__name__}: {str(exc).splitlines()[0]})",
                               "check the GPU, gpu_memory_utilization and that vLLM supports this model") from exc
        tokenizer = AutoTokenizer.from_pretrained(ref.path)
        return cls(llm, tokenizer, ref, chat_template or "model", batch_size, kwargs["dtype"], ignore_eos)

    # ---- protocol ---------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        vllm = import_vllm()
        return {"backend": self.name, "fingerprint": self.fingerprint, "name": self.ref.name,
                "path": str(self.ref.path), "source": self.ref.source, "weights_sha256": self.weights_hash,
                "chat_template": self.chat_template, "chat_template_warning": self.chat_template_warning,
                "dtype": self.dtype, "device": "cuda",
                "batch_size": self.batch_size or "auto", "compression": self.ref.manifest(),
                "versions": {"vllm": vllm.__version__}}

    def encode(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """Token ids exactly as the hf backend builds them (template, then the BOS rule)."""
        return prompt_token_ids(render(messages, self.chat_template, self.tokenizer), self.chat_template,
                                self.tokenizer)

    def generate(self, rows: Sequence[GenRow], on_result: OnResult | None = None) -> list[Completion]:
        vllm = import_vllm()
        results: list[Completion] = []
        for start in range(0, len(rows), CHUNK_ROWS):
            chunk = rows[start:start + CHUNK_ROWS]
            prompts = [{"prompt_token_ids": self.encode(r.messages)} for r in chunk]
            params = [vllm.SamplingParams(**sampling_kwargs(r, self.eos_ids, self.ignore_eos)) for r in chunk]
            outputs = self.llm.generate(prompts, params, use_tqdm=False)
            for offset, (prompt, out) in enumerate(zip(prompts, outputs, strict=True)):
                first = out.outputs[0]
                completion = Completion(text=first.text, prompt_tokens=len(prompt["prompt_token_ids"]),
                                        completion_tokens=len(first.token_ids))
                results.append(completion)
                if on_result:
                    on_result(start + offset, completion)
        return results

    def choice_logprobs(self, prompts: list[str], choices: list[str]) -> list[list[float]]:
        """``LoglikelihoodBackend`` via vLLM prompt log-probabilities (lm-eval's token split)."""
        vllm = import_vllm()

        requests, spans = [], []
        for prompt in prompts:
            for choice in choices:
                ctx, cont = encode_pair(self.tokenizer, prompt, choice)
                if not cont:
                    raise BackendError(f"choice {choice!r} adds no token after the prompt",
                                       "use choices that tokenize to at least one token")
                requests.append({"prompt_token_ids": ctx + cont})
                spans.append((len(ctx), cont))
        params = vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=1)
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        flat = []
        for out, (start, cont) in zip(outputs, spans, strict=True):
            per_position = out.prompt_logprobs  # one dict (token id -> Logprob) per prompt position
            flat.append(sum(per_position[start + k][tok].logprob for k, tok in enumerate(cont)))
        width = len(choices)
        return [flat[i * width:(i + 1) * width] for i in range(len(prompts))]

    def teacher_force(self, requests: list[Any], k: int) -> list[Any]:
        """Divergence from dense: vLLM's prompt log-probabilities at each response token.

        vLLM returns, per prompt position, its own top ``k`` and the prompt token itself, not the
        probability of any token asked for; dense top-K tokens outside those are merged into the
        rest cell (``divergence.coarse_kl``), and the comparison says so.
        """
        vllm = import_vllm()

        params = vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=k)
        outputs = self.llm.generate([{"prompt_token_ids": list(r.ids)} for r in requests], params, use_tqdm=False)
        return [from_top_dicts(vllm_prompt_tables(out.prompt_logprobs, r.start, len(r.ids)), k, r.support)
                for r, out in zip(requests, outputs, strict=True)]


def vllm_prompt_tables(prompt_logprobs: Sequence[Any], start: int, end: int) -> list[dict[int, float]]:
    """``{token id: logprob}`` per position ``start..end-1`` from vLLM's ``prompt_logprobs`` (Logprob objects)."""
    tables = []
    for q in range(start, end):
        entry = prompt_logprobs[q] or {}
        tables.append({int(t): float(getattr(v, "logprob", v)) for t, v in entry.items()})
    return tables
