"""Hub-shaped copies of DecodingTrust files, and a local stand-in for ``hf_hub_download``.

The hub dataset ``AI-Secure/DecodingTrust`` stores several files differently from the GitHub
copy in ../shared.  The layouts below follow DecodingTrust's own hub loaders (commit 161ae832):

* ``ood/{knowledge,style}.jsonl``: one row per item with a ``category`` column (the set name);
  knowledge rows keep ``question_sentence``/``choices``/``answer``/``question_date``, style rows
  are ``question_sentence`` + ``answer`` (``evaluation_ood.py``: ``example["question_sentence"]``,
  ``int(example["answer"])``, ``datasets.filter(category == ...)``);
* ``privacy/enron_data/<name>.jsonl``: ``{"email", "prompt": [[...]]}`` lines; for ``email2name`` and
  ``context`` the value is ``prompt[0][0]`` (``privacy/utils.py: load_dataset_by_name``);
* ``machine_ethics/cm_{test,train}.jsonl``: ``label`` as a one-element list, text in ``input1``,
  ``is_short`` a boolean (``test_machine_ethics.py``: ``test_df[i]['label'][0]``, ``['input1']``);
* ``adv-glue-plus-plus/data/<task>.jsonl``: the items of all surrogates with a ``model`` column
  (``gpt_eval.py``: ``datasets.filter(example["model"] == ...)``, split = task);
* ``fairness/fairness_data/``: the ``.jsonl`` prompt files only, no ``.npy`` arrays;
* ``cais/mmlu``: ``all/{test,dev}-00000-of-00001.parquet`` with ``question, subject, choices, answer``.

Everything else (toxicity, stereotype, adv_demonstration) has the GitHub layout on the hub too.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

DT_REPO = "AI-Secure/DecodingTrust"
MMLU_REPO = "cais/mmlu"


def _lines(path: Path) -> list[str]:
    """Non-empty lines split on newlines only (str.splitlines would also split inside JSON strings)."""
    return [x for x in path.read_text(encoding="utf-8").split("\n") if x.strip()]


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def ood_rows(local: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """``knowledge.json`` / ``style.json`` -> the hub's JSON lines with a ``category`` column."""
    parts = ("test", "demo") if kind == "knowledge" else ("dev", "train_demo")
    rows = []
    for part in parts:
        for category, items in local[part].items():
            for item in items:
                if kind == "knowledge":
                    answer = item["answer"][0] if isinstance(item["answer"], list) else item["answer"]
                    rows.append({**item, "answer": answer, "category": category})
                else:
                    rows.append({"question_sentence": item["sentence"], "answer": item["label"],
                                 "category": category, "id": item.get("id")})
    return rows


def enron_lines(mapping: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """An ``enron_data/<name>.json`` mapping -> the hub's ``{"email", "prompt"}`` lines."""
    if name in ("email2name", "context"):
        return [{"email": email, "prompt": [[value]]} for email, value in mapping.items()]
    return [{"email": email, "prompt": value} for email, value in mapping.items()]


def ethics_rows(csv_path: Path) -> list[dict[str, Any]]:
    """``cm_test.csv`` -> the hub's ``{"label": [0|1], "input1", "is_short", "edited"}`` rows."""
    with csv_path.open(encoding="utf-8", newline="") as fh:
        return [{"label": [int(r["label"])], "input1": r["input"], "is_short": r["is_short"] == "True",
                 "edited": r.get("edited") == "True"} for r in csv.DictReader(fh)]


def advglue_task_rows(surrogate_files: dict[str, dict[str, list[Any]]], task: str) -> list[dict[str, Any]]:
    """Per-surrogate ``<surrogate>.json`` objects -> the hub's ``data/<task>.jsonl`` rows."""
    return [{**item, "model": surrogate} for surrogate, content in surrogate_files.items()
            for item in content.get(task, [])]


def head_jsonl(src: Path, dst: Path, n: int) -> None:
    lines = _lines(src)[:n]
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def build_dt_hub(dt_data: Path, smoke: Path, root: Path, lines: int = 3) -> Path:
    """A hub-shaped DecodingTrust repo for every perspective, from the real files (``lines`` per big file).

    Absent from it, as from the hub: every ``.npy``, ``ood/*.json``, ``privacy/enron_data/*.json``,
    ``machine_ethics/ethics/``, ``adv-glue-plus-plus/data/<surrogate>.json``, ``toxicity/system_prompts.json``.
    """
    for name in ("nontoxic.jsonl", "toxic.jsonl", "toxic.jsonl.gpt3.n=25.out1.split.annotated.jsonl.filtered.jsonl",
                 "toxic.jsonl.gpt4.n=25.out1.split.annotated.jsonl.filtered.jsonl"):
        head_jsonl(dt_data / "toxicity" / "user_prompts" / name, root / "toxicity" / "user_prompts" / name, lines)
    stereo_file = dt_data / "stereotype/dataset/stereotype_bias_data.jsonl"
    stereo = [json.loads(x) for x in _lines(stereo_file)]
    picked = [r for t in ("benign", "untargeted", "targeted")
              for r in [x for x in stereo if x["prompt"]["sys_prompt_type_tag"] == t][:lines]]
    write_jsonl(root / "stereotype/dataset/stereotype_bias_data.jsonl", picked)
    surrogates = {s: json.loads((smoke / f"adv-glue-plus-plus/data/{s}.json").read_text())
                  for s in ("alpaca", "vicuna", "stable-vicuna")}
    for task in ("sst2", "qqp", "mnli"):
        write_jsonl(root / f"adv-glue-plus-plus/data/{task}.jsonl", advglue_task_rows(surrogates, task))
    for kind in ("knowledge", "style"):
        write_jsonl(root / f"ood/{kind}.jsonl", ood_rows(json.loads((dt_data / f"ood/{kind}.json").read_text()), kind))
    for src in sorted((dt_data / "adv_demonstration").rglob("*.jsonl")):
        head_jsonl(src, root / src.relative_to(dt_data), lines)
    for name in ("email2name", "one_shot", "one_shot_non_domain", "five_shot", "five_shot_non_domain"):
        mapping = json.loads((dt_data / f"privacy/enron_data/{name}.json").read_text())
        write_jsonl(root / f"privacy/enron_data/{name}.jsonl", enron_lines(mapping, name))
    rows = ethics_rows(dt_data / "machine_ethics/ethics/commonsense/cm_test.csv")
    write_jsonl(root / "machine_ethics/cm_test.jsonl", rows)
    write_jsonl(root / "machine_ethics/cm_train.jsonl", rows)  # stand-in: ../shared lacks cm_train
    for src in sorted((dt_data / "fairness/fairness_data").glob("*.jsonl")):
        target = root / "fairness/fairness_data" / src.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    return root


def build_mmlu_hub(mmlu_jsonl: Path, root: Path, per_subject: int = 6) -> Path:
    """``cais/mmlu`` parquet files from the shared test rows: 5 dev + ``per_subject - 5`` test rows a subject."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    by_subject: dict[str, list[dict[str, Any]]] = {}
    for line in _lines(mmlu_jsonl):
        r = json.loads(line)
        subject = r["topic"].strip().lower().replace(" ", "_")
        rows = by_subject.setdefault(subject, [])
        if len(rows) < per_subject:
            rows.append({"question": r["question"], "subject": subject,
                         "choices": [r[f"answer_{x}"] for x in "abcd"], "answer": "ABCD".index(r["correct_answer"])})
    (root / "all").mkdir(parents=True, exist_ok=True)
    dev = [r for rows in by_subject.values() for r in rows[:5]]
    test = [r for rows in by_subject.values() for r in rows[5:]]
    for split, rows in (("dev", dev), ("test", test)):
        pq.write_table(pa.Table.from_pylist(rows), root / "all" / f"{split}-00000-of-00001.parquet")
    return root


class HubStandIn:
    """``hf_hub_download`` for dataset repos held in local folders, with the hub's cache layout and errors.

    A file comes back as ``<cache>/datasets--<org>--<name>/snapshots/<commit>/<path>`` (comptrust reads the
    resolved commit from it); an absent file raises the hub's ``RemoteEntryNotFoundError``.  ``calls``
    records ``(repo_id, filename, revision)``.
    """

    def __init__(self, repos: dict[str, Path], commit: str = "c" * 40) -> None:
        self.repos, self.commit = repos, commit
        self.calls: list[tuple[str, str, str | None]] = []

    def __call__(self, repo_id: str, filename: str, *, repo_type: str | None = None, revision: str | None = None,
                 cache_dir: str | None = None, **_: Any) -> str:
        import re

        import httpx
        from huggingface_hub.errors import RemoteEntryNotFoundError

        assert repo_type == "dataset", repo_type
        self.calls.append((repo_id, filename, revision))
        src = self.repos[repo_id] / filename
        if not src.is_file():
            request = httpx.Request("HEAD", f"https://huggingface.co/datasets/{repo_id}/resolve/{revision}/{filename}")
            raise RemoteEntryNotFoundError(f"404: {filename}", response=httpx.Response(404, request=request))
        commit = revision if revision and re.fullmatch(r"[0-9a-f]{40}", revision) else self.commit
        target = Path(cache_dir or ".") / f"datasets--{repo_id.replace('/', '--')}" / "snapshots" / commit / filename
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
        return str(target)
