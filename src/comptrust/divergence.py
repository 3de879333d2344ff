"""Divergence from dense: how far a compressed model's next-token distributions move from the dense model's.

Accuracy-style scores hide most of what compression changes (Dutta et al., NeurIPS 2024: KL
divergence and answer flips track degradation better); llama.cpp's ``--kl-divergence`` (mean and
99th-percentile token KLD, same-top-token rate) is what people choosing GGUF quants read.

Generation perspectives, in two steps, both by teacher forcing (one forward pass per response,
no generation):

1. ``comptrust eval DENSE --divergence`` stores, for the first draw of up to ``max_responses``
   responses per perspective, the dense model's top-``K`` log-probabilities at every response
   token (``<run>/<perspective>/divergence-ref.json``), with the prompt and response token ids.
2. ``comptrust eval VARIANT --divergence-from DENSE_RUN`` feeds the same token ids through the
   variant and writes ``<run>/<perspective>/divergence.json``: per response token the KL
   divergence KL(dense || variant) and whether both models' most likely token agree.

Full distributions cannot be stored (vocabularies of 49k-262k tokens), so KL is computed on a
**coarse-graining** of the vocabulary: each of the dense model's top-K tokens is its own cell and
every other token falls into one "rest" cell.  By the data-processing inequality this is a lower
bound of the full KL; with K = 20 the dense top-K holds nearly all of the mass at most positions.
Backends with full logits (hf, llamacpp) give the variant's exact probability of every cell.
Backends that return only their own top tokens (vllm, openai) leave some dense top-K tokens
unknown; those move into the rest cell on both sides (still a valid partition, so still a lower
bound, a looser one), and the result records it (``estimator``, ``support_complete``).

The variant's most likely token is its argmax over its whole vocabulary (every backend returns
its top-1).  Teacher forcing needs identical tokenization: a variant whose tokenizer turns the
stored prompt or response into other ids is refused before any work.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from comptrust.backends.hf.cpu_attention import cpu_attention
from comptrust.chat import prompt_token_ids, render
from comptrust.errors import ConfigError, DataError
from comptrust.store.files import atomic_write_json

TOP_K = 20  # vLLM's default max_logprobs; OpenAI's own API allows 5
DEFAULT_MAX_RESPONSES = 100
REFERENCE_FILE = "divergence-ref.json"
RESULT_FILE = "divergence.json"
PROB_FLOOR = 1e-30  # a probability the float math rounded to zero (log would be -inf)
EXACT = "dense top-K + rest (variant's exact probability of every cell)"
SHARED = "dense top-K tokens the variant returned + rest (the backend returns only its own top tokens)"


# ---- teacher forcing: what a backend returns ----------------------------------------------


@dataclass
class ForceRequest:
    """A token sequence and where its response starts; ``support[j]``: the token ids whose
    log-probabilities are wanted at response token ``j`` (the dense top-K), or None."""

    ids: list[int]
    start: int
    support: list[list[int]] | None = None

    @property
    def positions(self) -> int:
        return len(self.ids) - self.start


@dataclass
class ForceResult:
    """Per response token: the backend's top ids and log-probabilities (most likely first), and
    the log-probability of each requested support id (NaN where the backend did not return it)."""

    top_ids: list[list[int]]
    top_logprobs: list[list[float]]
    support_logprobs: list[list[float]] | None = None


@runtime_checkable
class TeacherForcingBackend(Protocol):
    """A backend that scores given token ids (hf, llamacpp, vllm, openai with echo)."""

    def teacher_force(self, requests: list[ForceRequest], k: int) -> list[ForceResult]: ...


def from_log_softmax(rows: Any, k: int, support: list[list[int]] | None) -> ForceResult:
    """A :class:`ForceResult` from full log-probability rows (positions x vocabulary, torch)."""
    import torch

    rows = rows.float()
    values, ids = torch.topk(rows, min(k, rows.shape[-1]), dim=-1)
    picked = None
    if support is not None:
        index = torch.tensor(support, dtype=torch.long, device=rows.device)
        picked = rows.gather(-1, index).double().tolist()
    return ForceResult(ids.tolist(), values.double().tolist(), picked)


def from_top_dicts(tables: Sequence[dict[int, float]], k: int, support: list[list[int]] | None) -> ForceResult:
    """A :class:`ForceResult` from per-position ``{token id: logprob}`` of a top-k-only backend."""
    top_ids, top_lps, picked = [], [], []
    for j, table in enumerate(tables):
        ranked = sorted(table.items(), key=lambda kv: -kv[1])[:k]
        top_ids.append([t for t, _ in ranked])
        top_lps.append([float(v) for _, v in ranked])
        if support is not None:
            picked.append([float(table[t]) if t in table else math.nan for t in support[j]])
    return ForceResult(top_ids, top_lps, picked if support is not None else None)


def hf_teacher_force(model: Any, requests: list[ForceRequest], k: int) -> list[ForceResult]:
    """One forward per request (batch 1: no padding, the model's own computation), log-softmax in
    float32 at the positions predicting response tokens only."""
    import inspect

    import torch

    keeps = "logits_to_keep" in inspect.signature(model.forward).parameters
    device = next(model.parameters()).device
    out = []
    with cpu_attention(model), torch.inference_mode():
        for req in requests:
            ids = torch.tensor([req.ids], device=device)
            wanted = req.positions + 1  # the last prompt position predicts the first response token
            kwargs = {"logits_to_keep": wanted} if keeps else {}
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs).logits[0]
            rows = logits[-wanted:-1].float().log_softmax(-1)
            out.append(from_log_softmax(rows, k, req.support))
    return out


# ---- KL on the coarse-grained vocabulary -------------------------------------------------


def coarse_kl(p_logprobs: Sequence[float], q_logprobs: Sequence[float]) -> float:
    """KL(P || Q) in nats over the cells {each listed token} + {every other token}.

    ``p_logprobs[i]`` and ``q_logprobs[i]`` are both models' log-probabilities of the same token;
    a NaN in ``q`` (the backend did not return that token) moves it into the rest cell on both
    sides.  A lower bound of the full KL (data-processing inequality).
    """
    p = np.exp(np.asarray(p_logprobs, dtype=np.float64))
    q = np.exp(np.asarray(q_logprobs, dtype=np.float64))
    known = np.isfinite(q)
    p_k, q_k = p[known], np.maximum(q[known], PROB_FLOOR)
    kl = float(np.sum(np.where(p_k > 0, p_k * (np.log(np.maximum(p_k, PROB_FLOOR)) - np.log(q_k)), 0.0)))
    p_rest = 1.0 - float(p_k.sum())
    q_rest = max(1.0 - float(q_k.sum()), PROB_FLOOR)
    if p_rest > 1e-12:
        kl += p_rest * (math.log(p_rest) - math.log(q_rest))
    return max(kl, 0.0)


def summarize(kls: Sequence[Sequence[float]], same_top: Sequence[float]) -> dict[str, Any]:
    """Pooled over tokens (llama.cpp's convention): mean and 99th-percentile KLD, same-top-token rate."""
    flat = np.concatenate([np.asarray(k, dtype=np.float64) for k in kls]) if kls else np.zeros(0)
    tokens = int(flat.size)
    return {"responses": len(kls), "tokens": tokens,
            "mean_kl": float(flat.mean()) if tokens else None,
            "p99_kl": float(np.percentile(flat, 99)) if tokens else None,
            "max_kl": float(flat.max()) if tokens else None,
            "same_top_rate": float(sum(same_top) / tokens) if tokens else None}


# ---- the plan: reference (dense) and comparison (variant) --------------------------------


def _tokenizer_of(backend: Any, role: str) -> Any:
    tokenizer = getattr(backend, "tokenizer", None)
    if tokenizer is None:
        name = getattr(backend, "name", type(backend).__name__)
        if role == "reference":
            raise ConfigError(f"--divergence needs the prompt's token ids, which backend {name!r} does not know "
                              "(the server applies its own chat template)",
                              "compute the dense reference with --backend hf, llamacpp or vllm")
        raise ConfigError(f"backend {name!r} has no tokenizer to check", "use --backend hf, llamacpp or vllm")
    return tokenizer


def _require_forcing(backend: Any) -> None:
    if not isinstance(backend, TeacherForcingBackend):
        name = getattr(backend, "name", type(backend).__name__)
        raise ConfigError(f"backend {name!r} cannot score given tokens, which divergence from dense needs",
                          "use --backend hf, llamacpp, vllm, or openai with a server offering echo + logprobs")


def pick(scored: Sequence[Any], max_responses: int) -> list[Any]:
    """Samples whose first draw is compared: non-empty, up to ``max_responses``, spread over
    scenarios by a hash of the sample id (the same choice for every model and seed)."""
    usable = [s for s in scored if s.responses and s.responses[0]]
    usable.sort(key=lambda s: hashlib.sha256(s.sample.id.encode()).hexdigest())
    return usable[:max_responses]


@dataclass
class DivergencePlan:
    """What ``comptrust eval`` does besides scoring: write a reference and/or compare with one."""

    reference: bool = False  # --divergence: store this model's top-K as a reference
    compare_with: Path | None = None  # --divergence-from RUN
    max_responses: int = DEFAULT_MAX_RESPONSES
    top_k: int = TOP_K

    def __post_init__(self) -> None:
        if self.max_responses < 1:
            raise ConfigError(f"--divergence-responses must be at least 1 (got {self.max_responses})",
                              "pass e.g. --divergence-responses 100")
        self._refs: dict[str, dict[str, Any]] = {}
        self._ref_run: dict[str, Any] = {}

    def prepare(self, backend: Any, perspectives: Sequence[str]) -> None:
        """Refuse before any work: a backend that cannot teacher-force, a missing reference, another tokenizer."""
        if not (self.reference or self.compare_with):
            return
        _require_forcing(backend)
        if self.reference:
            _tokenizer_of(backend, "reference")
        if self.compare_with is None:
            return
        root = Path(self.compare_with)
        if not (root / "summary.json").is_file():
            raise ConfigError(f"--divergence-from {root}: no run folder there", "pass the dense model's run folder")
        try:
            import json

            self._ref_run = json.loads((root / "summary.json").read_text(encoding="utf-8"))
            for name in perspectives:
                path = root / name / REFERENCE_FILE
                if path.is_file():
                    self._refs[name] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read the divergence reference in {root} ({exc})",
                            "re-run the dense evaluation with --divergence") from exc
        if not self._refs:
            raise ConfigError(f"{root} has no divergence reference for {', '.join(perspectives)}",
                              "evaluate the dense model with --divergence (same perspectives) first")
        tokenizer = getattr(backend, "tokenizer", None)
        if tokenizer is not None:
            for name, ref in self._refs.items():
                check_tokenization(tokenizer, ref, name)

    def after_perspective(self, backend: Any, name: str, scored: Sequence[Any], folder: Path,
                          model_info: dict[str, Any]) -> dict[str, Any] | None:
        """Write this perspective's reference and/or comparison; what it cost (for the summary)."""
        out: dict[str, Any] = {}
        if self.reference:
            ref = build_reference(backend, scored, self.max_responses, self.top_k, model_info)
            atomic_write_json(folder / REFERENCE_FILE, ref)
            out["reference"] = ref["cost"] | {"responses": len(ref["responses"]), "top_k": ref["top_k"]}
        if self.compare_with is not None:
            ref = self._refs.get(name)
            if ref is None:
                result = {"unavailable": f"the dense run {self.compare_with} has no divergence reference for {name}"}
            elif not ref.get("responses"):
                result = {"unavailable": f"the dense model gave no non-empty {name} response to compare on"}
            else:
                result = compare(backend, ref, self.compare_with, self._ref_run)
            atomic_write_json(folder / RESULT_FILE, result)
            out["comparison"] = ({"unavailable": result["unavailable"]} if "unavailable" in result
                                 else result["summary"] | {"cost": result["cost"], "estimator": result["estimator"]})
        return out or None


def check_tokenization(tokenizer: Any, ref: dict[str, Any], name: str) -> None:
    """Teacher forcing compares models on the same ids: the variant's tokenizer must produce them."""
    vocab = len(tokenizer)
    for row in ref.get("responses", []):
        prompt = prompt_token_ids(row["prompt_text"], ref["chat_template"], tokenizer)
        response = tokenizer.encode(row["response"], add_special_tokens=False)
        if (prompt != row["prompt_ids"] or response != row["response_ids"]
                or max(row["prompt_ids"] + row["response_ids"]) >= vocab):
            raise ConfigError(f"this model's tokenizer turns {name} sample {row['sample_id']} into other token ids "
                              "than the dense model's, so their next-token distributions cannot be compared",
                              "compare models that share the dense model's tokenizer (or drop --divergence-from)")


def build_reference(backend: Any, scored: Sequence[Any], max_responses: int, k: int,
                    model_info: dict[str, Any]) -> dict[str, Any]:
    """The dense model's top-``k`` log-probabilities at every token of its own responses."""
    tokenizer = _tokenizer_of(backend, "reference")
    template = getattr(backend, "chat_template", "model")
    rows, requests = [], []
    for s in pick(scored, max_responses):
        prompt_text = render(s.sample.messages, template, tokenizer)
        prompt_ids = prompt_token_ids(prompt_text, template, tokenizer)
        response_ids = tokenizer.encode(s.responses[0], add_special_tokens=False)
        if not response_ids or not prompt_ids:
            continue
        rows.append({"sample_id": s.sample.id, "scenario": s.sample.scenario, "prompt_text": prompt_text,
                     "response": s.responses[0], "prompt_ids": prompt_ids, "response_ids": response_ids})
        requests.append(ForceRequest(prompt_ids + response_ids, len(prompt_ids)))
    started = time.perf_counter()
    results = backend.teacher_force(requests, k) if requests else []
    seconds = time.perf_counter() - started
    for row, res in zip(rows, results, strict=True):
        row["top_ids"] = res.top_ids
        row["top_logprobs"] = [[round(v, 6) for v in lps] for lps in res.top_logprobs]
    return {"top_k": k, "chat_template": template, "backend": getattr(backend, "name", None),
            "model": {key: model_info.get(key) for key in ("name", "fingerprint", "weights_sha256", "backend")},
            "cost": {"seconds": round(seconds, 3), "forward_passes": len(requests),
                     "tokens": sum(len(r.ids) for r in requests),
                     "response_tokens": sum(r.positions for r in requests)},
            "responses": rows}


def compare(backend: Any, ref: dict[str, Any], ref_dir: Path, ref_summary: dict[str, Any]) -> dict[str, Any]:
    """Teacher-force the reference's token ids through ``backend``; per-token KL and top-token agreement."""
    rows = ref.get("responses", [])
    requests = [ForceRequest(r["prompt_ids"] + r["response_ids"], len(r["prompt_ids"]), r["top_ids"]) for r in rows]
    started = time.perf_counter()
    results = backend.teacher_force(requests, ref.get("top_k", TOP_K)) if requests else []
    seconds = time.perf_counter() - started
    per, complete, positions = [], 0, 0
    for row, res in zip(rows, results, strict=True):
        assert res.support_logprobs is not None
        kls = [coarse_kl(p, q) for p, q in zip(row["top_logprobs"], res.support_logprobs, strict=True)]
        same = sum(int(bool(t) and bool(d) and t[0] == d[0]) for t, d in zip(res.top_ids, row["top_ids"], strict=True))
        complete += sum(all(math.isfinite(v) for v in q) for q in res.support_logprobs)
        positions += len(res.support_logprobs)
        per.append({"sample_id": row["sample_id"], "scenario": row["scenario"], "tokens": len(kls),
                    "same_top": same, "kl": [round(x, 8) for x in kls]})
    model = ref_summary.get("model") or {}
    share = complete / positions if positions else None
    return {"reference": {"run_dir": str(ref_dir), "run_id": ref_summary.get("run_id"),
                          "model": model.get("name"), "weights_sha256": model.get("weights_sha256"),
                          "backend": ref.get("backend"), "top_k": ref.get("top_k", TOP_K)},
            "backend": getattr(backend, "name", None),
            "estimator": EXACT if share == 1.0 or share is None else SHARED,
            "support_complete": share,
            "summary": summarize([p["kl"] for p in per], [p["same_top"] for p in per]),
            "cost": {"seconds": round(seconds, 3), "forward_passes": len(requests),
                     "tokens": sum(len(r.ids) for r in requests),
                     "response_tokens": sum(r.positions for r in requests)},
            "responses": per}
