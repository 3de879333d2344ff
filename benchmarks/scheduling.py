"""Continuous batching vs static batches vs one prompt at a time, on real DecodingTrust prompts, EOS on.

    python benchmarks/scheduling.py                       # CPU: SmolLM2-135M, stereotype n=5 + ood style_8shot
    python benchmarks/scheduling.py --workloads stereotype --limit 8 --repeat 2
    python benchmarks/scheduling.py --shape llama2-13b --prompts-file .device/dt_prompts.json \\
        --lengths-file .device/completion_lengths.json    # GPU: random weights, real prompts, real lengths

What users run, not a best case: real DecodingTrust prompts (``../shared/data/decodingtrust``)
with the benchmark's own decoding (stereotype: temperature 1, ``max_tokens`` 150, ``--samples``
draws per prompt; ood ``style_8shot``: greedy, 20 tokens, 8 shared demonstrations), EOS on.
Each workload is generated, in one process on one copy of the weights, by:

* ``one``: one row at a time (batch 1, one ``generate`` call per row: no padding, no waste);
* ``helm``: DecodingTrust's HELM-style loop for sampled prompts: plain transformers, one
  ``generate`` per prompt with ``num_return_sequences=n``;
* ``static``: comptrust's static batches (length buckets, shared prefixes, ``model.generate``);
* ``continuous``: comptrust's continuous batching (the default scheduler).

The **useful fraction** is tokens the rows keep (each row's EOS counted) / (rows x generation
steps computed): 1.0 when no step computes a finished row.  Static batches and ``helm`` are
measured from ``generate``'s outputs (a batch computes every row for as many steps as its longest
row), continuous batching from its own counters.  Rates are tokens kept (EOS not counted) per
second of wall time, tokenization, prefill and sampling included.

Random-weight shapes (``--shape``, GPU) never stop on their own: each row is ended at a length
drawn from ``--lengths-file`` (completion lengths of SmolLM2 on the same prompts, written by
``--save-lengths`` on a CPU run) by forcing EOS at that step, so the batches see a realistic
length distribution.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "decodingtrust"
WORKLOADS = {  # name -> (perspective, scenarios, sampled)
    "stereotype": ("stereotype", None),
    "ood": ("ood", ["style_8shot"]),
}


def machine() -> dict[str, Any]:
    """CPU model, threads, load: every figure is printed beside them."""
    import torch

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": model, "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "torch_threads": torch.get_num_threads(), "load_average": os.getloadavg()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def workload_rows(name: str, limit: int, samples: int, data_dir: Path | None, prompts_file: Path | None,
                  max_tokens: int | None) -> list[Any]:
    """Generation rows of one workload, exactly as ``comptrust eval`` builds them (seeds included)."""
    from comptrust.backends.base import row_seed
    from comptrust.types import GenParams, GenRow

    if prompts_file:  # the device has no ../shared: rows travel as a JSON file (device_prepare.sh)
        items = json.loads(prompts_file.read_text())[name]
        samples_ = [(tuple(i["messages"]), GenParams(**i["params"]), i["id"]) for i in items]
    else:
        from comptrust.data.source import LocalFolder, SmokeSuite
        from comptrust.perspectives.base import EvalOptions
        from comptrust.registry import get_perspective

        perspective, scenarios = WORKLOADS[name]
        data = LocalFolder(data_dir) if data_dir and data_dir.is_dir() else SmokeSuite()
        options = EvalOptions(limit=limit, samples=samples, scenarios=scenarios, max_new_tokens=max_tokens)
        samples_ = [(s.messages, s.params, s.id) for s in get_perspective(perspective).samples(data, options)]
    rows = []
    for messages, params, sample_id in samples_:
        if max_tokens:
            params = GenParams(**{**params.__dict__, "max_tokens": min(params.max_tokens, max_tokens)})
        n = min(params.n, samples) if params.temperature > 0 else 1
        rows += [GenRow(messages, params, j, row_seed(params.seed, sample_id, "bench", j)) for j in range(n)]
    return rows


class GenerateCounter:
    """Wraps ``model.generate`` to count rows x steps computed (transformers runs every row to the batch's end)."""

    def __init__(self, model: Any) -> None:
        self.model, self.real = model, model.generate
        self.row_steps = 0

    def __enter__(self) -> GenerateCounter:
        def counted(*args: Any, **kwargs: Any) -> Any:
            out = self.real(*args, **kwargs)
            width = kwargs["input_ids"].shape[1] if "input_ids" in kwargs else args[0].shape[1]
            self.row_steps += out.shape[0] * (out.shape[1] - width)
            return out

        self.model.generate = counted
        return self

    def __exit__(self, *exc: object) -> None:
        del self.model.generate  # back to the class's method


def kept_tokens(completions: list[Any], rows: list[Any]) -> int:
    """Tokens the rows keep, each row's EOS counted (a row shorter than its max_tokens ended on EOS)."""
    return sum(c.completion_tokens + (c.completion_tokens < r.params.max_tokens)
               for c, r in zip(completions, rows, strict=True))


def run_way(way: str, backend: Any, rows: list[Any], slots: int | None, static_batch: int | None) -> dict[str, Any]:
    """Generate ``rows`` one way; returns seconds, tokens, rate and useful fraction."""
    import torch

    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    started = time.perf_counter()
    if way == "continuous":
        backend.scheduler, backend.requested_batch_size = "continuous", slots
        before = (backend.stats.first_tokens + backend.stats.decode_row_steps,
                  backend.stats.first_tokens + backend.stats.decode_tokens)
        completions = backend.generate(rows)
        row_steps = backend.stats.first_tokens + backend.stats.decode_row_steps - before[0]
    elif way == "helm":
        completions, row_steps = helm_loop(backend, rows)
    else:
        backend.scheduler = "static"
        backend.requested_batch_size = 1 if way == "one" else static_batch
        with GenerateCounter(backend.model) as counter:
            completions = backend.generate(rows)
        row_steps = counter.row_steps
    sync()
    seconds = time.perf_counter() - started
    tokens = sum(c.completion_tokens for c in completions)
    kept = kept_tokens(completions, rows)
    result = {"rows": len(rows), "tokens": tokens, "seconds": round(seconds, 2),
              "tokens_per_second": round(tokens / seconds, 2), "row_steps": row_steps,
              "useful_fraction": round(kept / row_steps, 3) if row_steps else None,
              "texts": [c.text for c in completions], "lengths": [c.completion_tokens for c in completions]}
    if way == "continuous":
        result["slots"] = backend._slot_count(max(len(backend._encode(backend.prompt_text(r.messages)))
                                                  + r.params.max_tokens for r in rows))
    print(f"  {way}: {len(rows)} rows, {tokens} tokens in {seconds:.1f} s", file=sys.stderr, flush=True)
    return result


def helm_loop(backend: Any, rows: list[Any]) -> tuple[list[Any], int]:
    """DecodingTrust's HELM-style loop: one plain ``generate`` per prompt, ``num_return_sequences`` = its draws."""
    import torch

    from comptrust.types import Completion

    by_prompt: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_prompt.setdefault(json.dumps([r.messages, r.params.__dict__]), []).append(i)
    out: list[Any] = [None] * len(rows)
    row_steps = 0
    eos = set(backend.eos_ids)
    for idxs in by_prompt.values():
        messages, params = rows[idxs[0]].messages, rows[idxs[0]].params
        ids = torch.tensor([backend._encode(backend.prompt_text(messages))], device=backend.device)
        sampling = ({"do_sample": True, "temperature": params.temperature, "top_p": params.top_p, "top_k": None}
                    if params.temperature > 0 else {"do_sample": False})
        with torch.inference_mode():
            gen = backend.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                         max_new_tokens=params.max_tokens, num_return_sequences=len(idxs),
                                         eos_token_id=backend.eos_ids or None,
                                         pad_token_id=backend.tokenizer.pad_token_id, **sampling)
        new = gen[:, ids.shape[1]:]
        row_steps += new.shape[0] * new.shape[1]
        for i, seq in zip(idxs, new.tolist(), strict=True):
            cut = next((j for j, t in enumerate(seq) if t in eos), len(seq))
            out[i] = Completion(text=backend.tokenizer.decode(seq[:cut]), prompt_tokens=ids.shape[1],
                                completion_tokens=cut)
    return out, row_steps


def force_lengths(lengths: list[int], rows: list[Any], eos: int, seed: int = 0) -> Any:
    """End each row at a drawn length (random weights never stop on their own): patches both samplers.

    Rows are told apart by their seeds, which both schedulers pass to their samplers.  Returns a
    function that undoes the patches.
    """
    import torch

    import comptrust.backends.hf.backend as hf
    import comptrust.backends.hf.continuous as continuous
    from comptrust.backends.sampling import RowSampler, _int64

    rng = random.Random(seed)
    stop = {_int64(r.row_seed): rng.choice(lengths) for r in rows}

    def forced(seeds: Any, steps: Any, tokens: Any) -> Any:
        ends = torch.tensor([stop.get(s, 1 << 30) for s in seeds.view(-1).tolist()], device=tokens.device)
        return torch.where(steps.view(-1) >= ends, torch.full_like(tokens, eos), tokens)

    real_next = continuous.next_tokens

    def next_tokens(scores: Any, seeds: Any, steps: Any, *args: Any) -> Any:
        return forced(seeds, steps, real_next(scores, seeds, steps, *args))

    class ForcedSampler(RowSampler):
        def __call__(self, input_ids: Any, scores: Any) -> Any:
            step = self.step
            out = super().__call__(input_ids, scores)
            tokens = forced(self.seeds, torch.full_like(self.seeds, step), out.argmax(-1))
            return torch.full_like(scores, float("-inf")).scatter_(-1, tokens[:, None], 0.0)

    originals = continuous.next_tokens, hf.RowSampler
    continuous.next_tokens, hf.RowSampler = next_tokens, ForcedSampler

    def restore() -> None:
        continuous.next_tokens, hf.RowSampler = originals

    return restore


def load(args: argparse.Namespace) -> Any:
    """The backend: SmolLM2 (or ``--model``) from disk, or a random-weight shape on the GPU."""
    import torch

    from comptrust.backends.hf.backend import HFBackend

    if args.shape:
        from throughput import hf_backend, load_tokenizer, random_model

        tokenizer = load_tokenizer(args.tokenizer)
        model = random_model(args.shape, tokenizer, "cuda" if torch.cuda.is_available() else "cpu")
        backend = hf_backend(model, tokenizer, Path("/tmp") / args.shape, args.shape, None, ignore_eos=False)
        backend.eos_ids = [tokenizer.eos_token_id]
        return backend
    return HFBackend.from_path(args.model, dtype=args.dtype)


def main(argv: list[str] | None = None) -> int:
    import torch

    gpu = torch.cuda.is_available()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--shape", default=None, help="random-weight shape from throughput.py (GPU: llama2-7b/-13b)")
    ap.add_argument("--tokenizer", default=None, help="tokenizer folder for --shape (default: SmolLM2's)")
    ap.add_argument("--dtype", default=None)
    ap.add_argument("--workloads", default="stereotype,ood")
    ap.add_argument("--ways", default="one,helm,static,continuous")
    ap.add_argument("--limit", type=int, default=4, help="records per scenario (as comptrust eval --limit)")
    ap.add_argument("--samples", type=int, default=5, help="draws per sampled prompt (DecodingTrust: 25)")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="a cap (default: the benchmark's own)")
    ap.add_argument("--one-rows", type=int, default=None, help="rows for the one/helm ways (default: all)")
    ap.add_argument("--slots", type=int, default=None, help="continuous batching slots (default: automatic)")
    ap.add_argument("--static-batch", type=int, default=None, help="static batch size (default: automatic)")
    ap.add_argument("--repeat", type=int, default=1, help="run the ways this many times, interleaved")
    ap.add_argument("--data-dir", type=Path, default=SHARED)
    ap.add_argument("--prompts-file", type=Path, default=None, help="prompts as written by --save-prompts")
    ap.add_argument("--lengths-file", type=Path, default=None, help="force EOS at lengths drawn from this file")
    ap.add_argument("--save-prompts", type=Path, default=None, help="write the workloads' prompts here (JSON)")
    ap.add_argument("--save-lengths", type=Path, default=None, help="write continuous batching's lengths here")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.shape and not gpu and args.shape != "llama-tiny":
        print(f"--shape {args.shape} needs a CUDA GPU")
        return 2
    ways = [w.strip() for w in args.ways.split(",") if w.strip()]
    names = [w.strip() for w in args.workloads.split(",") if w.strip()]
    started_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    host = machine()
    loads = {name: workload_rows(name, args.limit, args.samples, args.data_dir, args.prompts_file,
                                 args.max_new_tokens) for name in names}
    if args.save_prompts:
        args.save_prompts.write_text(json.dumps({name: [
            {"id": f"{name}/{i}", "messages": list(r.messages), "params": {**r.params.__dict__, "n": 1}}
            for i, r in enumerate(rows)] for name, rows in loads.items()}, ensure_ascii=False))
        print(f"wrote {sum(map(len, loads.values()))} rows to {args.save_prompts}")
    if not ways:
        return 0
    backend = load(args)
    restores = []
    if args.lengths_file:
        lengths = json.loads(args.lengths_file.read_text())
        for name, rows in loads.items():
            restores.append(force_lengths(lengths.get(name) or lengths["stereotype"], rows, backend.eos_ids[0]))
    results: dict[str, dict[str, list[dict[str, Any]]]] = {name: {} for name in names}
    try:
        backend.generate(next(iter(loads.values()))[:2])  # warm-up: kernels, allocator, first-call imports
        for _ in range(args.repeat):
            for name, rows in loads.items():
                for way in ways:
                    if way == "helm" and not any(r.params.temperature > 0 for r in rows):
                        continue  # greedy prompts: the HELM loop is the one-at-a-time way
                    subset = rows[:args.one_rows] if way in ("one", "helm") and args.one_rows else rows
                    results[name].setdefault(way, []).append(run_way(way, backend, subset, args.slots,
                                                                     args.static_batch))
    finally:
        for restore in reversed(restores):
            restore()
    host["load_average_end"] = os.getloadavg()
    report = {"date": started_at, "machine": host, "model": args.shape or args.model,
              "dtype": str(backend.model.dtype).replace("torch.", ""), "samples": args.samples,
              "limit": args.limit, "versions": {"torch": torch.__version__,
                                                "transformers": __import__("transformers").__version__},
              "results": results}
    print_table(report)
    check_texts(results)
    if args.save_lengths:
        args.save_lengths.write_text(json.dumps({name: r["continuous"][0]["lengths"] for name, r in results.items()
                                                 if "continuous" in r}))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


def print_table(report: dict[str, Any]) -> None:
    m = report["machine"]
    print(f"{report['date']}  {m.get('gpu') or m['cpu']}, {m['cores']} cores, torch threads {m['torch_threads']}, "
          f"load {m['load_average'][0]:.1f} -> {m['load_average_end'][0]:.1f}  model {report['model']} "
          f"({report['dtype']})")
    print(f"{'workload':<11}{'way':<12}{'rows':>6}{'tokens':>8}{'seconds':>9}{'tok/s':>9}{'useful':>8}"
          f"{'vs one':>8}")
    for name, ways in report["results"].items():
        base = ways.get("one")
        for way, runs in ways.items():
            for r in runs:
                ratio = f"{r['tokens_per_second'] / base[0]['tokens_per_second']:.2f}x" if base else "-"
                useful = f"{r['useful_fraction']:.3f}" if r["useful_fraction"] is not None else "-"
                print(f"{name:<11}{way:<12}{r['rows']:>6}{r['tokens']:>8}{r['seconds']:>9.1f}"
                      f"{r['tokens_per_second']:>9.1f}{useful:>8}{ratio:>8}")


def check_texts(results: dict[str, dict[str, list[dict[str, Any]]]]) -> None:
    """Continuous and static batches must give the same texts (and one-at-a-time on the rows it ran)."""
    for name, ways in results.items():
        if "continuous" not in ways:
            continue
        reference = ways["continuous"][0]["texts"]
        for way in ("static", "one"):
            for run in ways.get(way, []):
                same = sum(a == b for a, b in zip(run["texts"], reference, strict=False))
                print(f"{name}: {way} texts equal to continuous batching's: {same}/{len(run['texts'])}")


if __name__ == "__main__":
    sys.exit(main())
