"""MMLU 5-shot: comptrust (shared demonstrations) vs lm-evaluation-harness 0.4.13 on the same questions.

    python benchmarks/mmlu.py                         # SmolLM2-135M, 4 questions x 57 subjects
    python benchmarks/mmlu.py --limit 18              # ~1,000 questions (18 x 57 = 1,026)
    python benchmarks/mmlu.py --ways comptrust,lm-eval --subjects anatomy virology --limit 50

The same questions of ``../shared/data/mmlu/mmlu_test.jsonl`` (the first five of each subject are the
demonstrations), on one copy of the weights in one process, three ways:

* ``comptrust``: ``MmluPerspective.evaluate_loglik`` on the hf backend (prompt building included;
  a subject's header and demonstrations encoded once);
* ``unshared``: the same with prefix sharing off (comptrust before this change);
* ``lm-eval``: lm-eval 0.4.13's ``HFLM.loglikelihood`` on exactly the same (prompt, " A".." D")
  requests, same batch size (its task pipeline, which only builds these prompts, is not timed).

It prints seconds, questions per second, the speed-up over lm-eval, whether the predictions are
identical, and the largest log-probability difference.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
MMLU = Path(__file__).resolve().parents[2] / "shared" / "data" / "mmlu" / "mmlu_test.jsonl"


def main(argv: list[str] | None = None) -> int:
    import os

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--data", type=Path, default=MMLU)
    ap.add_argument("--limit", type=int, default=4, help="questions per subject")
    ap.add_argument("--subjects", nargs="*", default=None, help="default: all 57")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--ways", default="comptrust,unshared,lm-eval")
    ap.add_argument("--dtype", default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    from scheduling import machine

    import comptrust.backends.hf.loglik as loglik
    from comptrust.backends.hf.backend import HFBackend
    from comptrust.benign.mmlu import CHOICES, LETTERS, MmluPerspective
    from comptrust.perspectives.base import EvalOptions

    host = machine()
    started_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    backend = HFBackend.from_path(args.model, batch_size=args.batch_size, dtype=args.dtype)
    perspective = MmluPerspective()
    options = EvalOptions(limit=args.limit, scenarios=args.subjects, extra={"mmlu_data": str(args.data)})
    samples = perspective.samples(None, options)
    prompts = [s.messages[0]["content"] for s in samples]
    print(f"{len(prompts)} questions over {len({s.scenario for s in samples})} subjects", file=sys.stderr)
    backend.choice_logprobs(prompts[:2], list(CHOICES))  # warm-up

    def ours() -> list[list[float]]:
        backend._loglik_prefixes.clear()
        _scored, _result = perspective.evaluate_loglik(backend, None, options)
        return [s.outcome["logprobs"] for s in _scored]

    def unshared() -> list[list[float]]:
        shared, loglik.MIN_SHARED_PREFIX = loglik.MIN_SHARED_PREFIX, 10**9
        try:
            return ours()
        finally:
            loglik.MIN_SHARED_PREFIX = shared

    def lm_eval() -> list[list[float]]:
        from lm_eval.api.instance import Instance
        from lm_eval.models.huggingface import HFLM

        lm = HFLM(pretrained=backend.model, tokenizer=backend.tokenizer, batch_size=args.batch_size)
        requests = [Instance(request_type="loglikelihood", doc={}, arguments=(p, c), idx=j)
                    for p in prompts for j, c in enumerate(CHOICES)]
        values = [r[0] for r in lm.loglikelihood(requests, disable_tqdm=True)]
        return [values[i:i + 4] for i in range(0, len(values), 4)]

    results: dict[str, dict[str, Any]] = {}
    values: dict[str, list[list[float]]] = {}
    for way, run in (("comptrust", ours), ("unshared", unshared), ("lm-eval", lm_eval)):
        if way not in args.ways.split(","):
            continue
        print(f"{way} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        values[way] = run()
        seconds = time.perf_counter() - started
        predictions = "".join(LETTERS[max(range(4), key=row.__getitem__)] for row in values[way])
        results[way] = {"seconds": round(seconds, 1), "questions": len(prompts),
                        "questions_per_second": round(len(prompts) / seconds, 3), "predictions": predictions}
    host["load_average_end"] = os.getloadavg()
    reference = "lm-eval" if "lm-eval" in values else next(iter(values))
    for way, r in results.items():
        r["same_predictions_as_" + reference] = r["predictions"] == results[reference]["predictions"]
        r["max_abs_logprob_diff"] = max(abs(a - b) for row, ref in zip(values[way], values[reference], strict=True)
                                        for a, b in zip(row, ref, strict=True))
    m = host
    print(f"{started_at}  {m['cpu']}, {m['cores']} cores, torch threads {m['torch_threads']}, load "
          f"{m['load_average'][0]:.1f} -> {m['load_average_end'][0]:.1f}  {args.model} "
          f"({str(backend.model.dtype).replace('torch.', '')}), batch {args.batch_size}")
    print(f"{'way':<11}{'questions':>10}{'seconds':>9}{'q/s':>8}{'vs ' + reference:>12}{'same preds':>12}"
          f"{'max |dlogp|':>13}")
    base = results[reference]["seconds"]
    for way, r in results.items():
        print(f"{way:<11}{r['questions']:>10}{r['seconds']:>9.1f}{r['questions_per_second']:>8.2f}"
              f"{base / r['seconds']:>11.2f}x{str(r['same_predictions_as_' + reference]):>12}"
              f"{r['max_abs_logprob_diff']:>13.2e}")
    if args.json:
        args.json.write_text(json.dumps({"date": started_at, "machine": host, "model": args.model,
                                         "limit": args.limit, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
