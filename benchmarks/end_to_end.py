"""End to end: ``comptrust eval`` against a DecodingTrust/HELM-style loop on the same work, wall clock.

    python benchmarks/end_to_end.py                                   # stereotype --samples 5, then ood style_8shot
    python benchmarks/end_to_end.py --perspective stereotype --limit 4 --samples 5 --repeat 2
    python benchmarks/end_to_end.py --perspective ood --scenarios style_8shot --limit 4

Each way is its own process, timed from its start to its exit (interpreter, imports, model load,
generation, scoring and writing included), on real DecodingTrust data with the benchmark's own
decoding (``max_tokens`` 150 and temperature 1 for stereotype, 20 tokens greedy for ood) and EOS on:

* ``comptrust``: ``comptrust eval MODEL --perspectives P --data-dir ... --limit L --samples S``
  with an empty generation cache (the converted model is reused, as after ``make demo``);
* ``loop``: what DecodingTrust's HF path and HELM do: plain transformers, one ``generate`` per
  prompt (``num_return_sequences`` = the draws, for sampled prompts; batch 1 for greedy ones), then
  the same parser and aggregation, and the responses written to a JSONL file.

Both build the prompts with comptrust's perspective code (the same messages and chat template) and
load the same converted weights in the same dtype.  The table prints each wall time, the ratio and,
for comptrust, where its time went (``summary.json``'s ``timing``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "decodingtrust"
PRESETS = {"stereotype": ["--perspective", "stereotype", "--samples", "5"],
           "ood": ["--perspective", "ood", "--scenarios", "style_8shot"]}


def loop(args: argparse.Namespace) -> int:
    """The HELM-style loop itself (run in its own process by :func:`main`)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from comptrust.backends.hf.backend import choose_dtype
    from comptrust.chat import prompt_token_ids, render
    from comptrust.data.source import LocalFolder
    from comptrust.models import resolve_model
    from comptrust.perspectives.base import EvalOptions
    from comptrust.registry import get_perspective
    from comptrust.runner import score_samples

    folder = resolve_model(args.model).path
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=choose_dtype("cpu")).eval()
    perspective = get_perspective(args.perspective)
    options = EvalOptions(limit=args.limit, samples=args.samples, scenarios=args.scenarios)
    samples = perspective.samples(LocalFolder(args.data_dir), options)
    torch.manual_seed(0)
    responses = []
    tokens = 0
    eos = model.generation_config.eos_token_id
    eos = set([eos] if isinstance(eos, int) else eos or []) | {tokenizer.eos_token_id}
    with open(args.out, "w", encoding="utf-8") as fh:
        for sample in samples:
            ids = torch.tensor([prompt_token_ids(render(sample.messages, "model", tokenizer), "model", tokenizer)])
            p = sample.params
            sampling = ({"do_sample": True, "temperature": p.temperature, "top_p": p.top_p, "top_k": None}
                        if p.temperature > 0 else {"do_sample": False})
            with torch.inference_mode():
                out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=p.max_tokens,
                                     num_return_sequences=p.n, eos_token_id=sorted(eos),
                                     pad_token_id=tokenizer.pad_token_id, **sampling)
            texts = []
            for seq in out[:, ids.shape[1]:].tolist():
                cut = next((j for j, t in enumerate(seq) if t in eos), len(seq))
                tokens += cut
                texts.append(tokenizer.decode(seq[:cut]))
            responses.append(texts)
            fh.write(json.dumps({"sample_id": sample.id, "responses": texts}) + "\n")
    scored = score_samples(perspective, samples, responses, options.profile)
    result = perspective.aggregate(scored, options.profile, options)
    print(json.dumps({"score": result.score, "rows": sum(len(r) for r in responses), "tokens": tokens}))
    return 0


def timed(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:6])} ... failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return seconds, done.stdout


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--perspective", default=None, help="default: both presets (stereotype n=5, ood style_8shot)")
    ap.add_argument("--scenarios", nargs="*", default=None)
    ap.add_argument("--limit", type=int, default=4)
    ap.add_argument("--samples", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=1, help="run both ways this many times, interleaved")
    ap.add_argument("--data-dir", type=Path, default=SHARED)
    ap.add_argument("--ways", default="comptrust,loop")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--loop", action="store_true", help=argparse.SUPPRESS)  # the loop's own process
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.loop:
        return loop(args)
    if args.perspective is None:
        base = list(argv if argv is not None else sys.argv[1:])
        for preset in PRESETS.values():
            code = main(base + preset)
            if code:
                return code
        return 0
    return compare(args)


def compare(args: argparse.Namespace) -> int:
    from comptrust.store.paths import comptrust_home

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from scheduling import machine

    home = comptrust_home()
    (home / "models").mkdir(parents=True, exist_ok=True)
    python = sys.executable
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    # The converted model is prepared (untimed), as after `make demo`; generation caches start empty.
    subprocess.run([python, "-c", f"from comptrust.models import resolve_model; resolve_model({args.model!r})"],
                   env=env, check=True)
    common = ["--limit", str(args.limit)] + (["--samples", str(args.samples)] if args.samples else [])
    host = machine()
    started_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    ways = [w for w in args.ways.split(",") if w]
    runs: dict[str, list[dict[str, Any]]] = {w: [] for w in ways}
    with tempfile.TemporaryDirectory(prefix="comptrust-e2e-") as tmp:
        for attempt in range(args.repeat):
            for way in ways:
                fresh = Path(tmp) / f"{way}-{attempt}"
                (fresh / "home").mkdir(parents=True)
                (fresh / "home" / "models").symlink_to(home / "models")  # converted weights, no cached texts
                run_env = dict(env, COMPTRUST_HOME=str(fresh / "home"))
                if way == "comptrust":
                    scenarios = ["--scenarios", ",".join(args.scenarios)] if args.scenarios else []
                    command = [python, "-m", "comptrust", "eval", args.model, "--perspectives", args.perspective,
                               "--data-dir", str(args.data_dir), *common, *scenarios, "--out", str(fresh / "run"),
                               "--quiet"]
                else:
                    scenarios = ["--scenarios", *args.scenarios] if args.scenarios else []
                    command = [python, __file__, "--loop", "--model", args.model, "--perspective", args.perspective,
                               "--data-dir", str(args.data_dir), *common, *scenarios, "--out",
                               str(fresh / "responses.jsonl")]
                print(f"{way} ({attempt + 1}/{args.repeat}) ...", file=sys.stderr, flush=True)
                seconds, stdout = timed(command, run_env)
                entry: dict[str, Any] = {"seconds": round(seconds, 1)}
                if way == "comptrust":
                    summary = json.loads((fresh / "run" / "summary.json").read_text())
                    result = summary["perspectives"][args.perspective]
                    entry |= {"timing": summary["timing"], "rows": result["generation"]["rows"],
                              "tokens": result["generation"]["completion_tokens"], "score": result["score"],
                              "dtype": summary["model"]["dtype"]}
                else:
                    entry |= json.loads(stdout.strip().splitlines()[-1])
                runs[way].append(entry)
    host["load_average_end"] = os.getloadavg()
    report = {"date": started_at, "machine": host, "model": args.model, "perspective": args.perspective,
              "scenarios": args.scenarios, "limit": args.limit, "samples": args.samples, "runs": runs}
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


def print_report(report: dict[str, Any]) -> None:
    m = report["machine"]
    runs = report["runs"]
    what = report["perspective"] + (f" {' '.join(report['scenarios'])}" if report["scenarios"] else "")
    print(f"{report['date']}  {m['cpu']}, {m['cores']} cores, torch threads {m['torch_threads']}, load "
          f"{m['load_average'][0]:.1f} -> {m['load_average_end'][0]:.1f}  {report['model']}  {what} "
          f"--limit {report['limit']}" + (f" --samples {report['samples']}" if report["samples"] else ""))
    loop_seconds = [r["seconds"] for r in runs.get("loop", [])]
    for way, entries in runs.items():
        for i, r in enumerate(entries):
            ratio = f"  {loop_seconds[i] / r['seconds']:.2f}x the loop" if way == "comptrust" and loop_seconds else ""
            extra = (f"  dtype {r['dtype']}," if way == "comptrust" else "") + \
                f"  {r['rows']} rows, {r.get('tokens', '?')} tokens"
            print(f"{way:<10} run {i + 1}: {r['seconds']:>8.1f} s{ratio}{extra}, score {r['score']}")
            if "timing" in r:
                print("           " + ", ".join(f"{k} {v:.1f}" for k, v in r["timing"].items()))


if __name__ == "__main__":
    sys.exit(main())
