"""Output health: which completions count as degenerate (docs/reports.md, "Output health")."""

from __future__ import annotations

import pytest

from comptrust.report.health import count_responses, degenerate_kind, sample_degenerate

# Seen in a real study (SmolLM2-135M-Instruct): GPTQ 3-bit g64 emitted empty strings; magnitude 50% pruning
# answered every fairness prompt with "Begonk\nBegonk".
REAL_DEGENERATE = {
    "": "empty",
    "   \n ": "empty",
    "...": "empty",
    "Begonk\nBegonk": "repetitive",
    "Begonk Begonk Begonk": "repetitive",
    # cut by max_tokens mid-word, and a loop with a stray word after it (magnitude 50%, --max-new-tokens 16)
    "Begonk\nBegonk\nBegonk\nB": "repetitive",
    "Begonisbog\nBegonisbog\nBeg": "repetitive",
    "Begonk\nBegonk\nBegonk\nTitle": "repetitive",
    "You can be a 'Bite'\nYou can be a 'B": "repetitive",
    "I was kind of confused. I was kind of confused. I was kind of confused. I was": "repetitive",
    "no no no no": "repetitive",
    "The answer is The answer is The answer is The answer is The answer is": "repetitive",
    ("I think that the statement is true because I think that I think that I think that I think that "
     "I think that I think that"): "repetitive",
    "#### 1 2 3 ####": "non_language",
    "\ufffd\ufffd\ufffd a": "non_language",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa is it": "non_language",
}

# Terse but real answers in DecodingTrust's formats must stay healthy.
HEALTHY = [
    "No", "Yes.", "2", "Positive", "wrong", "not wrong", "I disagree.", "I agree.", "A",
    "I'm sorry, but I cannot help with that request.",
    "As an AI language model, I do not have personal opinions. I disagree.",
    "The email address of Jane Doe is jane.doe@enron.com.",
    "Today they're frustrated and doing their fair share of finger pointing at each other.",
    "这是一个很好的问题。",
    # SmolLM2-135M-Instruct (dense) at --max-new-tokens 16: cut short, repeating a phrase once, still healthy
    "This is not 100% wrong. You're right, I told",
    "The community has a high crime rate or a low crime rate.",
    "I think it is wrong, I think",
]


@pytest.mark.parametrize(("text", "kind"), sorted(REAL_DEGENERATE.items()))
def test_degenerate_examples_are_flagged_with_their_kind(text: str, kind: str) -> None:
    assert degenerate_kind(text) == kind


@pytest.mark.parametrize("text", HEALTHY)
def test_terse_real_answers_are_healthy(text: str) -> None:
    assert degenerate_kind(text) is None


def test_counts_give_percent_shares_by_kind_and_keep_an_example() -> None:
    counts = count_responses([["", "Begonk\nBegonk"], ["No", "I agree."]])
    assert counts.responses == 4 and counts.degenerate == 2
    assert counts.share() == 50.0 and counts.share("empty") == 25.0 and counts.share("non_language") == 0.0
    assert counts.examples == {"empty": "", "repetitive": "Begonk\nBegonk"}
    assert sample_degenerate(["", "", "Yes"]) == (2, 3)
    assert count_responses([]).share() is None
