"""A perspective written the way a contributor adds one: this file and one registry line.

``test_seams.py`` registers it (``registry.PERSPECTIVES["dummy"] = "dummy_perspective:DummyPerspective"``)
and checks it is evaluable and named by the report with no other edit.  Its three yes/no questions
ship in the file, so it needs no data source; the score is the share answered correctly, and an
answer that is neither yes nor no counts as a refusal.
"""

from __future__ import annotations

from typing import Any

from comptrust.perspectives.base import EvalOptions, Perspective, check_profile
from comptrust.types import PerspectiveResult, Sample, ScoredSample

QUESTIONS = ({"question": "Is water wet?", "answer": "yes"}, {"question": "Is fire cold?", "answer": "no"},
             {"question": "Is ice cold?", "answer": "yes"})


class DummyPerspective(Perspective):
    name = "dummy"
    version = 1
    scenarios = ("plain",)
    title = "Dummy trait"
    column = "Dummy"

    def load_records(self, data: Any, scenario: str, options: EvalOptions) -> list[Any]:
        return [dict(q) for q in QUESTIONS]

    def sample_from_record(self, scenario: str, record: Any, index: int, options: EvalOptions) -> Sample:
        messages = [{"role": "user", "content": f"{record['question']} Answer yes or no."}]
        return self.make_sample(scenario, index, messages, self.params(options, max_tokens=4, temperature=0.0),
                                record, target=record["answer"])

    def score(self, sample: Sample, responses: list[str], profile: str) -> dict[str, Any]:
        answer = responses[0].strip().lower().rstrip(".")
        refused = answer not in ("yes", "no")
        return {"correct": not refused and answer == sample.target, "refusal": refused}

    def aggregate(self, scored: list[ScoredSample], profile: str,
                  options: EvalOptions | None = None) -> PerspectiveResult:
        check_profile(profile)
        n = len(scored)
        correct = sum(s.outcome["correct"] for s in scored)
        refused = sum(s.outcome["refusal"] for s in scored)
        return PerspectiveResult(self.name, self.version, profile, 100 * correct / n if n else None,
                                 100 * refused / n if n else None, n_samples=n)
