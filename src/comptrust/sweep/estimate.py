"""What a sweep will cost before it runs: prompts, completions, generated tokens and hours.

Counts come from each perspective's own ``samples()`` on the sweep's data
source, so they are exact for prompts and completions.  Tokens are an upper
bound (every completion assumed to run to ``max_tokens``; many stop earlier).
Time divides that bound by an assumed throughput per backend whose source is
printed beside it: these are rough, model-size-dependent rates, not promises.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from comptrust.compression.methods import family_of, format_of
from comptrust.data.source import open_source
from comptrust.errors import ComptrustError
from comptrust.registry import get_perspective
from comptrust.sweep.plan import Artifact, Plan
from comptrust.sweep.sizes import base_config, estimated_bytes, human_bytes, stored_dtype


@dataclass(frozen=True)
class Rate:
    backend: str
    device: str
    tokens_per_second: float
    source: str


# Sources: docs/benchmarks.md ("Throughput").  Override with backend.tokens_per_second in the sweep file.
RATES: tuple[Rate, ...] = (
    Rate("reference (one prompt at a time)", "cuda", 21.0,
         "measured: Llama-2-13B-shaped, batch 1, one H200 (issue 7's reference measurement)"),
    Rate("hf", "cuda", 1764.0,
         "measured: plain batched HF generate, batch 128, Llama-2-13B-shaped, one H200 (issue 7)"),
    Rate("vllm", "cuda", 2100.0,
         "ASSUMED, not measured here: comptrust's target of 100x the one-at-a-time rate"),
    Rate("reference (one prompt at a time)", "cpu", 19.7,
         "measured: SmolLM2-135M bf16, 2 idle CPU cores with AMX (docs/benchmarks.md, Throughput)"),
    Rate("hf", "cpu", 210.0,
         "measured: SmolLM2-135M bf16, 180 real stereotype rows with EOS on, continuous batching (32 slots), "
         "prefill + decode, 2 idle AMD EPYC cores with AVX512-BF16, the slower of two runs (2026-12-07; "
         "docs/benchmarks.md, Back on the AMD EPYC; 2 Intel Xeon cores with AMX: 310)"),
)


@dataclass
class PerspectiveCount:
    perspective: str
    kind: str  # "generate" or "loglik"
    prompts: int | None = None
    completions: int | None = None
    max_tokens: int | None = None  # upper bound of generated tokens for ONE artifact
    note: str = ""


def count_perspective(plan: Plan, name: str) -> PerspectiveCount:
    """Prompts, completions and the generated-token bound of one perspective for one artifact."""
    ev = plan.config.eval
    perspective = get_perspective(name)
    kind = perspective.kind
    options = ev.to_options()
    try:
        data = open_source(ev.data_dir, smoke=ev.smoke, hub_revision=ev.hub_revision)
        samples = perspective.samples(data, options)
    except ComptrustError as exc:
        return PerspectiveCount(name, kind, note=f"unknown: {exc.problem}")
    if kind == "loglik":
        return PerspectiveCount(name, kind, prompts=len(samples), completions=0, max_tokens=0,
                                note="log-likelihood scoring: nothing generated")
    return PerspectiveCount(name, kind, prompts=len(samples), completions=sum(s.params.n for s in samples),
                            max_tokens=sum(s.params.n * s.params.max_tokens for s in samples))


def planning_device(plan: Plan) -> str:
    if plan.config.ray.num_gpus > 0:
        return "cuda"
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover - torch is a core dependency
        return "cpu"


def artifact_sizes(plan: Plan) -> tuple[dict[str, int | None], dict[str, str | None]]:
    """Estimated weights on disk per artifact (``sweep/sizes.py``; None: unknown), and each artifact's
    base model's stored dtype (None: no config offline)."""
    configs: dict[str, dict[str, Any] | None] = {}
    sizes: dict[str, int | None] = {}
    dtypes: dict[str, str | None] = {}
    for a in plan.artifacts:
        if a.model.model not in configs:
            configs[a.model.model] = base_config(a.model.model)
        config = configs[a.model.model]
        sizes[a.id] = None if config is None else estimated_bytes(a.method, a.config or {}, config)
        dtypes[a.id] = None if config is None else stored_dtype(config)
    return sizes, dtypes


def estimate(plan: Plan) -> dict[str, Any]:
    """Counts per perspective (for one artifact and for the whole sweep), sizes, and hours per backend."""
    counts = [count_perspective(plan, p) for p in plan.perspectives]
    n_art = len(plan.artifacts)
    total_tokens = sum(c.max_tokens or 0 for c in counts) * n_art
    unknown = [c.perspective for c in counts if c.prompts is None]
    device = planning_device(plan)
    rates = [r for r in RATES if r.device == device]
    if plan.config.backend.tokens_per_second:
        rates.append(Rate(plan.config.backend.name, device, plan.config.backend.tokens_per_second,
                          "given in the sweep file (backend.tokens_per_second)"))
    sizes, dtypes = artifact_sizes(plan)
    return {
        "artifacts": n_art,
        "to_compress": sum(1 for a in plan.artifacts if not a.dense),
        "jobs": len(plan.jobs),
        "device": device,
        "perspectives": [c.__dict__ | {"sweep_prompts": None if c.prompts is None else c.prompts * n_art,
                                       "sweep_max_tokens": None if c.max_tokens is None else c.max_tokens * n_art}
                         for c in counts],
        "max_generated_tokens": total_tokens,
        "sizes": sizes,
        "base_dtypes": dtypes,
        "unknown": unknown,
        "time": [{"backend": r.backend, "tokens_per_second": r.tokens_per_second, "source": r.source,
                  "hours": round(total_tokens / r.tokens_per_second / 3600, 2)} for r in rates],
    }


def artifact_format(artifact: Artifact, base_dtype: str | None = None) -> str:
    """Bits of weights / activations / KV cache, e.g. ``W8A8 FP8``, ``W4A16 int``, ``GGUF Q4_K_M, KV int4``.
    A dense model is named by the dtype its weights are stored in (``dense float32``), not an assumed 16
    bits: SmolLM2 as shipped is float32."""
    cfg = artifact.config or {}
    if artifact.dense:
        text = f"dense {base_dtype}" if base_dtype else "dense (stored dtype unknown)"
    elif artifact.method == "gguf":
        text = f"GGUF {cfg.get('gguf_type')}"
    elif family_of(artifact.method) == "format":
        fmt = format_of(artifact.method)
        text = f"W{fmt.weight_bits:g}A{fmt.activation_bits} {fmt.number}"
    elif cfg.get("bits") is not None:
        text = f"W{cfg['bits']}A16 int"
    else:
        text = f"{round(100 * cfg.get('sparsity', 0))}% sparse"
    return text + (f", KV {artifact.kv_cache}" if artifact.kv_cache else "")


def format_estimate(plan: Plan, est: dict[str, Any]) -> str:
    """The ``--dry-run`` text: jobs, then counts and times."""
    lines = [f"sweep {plan.source} -> {plan.sweep_dir}",
             f"{est['artifacts']} artifacts ({est['to_compress']} to compress, each once) x "
             f"{len(plan.perspectives)} perspectives = {est['jobs']} jobs", "", "artifacts:"]

    sizes = est.get("sizes") or {}
    dtypes = est.get("base_dtypes") or {}
    for a in plan.artifacts:
        seeds = f" seeds {a.seeds}" if a.seeds else ""
        fmt = artifact_format(a, dtypes.get(a.id))
        lines.append(f"  {a.id:<44} {a.describe()}{seeds}  [{fmt}; {human_bytes(sizes.get(a.id))} "
                     f"weights; backend {plan.backend_name(a)}]")
    known = [sizes[a.id] for a in plan.artifacts if not a.dense and sizes.get(a.id) is not None]
    if known:
        lines.append(f"  compressed weights to write, estimated: {human_bytes(sum(known))} "
                     "(from the base config; pruned models are stored dense)")
    lines += ["", f"per artifact (x {est['artifacts']} for the sweep):",
              f"  {'perspective':<18} {'prompts':>8} {'completions':>12} {'max new tokens':>15} "
              f"{'sweep max tokens':>17}"]
    for c in est["perspectives"]:
        def show(v: Any) -> str:
            return "?" if v is None else f"{v:,}"
        lines.append(f"  {c['perspective']:<18} {show(c['prompts']):>8} {show(c['completions']):>12} "
                     f"{show(c['max_tokens']):>15} {show(c['sweep_max_tokens']):>17}  {c['note']}".rstrip())
    lines += ["", f"generated tokens, upper bound: {est['max_generated_tokens']:,}"
              + (f" (excluding {', '.join(est['unknown'])}: counts unavailable)" if est["unknown"] else ""),
              f"time at assumed throughput ({est['device']}; generation only, excludes compression, "
              "loading and MMLU forward passes):"]
    for t in est["time"]:
        lines.append(f"  {t['backend']:<34} {t['tokens_per_second']:>8,.1f} tok/s  {t['hours']:>9,.2f} h"
                     f"   [{t['source']}]")
    return "\n".join(lines)
