"""Agreement of local toxicity classifiers with Google's Perspective API (issue 26, part 5).

DecodingTrust's toxicity prompt files carry the Perspective TOXICITY score of every prompt
(and, for the RealToxicityPrompts sets, of the human continuation).  Each candidate scores the
same texts; the table compares its probability with Perspective's:

* three text sets, built as in docs/perspectives/toxicity.md: RTP continuations
  (``continuation.text`` of nontoxic.jsonl + toxic.jsonl where ``continuation.toxicity`` is
  set: 2,377), RTP prompts (``prompt.text``: 2,396), GPT-3.5/4 prompts (``prompt.text`` with
  ``prompt.score.toxicity`` of the two generated sets: 2,400), plus all of them together;
* Pearson and Spearman on the probability, ROC AUC against Perspective > 0.5;
* at DecodingTrust's 0.5 threshold: accuracy, F1 (Perspective > 0.5 is the positive class)
  and Cohen's kappa;
* the aggregates with one sample per prompt: EMT = mean toxicity, TP = share above 0.5,
  for Perspective and for the candidate (the toxicity perspective's max over 25 samples has
  no reference here: the files hold one Perspective-scored text per prompt).

Candidates live in different environments (their pickles pin different scikit-learn builds,
one needs TensorFlow), so the script works in two steps, standard library only:

    python benchmarks/toxicity_agreement.py score --candidate offline --out scores/offline.json
    python benchmarks/toxicity_agreement.py table scores/*.json

``score`` runs in any Python that has the candidate's package (it imports nothing from
comptrust unless the candidate is ``comptrust:<scorer>``), times it and writes one score per
text; ``table`` prints the markdown table and the throughput.  ``--data`` is the DecodingTrust
data folder (default ``../shared/data/decodingtrust`` from the repository root).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any, Callable, List  # noqa: UP035 (the score step also runs under Python 3.7/3.8)

PROMPTS = Path("toxicity/user_prompts")
RTP_FILES = ("nontoxic.jsonl", "toxic.jsonl")
GPT_FILES = ("toxic.jsonl.gpt3.n=25.out1.split.annotated.jsonl.filtered.jsonl",
             "toxic.jsonl.gpt4.n=25.out1.split.annotated.jsonl.filtered.jsonl")
SETS = ("RTP continuations", "RTP prompts", "GPT-3.5/4 prompts")
THRESHOLD = 0.5

Predict = Callable[[List[str]], List[float]]  # noqa: UP006


def load_texts(data: Path) -> list[dict[str, Any]]:
    """Every Perspective-labelled text of the four prompt files, in file order, with its set."""
    rows: list[dict[str, Any]] = []
    for name in RTP_FILES:
        for line in (data / PROMPTS / name).read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            cont = rec.get("continuation") or {}
            if cont.get("toxicity") is not None:
                rows.append({"set": SETS[0], "text": cont["text"], "perspective": float(cont["toxicity"])})
            rows.append({"set": SETS[1], "text": rec["prompt"]["text"],
                         "perspective": float(rec["prompt"]["toxicity"])})
    for name in GPT_FILES:
        for line in (data / PROMPTS / name).read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            rows.append({"set": SETS[2], "text": rec["prompt"]["text"],
                         "perspective": float(rec["prompt"]["score"]["toxicity"])})
    return rows


# ---- candidates: each returns (predict, description); imports only inside -----------------------


def _version(dist: str) -> str | None:
    try:
        from importlib import metadata
    except ImportError:  # Python 3.7, where the oldest pickles still load
        import pkg_resources

        return pkg_resources.get_distribution(dist).version
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def cand_offline() -> tuple[Predict, str]:
    import profanity_check

    return (lambda texts: [float(p) for p in profanity_check.predict_prob(texts)],
            f"alt-profanity-check {_version('alt-profanity-check')} predict_prob")


def cand_cuss_inspect() -> tuple[Predict, str]:
    from cuss_inspect import cuss_inspect as ci

    # its predict_prob rounds to 2 decimals; the same model unrounded
    return (lambda texts: [float(p) for p in ci.model.predict_proba(ci.vectorizer.transform(texts))[:, 1]],
            f"cuss-inspect {_version('cuss-inspect')} logistic regression, unrounded")


def cand_best_profanity() -> tuple[Predict, str]:
    from best_profanity import best_profanity as bp

    return (lambda texts: [float(p) for p in bp.model_eng.predict_proba(bp.vectorizer_eng.transform(texts))[:, 1]],
            f"best-profanity {_version('best-profanity')} English model")


def cand_profanity_check2() -> tuple[Predict, str]:
    import profanity_check

    return (lambda texts: [float(p) for p in profanity_check.predict_prob(texts)],
            f"profanity-check2 {_version('profanity-check2')} predict_prob")


def cand_hatesonar() -> tuple[Predict, str]:
    import numpy as np
    from hatesonar.api import Sonar

    sess = Sonar().sess

    def predict(texts: list[str]) -> list[float]:
        _labels, probs = sess.run(None, {"text": np.array(texts, dtype=object)})
        return [1.0 - float(p[2]) for p in probs]  # 1 - P(neither) = P(hate) + P(offensive)

    return predict, f"hatesonar {_version('hatesonar')} 1 - P(neither)"


def _tox_block(rescale: bool) -> tuple[Predict, str]:
    from tox_block.prediction import make_predictions

    def predict(texts: list[str]) -> list[float]:
        out = make_predictions(list(texts), rescale=rescale)
        return [min(1.0, float(out[i]["toxic"])) for i in range(len(texts))]

    how = "min-max rescaled (package default)" if rescale else "raw sigmoid"
    return predict, f"tox-block {_version('tox-block')} 'toxic' head, {how}"


def cand_tox_block() -> tuple[Predict, str]:
    return _tox_block(rescale=False)


def cand_tox_block_rescaled() -> tuple[Predict, str]:
    return _tox_block(rescale=True)


def cand_comptrust(name: str) -> tuple[Predict, str]:
    from comptrust.scorers.base import make_scorer

    scorer = make_scorer(name)

    def predict(texts: list[str]) -> list[float]:
        return [math.nan if v is None else float(v) for v in scorer.score(texts)]

    return predict, f"comptrust scorer {name}: {json.dumps(scorer.info(), sort_keys=True)}"


CANDIDATES: dict[str, Callable[[], tuple[Predict, str]]] = {
    "offline": cand_offline,
    "cuss-inspect": cand_cuss_inspect,
    "best-profanity": cand_best_profanity,
    "profanity-check2": cand_profanity_check2,
    "hatesonar": cand_hatesonar,
    "tox-block": cand_tox_block,
    "tox-block-rescaled": cand_tox_block_rescaled,
}


def get_candidate(name: str) -> tuple[Predict, str]:
    if name.startswith("comptrust:"):
        return cand_comptrust(name.split(":", 1)[1])
    if name not in CANDIDATES:
        sys.exit(f"error: unknown candidate {name!r}; choose from {', '.join(CANDIDATES)} or comptrust:<scorer>")
    try:
        return CANDIDATES[name]()
    except ImportError as exc:
        sys.exit(f"error: candidate {name!r} is not installed in this Python ({exc}); pip install it first")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cmd_score(args: argparse.Namespace) -> None:
    rows = load_texts(Path(args.data))
    if args.limit:
        rows = rows[:args.limit]
    texts = [r["text"] for r in rows]
    predict, description = get_candidate(args.candidate)
    predict(texts[:8])  # warm-up: lazy loads and first-call compilation stay out of the timing
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    scores: list[float] = []
    for i in range(0, len(texts), args.batch_size):
        scores.extend(predict(texts[i:i + args.batch_size]))
    seconds = time.perf_counter() - start
    if len(scores) != len(texts):
        sys.exit(f"error: {args.candidate} returned {len(scores)} scores for {len(texts)} texts")
    out = {"candidate": args.candidate, "description": description, "n": len(texts), "seconds": seconds,
           "texts_per_s": len(texts) / seconds, "batch_size": args.batch_size, "cpu": cpu_model(),
           "cpus": os.cpu_count(), "loadavg_1m_before": load_before, "loadavg_1m_after": os.getloadavg()[0],
           "threads_env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")},
           "python": platform.python_version(), "date": date.today().isoformat(),
           "texts_sha": _texts_digest(texts), "scores": scores}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out), encoding="utf-8")
    print(f"{args.candidate}: {len(texts)} texts in {seconds:.2f} s ({len(texts) / seconds:,.0f} texts/s, "
          f"load {load_before:.2f}) -> {args.out}")


def _texts_digest(texts: Sequence[str]) -> str:
    import hashlib

    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8") + b"\0")
    return h.hexdigest()[:16]


# ---- metrics (pure Python, so the table needs no numpy) ---------------------------------------


def _ranks(xs: Sequence[float]) -> list[float]:
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else math.nan


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float:
    return pearson(_ranks(xs), _ranks(ys))


def auc(labels: Sequence[bool], scores: Sequence[float]) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula, ties counted half."""
    pos = sum(labels)
    neg = len(labels) - pos
    if pos == 0 or neg == 0:
        return math.nan
    r = _ranks(scores)
    return (sum(ri for ri, lab in zip(r, labels, strict=True) if lab) - pos * (pos + 1) / 2) / (pos * neg)


def threshold_stats(ref: Sequence[float], cand: Sequence[float]) -> dict[str, float]:
    tp = sum(1 for a, b in zip(ref, cand, strict=True) if a > THRESHOLD and b > THRESHOLD)
    fp = sum(1 for a, b in zip(ref, cand, strict=True) if a <= THRESHOLD < b)
    fn = sum(1 for a, b in zip(ref, cand, strict=True) if b <= THRESHOLD < a)
    tn = len(ref) - tp - fp - fn
    n = len(ref)
    acc = (tp + tn) / n
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else math.nan
    p_ref, p_cand = (tp + fn) / n, (tp + fp) / n
    expected = p_ref * p_cand + (1 - p_ref) * (1 - p_cand)
    kappa = (acc - expected) / (1 - expected) if expected < 1 else math.nan
    return {"accuracy": acc, "f1": f1, "kappa": kappa, "precision": tp / (tp + fp) if tp + fp else math.nan,
            "recall": tp / (tp + fn) if tp + fn else math.nan}


def set_metrics(ref: list[float], cand: list[float]) -> dict[str, float]:
    labels = [r > THRESHOLD for r in ref]
    out = {"n": len(ref), "pearson": pearson(ref, cand), "spearman": spearman(ref, cand),
           "auc": auc(labels, cand), **threshold_stats(ref, cand),
           "emt_ref": sum(ref) / len(ref), "emt_cand": sum(cand) / len(cand),
           "tp_ref": sum(labels) / len(ref), "tp_cand": sum(1 for c in cand if c > THRESHOLD) / len(cand)}
    return out


def bootstrap_difference(ref: list[float], cand: list[float], base: list[float], reps: int,
                         seed: int) -> dict[str, tuple[float, float]]:
    """Paired bootstrap 95% intervals of (candidate - baseline) Pearson and Spearman on one text set.

    The same resampled texts score both classifiers, so the interval says whether the candidate
    agrees with Perspective better than the baseline beyond the luck of which texts were drawn.
    """
    import numpy as np

    def ranks(a: Any) -> Any:  # average ranks of each row (ties share the mean rank)
        out = np.empty(a.shape, dtype=float)
        for k, row in enumerate(a):
            _vals, inv, counts = np.unique(row, return_inverse=True, return_counts=True)
            ends = np.cumsum(counts)
            out[k] = (ends - (counts - 1) / 2.0)[inv]
        return out

    def corr(x: Any, y: Any) -> Any:
        x = x - x.mean(axis=1, keepdims=True)
        y = y - y.mean(axis=1, keepdims=True)
        return (x * y).sum(axis=1) / np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))

    rng = np.random.default_rng(seed)
    r, c, b = (np.asarray(v, dtype=float) for v in (ref, cand, base))
    idx = rng.integers(0, len(r), size=(reps, len(r)))
    rs, cs, bs = r[idx], c[idx], b[idx]
    d_pearson = corr(rs, cs) - corr(rs, bs)
    rr = ranks(rs)
    d_spearman = corr(rr, ranks(cs)) - corr(rr, ranks(bs))
    return {name: (float(np.nanpercentile(d, 2.5)), float(np.nanpercentile(d, 97.5)))
            for name, d in (("pearson", d_pearson), ("spearman", d_spearman))}


def _f(x: float, digits: int = 2) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def cmd_table(args: argparse.Namespace) -> None:
    rows = load_texts(Path(args.data))
    results = [json.loads(Path(p).read_text(encoding="utf-8")) for p in args.files]
    print("| candidate | texts | n | Pearson | Spearman | AUC | acc@0.5 | F1@0.5 | kappa | "
          "EMT Persp./cand. | TP Persp./cand. |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for res in results:
        if res["n"] != len(rows) or res["texts_sha"] != _texts_digest([r["text"] for r in rows]):
            sys.exit(f"error: {res['candidate']} scored other texts ({res['n']}); rerun score without --limit")
        for set_name in (*SETS, "all"):
            idx = [i for i, r in enumerate(rows) if set_name in ("all", r["set"]) and not math.isnan(res["scores"][i])]
            m = set_metrics([rows[i]["perspective"] for i in idx], [res["scores"][i] for i in idx])
            print(f"| {res['candidate']} | {set_name} | {m['n']:,} | {_f(m['pearson'])} | {_f(m['spearman'])} | "
                  f"{_f(m['auc'])} | {_f(m['accuracy'])} | {_f(m['f1'])} | {_f(m['kappa'])} | "
                  f"{_f(m['emt_ref'])} / {_f(m['emt_cand'])} | {_f(m['tp_ref'])} / {_f(m['tp_cand'])} |")
    print()
    print("| candidate | what | texts/s | batch | CPU (cores) | load 1 min before / after | date |")
    print("|---|---|---:|---:|---|---|---|")
    for res in results:
        print(f"| {res['candidate']} | {res['description'][:120]} | {res['texts_per_s']:,.0f} | {res['batch_size']} | "
              f"{res['cpu']} ({res['cpus']}) | {res['loadavg_1m_before']:.2f} / {res['loadavg_1m_after']:.2f} | "
              f"{res['date']} |")
    base = next((res for res in results if res["candidate"] == args.baseline), None)
    if base is None or args.bootstrap <= 0:
        return
    print()
    print(f"Paired bootstrap ({args.bootstrap:,} resamples, seed {args.seed}): 95% interval of candidate minus "
          f"{args.baseline}")
    print()
    print("| candidate | texts | Δ Pearson | Δ Spearman |")
    print("|---|---|---|---|")
    for res in results:
        if res is base:
            continue
        for set_name in SETS[:2]:
            idx = [i for i, r in enumerate(rows) if r["set"] == set_name
                   and not math.isnan(res["scores"][i]) and not math.isnan(base["scores"][i])]
            ci = bootstrap_difference([rows[i]["perspective"] for i in idx], [res["scores"][i] for i in idx],
                                      [base["scores"][i] for i in idx], args.bootstrap, args.seed)
            print(f"| {res['candidate']} | {set_name} | {ci['pearson'][0]:+.3f} to {ci['pearson'][1]:+.3f} | "
                  f"{ci['spearman'][0]:+.3f} to {ci['spearman'][1]:+.3f} |")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/decodingtrust", help="DecodingTrust data folder")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("score", help="score every Perspective-labelled text with one candidate")
    s.add_argument("--candidate", required=True, help=f"{', '.join(CANDIDATES)} or comptrust:<scorer>")
    s.add_argument("--out", required=True)
    s.add_argument("--batch-size", type=int, default=256)
    s.add_argument("--limit", type=int, default=0, help="first N texts only (a quick check; table refuses it)")
    t = sub.add_parser("table", help="print the agreement table of score files")
    t.add_argument("files", nargs="+")
    t.add_argument("--baseline", default="offline", help="candidate the paired bootstrap compares against")
    t.add_argument("--bootstrap", type=int, default=1000, help="resamples (0: no intervals; needs numpy)")
    t.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    {"score": cmd_score, "table": cmd_table}[args.cmd](args)


if __name__ == "__main__":
    main()
