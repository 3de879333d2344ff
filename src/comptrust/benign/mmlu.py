"""Benign capability: 5-shot MMLU accuracy from log-likelihoods of the answer letters.

The prompt is lm-eval's ``mmlu`` task (the original Hendrycks format): a subject
header, five demonstrations ending ``" X\\n\\n"``, the question, and ``Answer:``;
the prediction is the letter among ``" A"`` ... ``" D"`` with the highest
log-probability.  Nothing is generated, so the runner calls
:meth:`MmluPerspective.evaluate_loglik` (``kind = "loglik"``) instead of
``generate`` + ``score``.

Data, in order of preference (the run records which, in ``details["data"]``):

1. ``--option mmlu_data=PATH`` (``options.extra["mmlu_data"]``) or ``$COMPTRUST_MMLU_DATA``: a local JSONL file,
   either cais/mmlu-style rows ``{question, subject, choices, answer}`` or the
   shared ``mmlu_test.jsonl`` rows ``{question, answer_a..answer_d, correct_answer, topic}``;
   an optional ``split`` field marks ``dev`` rows;
2. the smoke suite's ``mmlu/mmlu_smoke.jsonl`` when the data source is the smoke suite;
3. the Hugging Face dataset ``cais/mmlu`` (``all`` config, test + dev parquet).

Demonstrations are the first five ``dev`` rows of each subject (lm-eval's
``first_n`` sampler).  A file without dev rows (the shared test-only file) uses
the first five test questions of each subject as demonstrations and excludes
them from scoring; the result says so (``demo_source = "test-first-5"``).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from comptrust.backends.base import LoglikelihoodBackend
from comptrust.data.source import DataSource
from comptrust.errors import BackendError, DataError
from comptrust.perspectives.base import EvalOptions, Perspective, check_profile, mean
from comptrust.store.paths import comptrust_home
from comptrust.types import PerspectiveResult, Sample, ScoredSample

SUBJECTS: tuple[str, ...] = (
    "abstract_algebra", "anatomy", "astronomy", "business_ethics", "clinical_knowledge", "college_biology",
    "college_chemistry", "college_computer_science", "college_mathematics", "college_medicine",
    "college_physics", "computer_security", "conceptual_physics", "econometrics", "electrical_engineering",
    "elementary_mathematics", "formal_logic", "global_facts", "high_school_biology", "high_school_chemistry",
    "high_school_computer_science", "high_school_european_history", "high_school_geography",
    "high_school_government_and_politics", "high_school_macroeconomics", "high_school_mathematics",
    "high_school_microeconomics", "high_school_physics", "high_school_psychology", "high_school_statistics",
    "high_school_us_history", "high_school_world_history", "human_aging", "human_sexuality",
    "international_law", "jurisprudence", "logical_fallacies", "machine_learning", "management", "marketing",
    "medical_genetics", "miscellaneous", "moral_disputes", "moral_scenarios", "nutrition", "philosophy",
    "prehistory", "professional_accounting", "professional_law", "professional_medicine",
    "professional_psychology", "public_relations", "security_studies", "sociology", "us_foreign_policy",
    "virology", "world_religions",
)
LETTERS = ("A", "B", "C", "D")
CHOICES = [" A", " B", " C", " D"]  # lm-eval: target_delimiter " " + doc_to_choice
N_SHOT = 5
HUB_DATASET = "cais/mmlu"
# The pinned cais/mmlu commit (files all/{test,dev}-00000-of-00001.parquet).  $COMPTRUST_MMLU_REVISION
# moves the pin (docs/reproducibility.md); runs record the pin and the commit that resolved.
PINNED_HUB_REVISION = "c30699e8356da336a370243923dbaf21066bb9fe"
HUB_REVISION = os.environ.get("COMPTRUST_MMLU_REVISION", PINNED_HUB_REVISION)
SMOKE_FILE = "mmlu/mmlu_smoke.jsonl"
CHUNK = 64  # prompts per backend call, so progress is reported and memory stays bounded


# ---- prompt (lm-eval mmlu/default/_default_template_yaml) ---------------------------------

def question_text(q: dict[str, Any]) -> str:
    c = q["choices"]
    return f"{q['question'].strip()}\nA. {c[0]}\nB. {c[1]}\nC. {c[2]}\nD. {c[3]}\nAnswer:"


def build_prompt(subject: str, demos: list[dict[str, Any]], question: dict[str, Any]) -> str:
    """Header, demonstrations (each ``question_text + " X\\n\\n"``), then the question."""
    header = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
    shots = "".join(f"{question_text(d)} {d['answer']}\n\n" for d in demos)
    return header + shots + question_text(question)


# ---- data ---------------------------------------------------------------------------------

def normalize(row: Any, where: str) -> dict[str, Any]:
    """One question as ``{subject, question, choices[4], answer letter, split}`` from either format."""
    if not isinstance(row, dict) or "question" not in row:
        raise DataError(f"{where} is not an MMLU question", "use cais/mmlu rows or the mmlu_test.jsonl format")
    if not isinstance(row["question"], str):
        raise DataError(f"{where}: field 'question' must be a string, got {type(row['question']).__name__}",
                        "fix that row or restore the file")
    if "choices" in row:
        if not isinstance(row["choices"], list) or not all(isinstance(c, str) for c in row["choices"]):
            raise DataError(f"{where}: field 'choices' must be a list of 4 strings", "fix that row or restore the file")
        choices, answer, subject = list(row["choices"]), row.get("answer"), row.get("subject")
        if isinstance(answer, int) and 0 <= answer < 4:
            answer = LETTERS[answer]
    else:
        choices = [row.get(f"answer_{x}") for x in "abcd"]
        answer, subject = row.get("correct_answer"), row.get("topic")
    subject = str(subject or "").strip().lower().replace(" ", "_")
    if len(choices) != 4 or any(c is None for c in choices) or answer not in LETTERS or subject not in SUBJECTS:
        raise DataError(f"{where} needs 4 choices, an answer A-D (or 0-3) and one of the 57 MMLU subjects",
                        "fix that row or restore the file")
    return {"subject": subject, "question": str(row["question"]), "choices": [str(c) for c in choices],
            "answer": answer, "split": str(row.get("split") or "test")}


def read_rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(normalize(json.loads(line), f"{path}:{lineno}"))
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{lineno} is not valid JSON ({exc.msg})",
                                    "restore the file") from exc
    return rows


def hub_rows(revision: str = HUB_REVISION) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Test + dev rows of ``cais/mmlu`` (parquet, never pickle) and what was downloaded."""
    import pyarrow.parquet as pq
    from huggingface_hub import hf_hub_download

    rows: list[dict[str, Any]] = []
    resolved = None
    for split in ("dev", "test"):
        try:
            local = Path(hf_hub_download(HUB_DATASET, f"all/{split}-00000-of-00001.parquet", repo_type="dataset",
                                         revision=revision, cache_dir=str(comptrust_home() / "hub")))
        except Exception as exc:  # offline, unknown revision, ...: all mean the same to a user
            raise DataError(f"cannot download {HUB_DATASET}@{revision[:10]} ({type(exc).__name__})",
                            "check the network (or set COMPTRUST_MMLU_REVISION=main), or pass a local "
                            "MMLU JSONL file with --option mmlu_data=PATH") from exc
        if "snapshots" in local.parts:
            resolved = local.parts[local.parts.index("snapshots") + 1]
        for i, rec in enumerate(pq.read_table(local).to_pylist()):
            rows.append(normalize({**rec, "split": split}, f"{HUB_DATASET} {split} row {i}"))
    return rows, {"kind": "hub", "repo_id": HUB_DATASET, "revision": revision,
                  "default_pin": revision == PINNED_HUB_REVISION, "resolved_commit": resolved}


def with_demos(rows: list[dict[str, Any]], source: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Scored records per subject, each carrying its five demonstrations (self-contained)."""
    by_subject: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: {"dev": [], "test": []})
    for r in rows:
        by_subject[r["subject"]]["dev" if r["split"] == "dev" else "test"].append(r)
    out: dict[str, list[dict[str, Any]]] = {}
    for subject, parts in by_subject.items():
        if len(parts["dev"]) >= N_SHOT:
            demos, tests, demo_source = parts["dev"][:N_SHOT], parts["test"], "dev"
        else:
            demos, tests, demo_source = parts["test"][:N_SHOT], parts["test"][N_SHOT:], "test-first-5"
        shots = [{k: d[k] for k in ("question", "choices", "answer")} for d in demos]
        first = N_SHOT if demo_source == "test-first-5" else 0
        out[subject] = [{"subject": subject, "question": t["question"], "choices": t["choices"],
                         "answer": t["answer"], "position": first + i, "demos": shots,
                         "demo_source": demo_source, "data": source.get("kind")}
                        for i, t in enumerate(tests)]
    return out


def parse_letter(response: str) -> str | None:
    """The answer letter of a text response (``" B"``, ``"B. 4"``, ``"(c)"``); ``None`` if absent."""
    text = response.strip().lstrip("(").upper()
    if text.startswith("ANSWER:"):
        text = text[len("ANSWER:"):].strip()
    return text[0] if text and text[0] in LETTERS and (len(text) == 1 or not text[1].isalpha()) else None


class MmluPerspective(Perspective):
    """5-shot MMLU; the score is the macro average over subjects (micro is reported too)."""

    name: ClassVar[str] = "mmlu"
    version: ClassVar[int] = 1
    title: ClassVar[str] = "MMLU"  # the benign 5-shot measure
    column: ClassVar[str] = "MMLU"
    scenarios: ClassVar[tuple[str, ...]] = SUBJECTS
    kind: ClassVar[str] = "loglik"

    def __init__(self) -> None:
        self._loaded: dict[str, Any] = {}

    # ---- data -------------------------------------------------------------------------

    def dataset(self, data: DataSource | None, options: EvalOptions) -> tuple[dict[str, list], dict[str, Any]]:
        """Scored records per subject and a description of where they (and the demos) came from."""
        local = options.extra.get("mmlu_data") or os.environ.get("COMPTRUST_MMLU_DATA")
        path: Path | None = None
        if local:
            path = Path(local).expanduser()
            if path.is_dir():
                path = path / "mmlu_test.jsonl"
            if not path.is_file():
                raise DataError(f"MMLU file {path} does not exist", "pass a JSONL file of MMLU questions")
            source: dict[str, Any] = {"kind": "local", "path": str(path.resolve())}
        elif data is not None and data.kind == "smoke":
            path = data.path(SMOKE_FILE)
            source = {"kind": "smoke", "path": SMOKE_FILE, "note": "comptrust smoke questions, not MMLU"}
        key = f"file:{path.resolve()}" if path else f"hub:{HUB_REVISION}"
        if key not in self._loaded:
            if path is None:
                rows, source = hub_rows(HUB_REVISION)
            else:
                rows = read_rows(path)
            records = with_demos(rows, source)
            demo_sources = sorted({r[0]["demo_source"] for r in records.values() if r})
            self._loaded[key] = (records, {**source, "demo_source": demo_sources})
        return self._loaded[key]

    def load_records(self, data: DataSource, scenario: str, options: EvalOptions) -> list[Any]:
        records, _ = self.dataset(data, options)
        return records.get(scenario, [])

    def sample_from_record(self, scenario: str, record: Any, index: int, options: EvalOptions) -> Sample:
        q = normalize({**record, "subject": record.get("subject", scenario)} if isinstance(record, dict) else record,
                      f"{scenario} record {index}")
        shots = record.get("demos", [])
        if not isinstance(shots, list) or not all(isinstance(d, dict) for d in shots):
            raise DataError(f"{scenario} record {index}: field 'demos' must be a list of questions",
                            "pass records as comptrust wrote them to scores.jsonl")
        demos = [normalize({**d, "subject": q["subject"]}, f"{scenario} demo") for d in shots]
        prompt = build_prompt(q["subject"], demos, q)  # raw text, no chat template (lm-eval's default)
        params = self.params(options, max_tokens=1, temperature=0.0)
        return self.make_sample(scenario, index, [{"role": "user", "content": prompt}], params, record,
                                target=q["answer"], sample_id=f"{scenario}/{record.get('position', index)}",
                                demo_source=record.get("demo_source"))

    # ---- evaluation (the runner's hook for kind == "loglik") --------------------------

    def evaluate_loglik(self, backend: Any, data: DataSource | None, options: EvalOptions,
                        on_progress: Callable[[int, int], None] | None = None,
                        ) -> tuple[list[ScoredSample], PerspectiveResult]:
        """Score every selected question from the backend's letter log-probabilities.

        ``options.limit`` caps scored questions per subject (demonstrations are not counted).
        """
        if not isinstance(backend, LoglikelihoodBackend):
            raise BackendError(f"backend {getattr(backend, 'name', type(backend).__name__)!r} cannot compute "
                               "log-likelihoods, which MMLU needs", "run MMLU with --backend hf")
        samples = self.samples(data, options)  # type: ignore[arg-type]
        scored: list[ScoredSample] = []
        for start in range(0, len(samples), CHUNK):
            chunk = samples[start:start + CHUNK]
            logprobs = backend.choice_logprobs([s.messages[0]["content"] for s in chunk], list(CHOICES))
            for sample, lps in zip(chunk, logprobs, strict=True):
                pred = LETTERS[max(range(4), key=lambda j: lps[j])]
                outcome = self.score(sample, [pred], options.profile)
                outcome["logprobs"] = [round(float(x), 6) for x in lps]
                scored.append(ScoredSample(sample=sample, responses=[pred], outcome=outcome))
            if on_progress:
                on_progress(len(scored), len(samples))
        result = self.aggregate(scored, options.profile, options)
        result.details["data"] = self.dataset(data, options)[1]
        return scored, result

    # ---- scoring ----------------------------------------------------------------------

    verdict_basis: ClassVar[str] = "good = the most likely letter is the answer; no refusals (log-likelihood)"

    def score(self, sample: Sample, responses: list[str], profile: str) -> dict[str, Any]:
        """A response is the predicted letter (``comptrust score`` also accepts text answers)."""
        check_profile(profile)
        pred = parse_letter(responses[0]) if responses else None
        return {"pred": pred, "correct": pred == sample.target}

    def aggregate(self, scored: list[ScoredSample], profile: str,
                  options: EvalOptions | None = None) -> PerspectiveResult:
        """Per-subject accuracy; score = 100 x macro average (same in both profiles)."""
        check_profile(profile)
        per: dict[str, list[bool]] = defaultdict(list)
        for s in scored:
            per[s.sample.scenario].append(bool(s.outcome["correct"]))
        acc = {subj: sum(v) / len(v) for subj, v in sorted(per.items())}
        macro = mean(list(acc.values()))
        micro = sum(sum(v) for v in per.values()) / len(scored) if scored else None
        selected = self.selected_scenarios(options) if options else list(SUBJECTS)
        missing = [s for s in selected if s not in acc]
        demo_sources = sorted({s.sample.metadata.get("demo_source") or "unknown" for s in scored})
        return PerspectiveResult(
            perspective=self.name, version=self.version, profile=profile,
            score=None if macro is None else 100.0 * macro, refusal_rate=None,
            metrics={"macro_acc": macro, "micro_acc": micro, "subjects": len(acc), "n_shot": N_SHOT,
                     "demo_source": demo_sources},
            n_samples=len(scored), partial=bool(missing), missing=missing,
            details={"per_subject": {k: {"acc": v, "n": len(per[k])} for k, v in acc.items()}},
        )
