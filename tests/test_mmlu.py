"""Benign MMLU: prompt format, data loading, metrics by hand, and accuracy on a tiny model vs an
independent per-question computation (and vs lm-eval)."""

from __future__ import annotations

import json

import pytest

from comptrust.backends.hf.loglik import hf_choice_logprobs
from comptrust.backends.scripted import ScriptedBackend
from comptrust.benign.mmlu import (
    CHOICES,
    SUBJECTS,
    MmluPerspective,
    build_prompt,
    normalize,
    parse_letter,
    read_rows,
    with_demos,
)
from comptrust.data.source import SmokeSuite
from comptrust.errors import BackendError, DataError
from comptrust.perspectives.base import PROFILES, EvalOptions
from comptrust.types import ScoredSample
from conftest import MMLU_DATA


def test_prompt_follows_lm_eval_mmlu_format():
    demo = {"question": "What is 1+1? ", "choices": ["1", "2", "3", "4"], "answer": "B"}
    q = {"question": "What is 2+2?", "choices": ["3", "4", "5", "6"], "answer": "B"}
    expected = ("The following are multiple choice questions (with answers) about college mathematics.\n\n"
                "What is 1+1?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer: B\n\n"
                "What is 2+2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:")
    assert build_prompt("college_mathematics", [demo], q) == expected


def test_both_row_formats_normalize_the_same():
    a = normalize({"question": "Q", "answer_a": "w", "answer_b": "x", "answer_c": "y", "answer_d": "z",
                   "correct_answer": "C", "topic": "moral scenarios"}, "row")
    b = normalize({"question": "Q", "subject": "moral_scenarios", "choices": ["w", "x", "y", "z"], "answer": 2}, "row")
    assert a == b == {"subject": "moral_scenarios", "question": "Q", "choices": ["w", "x", "y", "z"],
                      "answer": "C", "split": "test"}
    with pytest.raises(DataError, match="57 MMLU subjects"):
        normalize({"question": "Q", "choices": ["w", "x", "y", "z"], "answer": 2, "subject": "cooking"}, "f:3")


@pytest.mark.parametrize("text,letter", [(" B", "B"), ("B", "B"), ("C. 4", "C"), ("(d) Paris", "D"),
                                         ("Answer: A", "A"), ("a", "A"), ("Because", None), ("", None)])
def test_parse_letter(text, letter):
    assert parse_letter(text) == letter


def test_shared_file_loader_and_offline_demonstrations():
    rows = read_rows(MMLU_DATA)
    assert len(rows) == 14042
    records = with_demos(rows, {"kind": "local"})
    assert sorted(records) == sorted(SUBJECTS)
    assert sum(len(v) for v in records.values()) == 14042 - 57 * 5  # first 5 per subject are the demos
    subject_rows = [r for r in rows if r["subject"] == "abstract_algebra"]
    first = records["abstract_algebra"][0]
    assert first["demo_source"] == "test-first-5" and first["position"] == 5
    assert first["question"] == subject_rows[5]["question"]
    assert [d["question"] for d in first["demos"]] == [r["question"] for r in subject_rows[:5]]

    p = MmluPerspective()
    opts = EvalOptions(limit=3, scenarios=["anatomy", "virology"], extra={"mmlu_data": str(MMLU_DATA)})
    samples = p.samples(None, opts)
    assert [s.id for s in samples] == [f"{s}/{i}" for s in ("anatomy", "virology") for i in (5, 6, 7)]
    assert samples[0].messages[0]["content"].count("\nAnswer:") == 6


def test_smoke_file_uses_its_dev_rows():
    p = MmluPerspective()
    samples = p.samples(SmokeSuite(), EvalOptions())
    assert len(samples) == 9
    assert {s.scenario for s in samples} == {"elementary_mathematics", "high_school_geography", "astronomy"}
    assert {s.metadata["demo_source"] for s in samples} == {"dev"}
    maths = [s for s in samples if s.scenario == "elementary_mathematics"]
    assert [s.target for s in maths] == ["A", "D", "B"]
    assert "What is 7 + 5?\nA. 10\nB. 11\nC. 12\nD. 13\nAnswer: C\n\n" in maths[0].messages[0]["content"]


def test_hub_offline_is_a_data_error():
    with pytest.raises(DataError, match="cais/mmlu"):
        MmluPerspective().samples(None, EvalOptions(scenarios=["anatomy"]))


# ---- metrics by hand -------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_macro_and_micro_accuracy_by_hand(profile):
    p = MmluPerspective()
    q = {"question": "Q", "choices": ["a", "b", "c", "d"], "demos": []}
    scored = []
    for subject, answers, preds in [("anatomy", "AB", "AB"), ("virology", "ABCD", "ADDD")]:
        for i, (ans, pred) in enumerate(zip(answers, preds, strict=True)):
            s = p.sample_from_record(subject, {**q, "subject": subject, "answer": ans, "position": i}, i,
                                     EvalOptions())
            scored.append(ScoredSample(s, [pred], p.score(s, [pred], profile)))
    r = p.aggregate(scored, profile, EvalOptions(scenarios=["anatomy", "virology"]))
    assert r.metrics["macro_acc"] == pytest.approx((2 / 2 + 2 / 4) / 2)
    assert r.metrics["micro_acc"] == pytest.approx(4 / 6)
    assert r.score == pytest.approx(75.0)
    assert r.partial is False and r.refusal_rate is None
    full = p.aggregate(scored, profile, EvalOptions())
    assert full.partial is True and len(full.missing) == 55


# ---- tiny model: our batched path vs an independent per-question computation ------------------------------


def independent_accuracy(model, tok, questions):
    """Per question, per letter: one unbatched forward pass on prompt + " X", sum of the letter's
    token log-probs; prediction = argmax. Prompt written out here, not by comptrust."""
    import torch

    preds = []
    for q, demos, subject in questions:
        def block(x):
            return (f"{x['question'].strip()}\nA. {x['choices'][0]}\nB. {x['choices'][1]}\n"
                    f"C. {x['choices'][2]}\nD. {x['choices'][3]}\nAnswer:")
        prompt = (f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}."
                  "\n\n" + "".join(block(d) + " " + d["answer"] + "\n\n" for d in demos) + block(q))
        scores = []
        for letter in "ABCD":
            ctx = tok(prompt)["input_ids"]
            full = tok(prompt + " " + letter)["input_ids"]
            assert full[: len(ctx)] == ctx
            with torch.no_grad():
                logp = model(torch.tensor([full])).logits[0].log_softmax(-1)
            scores.append(sum(float(logp[i - 1, full[i]]) for i in range(len(ctx), len(full))))
        preds.append("ABCD"[max(range(4), key=lambda j: scores[j])])
    return preds


def test_accuracy_on_tiny_llama_matches_independent_computation(tiny_llama):
    from comptrust.backends.hf.backend import HFBackend

    backend = HFBackend.from_path(tiny_llama, batch_size=3)
    p = MmluPerspective()
    opts = EvalOptions(limit=3, scenarios=["elementary_mathematics", "world_religions"],
                       extra={"mmlu_data": str(MMLU_DATA)})
    scored, result = p.evaluate_loglik(backend, None, opts)
    assert len(scored) == 6 and result.details["data"]["demo_source"] == ["test-first-5"]

    questions = [(s.sample.record, s.sample.record["demos"], s.sample.scenario) for s in scored]
    preds = independent_accuracy(backend.model, backend.tokenizer, questions)
    assert [s.responses[0] for s in scored] == preds
    expected = [sum(pr == s.sample.target for pr, s in zip(preds, scored, strict=True)
                    if s.sample.scenario == subj) / 3 for subj in ("elementary_mathematics", "world_religions")]
    assert result.metrics["macro_acc"] == pytest.approx(sum(expected) / 2)
    assert result.score == pytest.approx(100 * sum(expected) / 2)


def test_loglik_equals_lm_eval_hflm(tiny_llama):
    """Our batched log-likelihoods equal lm-eval's HFLM.loglikelihood on the same requests."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    prompts = ["Q: What is 2+2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:", "short\nAnswer: ", "x" * 3000]
    choices = [" A", " B", " C", " D"]
    ours = hf_choice_logprobs(model, tok, prompts, choices, batch_size=2)
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=2)
    reqs = [Instance(request_type="loglikelihood", doc={}, arguments=(pr, c), idx=j)
            for pr in prompts for j, c in enumerate(choices)]
    theirs = [r[0] for r in lm.loglikelihood(reqs, disable_tqdm=True)]
    assert [x for row in ours for x in row] == pytest.approx(theirs, abs=1e-4)


def test_scripted_backend_cannot_do_mmlu():
    with pytest.raises(BackendError, match="log-likelihoods"):
        MmluPerspective().evaluate_loglik(ScriptedBackend(["A"]), SmokeSuite(), EvalOptions())


def test_smoke_run_through_runner(tmp_path, tiny_llama):
    from comptrust.backends.hf.backend import HFBackend
    from comptrust.runner import evaluate

    backend = HFBackend.from_path(tiny_llama, batch_size=4)
    summary = evaluate(backend, ["mmlu"], SmokeSuite(), EvalOptions(), run_dir=tmp_path / "run")
    entry = summary["perspectives"]["mmlu"]
    assert entry["n_samples"] == 9 and entry["partial"] is True
    assert entry["details"]["data"]["kind"] == "smoke"
    rows = [json.loads(x) for x in (tmp_path / "run" / "mmlu" / "scores.jsonl").read_text().splitlines()]
    assert len(rows) == 9 and all(len(r["outcome"]["logprobs"]) == 4 for r in rows)
    correct = sum(r["outcome"]["correct"] for r in rows)
    per = entry["details"]["per_subject"]
    assert sum(v["acc"] * v["n"] for v in per.values()) == pytest.approx(correct)


@pytest.mark.slow
def test_lm_eval_mmlu_task_on_local_data_gives_the_same_accuracy(tiny_llama, tmp_path):
    """lm-eval's own MMLU task (same YAML fields, local files) reproduces our per-subject accuracy."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    subject = "high_school_us_history"  # long prompts: exercises left truncation too
    rows = [r for r in read_rows(MMLU_DATA) if r["subject"] == subject][:13]
    for i, r in enumerate(rows):
        r["split"] = "dev" if i < 5 else "test"
    local = tmp_path / "sub.jsonl"
    local.write_text("".join(json.dumps(r) + "\n" for r in rows))

    class Backend:
        name = "hf-direct"

        def choice_logprobs(self, prompts, choices):
            return hf_choice_logprobs(model, tok, prompts, choices, batch_size=4)

    _, ours = MmluPerspective().evaluate_loglik(
        Backend(), None, EvalOptions(scenarios=[subject], extra={"mmlu_data": str(local)}))
    files = {}
    for split in ("dev", "test"):
        files[split] = tmp_path / f"{split}.jsonl"
        files[split].write_text("".join(json.dumps({"question": r["question"], "choices": r["choices"],
                                                    "answer": "ABCD".index(r["answer"])}) + "\n"
                                        for r in rows if r["split"] == split))
    task = {"task": "local_mmlu", "dataset_path": "json",
            "dataset_kwargs": {"data_files": {k: str(v) for k, v in files.items()}},
            "test_split": "test", "fewshot_split": "dev", "fewshot_config": {"sampler": "first_n"},
            "output_type": "multiple_choice",
            "doc_to_text": "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\nC. {{choices[2]}}"
                           "\nD. {{choices[3]}}\nAnswer:",
            "doc_to_choice": ["A", "B", "C", "D"], "doc_to_target": "answer", "num_fewshot": 5,
            "description": "The following are multiple choice questions (with answers) about high school us "
                           "history.\n\n",
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]}
    res = simple_evaluate(model=HFLM(pretrained=model, tokenizer=tok, batch_size=4), tasks=[task],
                          task_manager=TaskManager(), verbosity="ERROR")
    assert res["results"]["local_mmlu"]["acc,none"] == pytest.approx(ours.metrics["macro_acc"])


def test_mmlu_log_likelihoods_are_cached_so_a_rerun_or_a_killed_run_computes_nothing_twice(tmp_path, tiny_llama,
                                                                                        monkeypatch):
    import comptrust.benign.mmlu as mmlu
    from comptrust.backends.hf.backend import HFBackend
    from comptrust.runner import evaluate
    from comptrust.store.cache import Cache

    backend = HFBackend.from_path(tiny_llama, batch_size=4)
    calls = []
    real = HFBackend.choice_logprobs

    def counted(self, prompts, choices):
        calls.append(len(prompts))
        if crash["after"] is not None and len(calls) > crash["after"]:
            raise KeyboardInterrupt  # the run is killed here
        return real(self, prompts, choices)

    crash = {"after": 1}
    monkeypatch.setattr(HFBackend, "choice_logprobs", counted)
    monkeypatch.setattr(mmlu, "CHUNK", 4)  # 9 smoke questions: chunks of 4, 4, 1
    with pytest.raises(KeyboardInterrupt):
        evaluate(backend, ["mmlu"], SmokeSuite(), EvalOptions(), run_dir=tmp_path / "killed")
    assert calls == [4, 4]  # the second chunk was being computed when the run died
    crash["after"] = None
    calls.clear()
    resumed = evaluate(backend, ["mmlu"], SmokeSuite(), EvalOptions(), run_dir=tmp_path / "resumed")
    assert calls == [4, 1]  # only what the killed run had not finished
    assert resumed["perspectives"]["mmlu"]["generation"]["cached"] == 4
    calls.clear()
    again = evaluate(backend, ["mmlu"], SmokeSuite(), EvalOptions(), run_dir=tmp_path / "again")
    assert calls == [] and again["perspectives"]["mmlu"]["generation"]["computed"] == 0
    monkeypatch.setattr(HFBackend, "choice_logprobs", real)
    Cache().clear(model=backend.fingerprint)  # clearing the model drops its log-likelihoods too
    fresh = evaluate(backend, ["mmlu"], SmokeSuite(), EvalOptions(), run_dir=tmp_path / "fresh")
    assert fresh["perspectives"]["mmlu"]["generation"]["computed"] == 9
    stats = Cache().stats()
    assert stats["logliks"] == 9 and stats["scores"] == 0  # not counted as external (toxicity) scores
    read = lambda run: (tmp_path / run / "mmlu" / "scores.jsonl").read_text()  # noqa: E731
    assert read("resumed") == read("again") == read("fresh")


def _subject_prompts(subjects, per_subject):
    opts = EvalOptions(limit=per_subject, scenarios=list(subjects), extra={"mmlu_data": str(MMLU_DATA)})
    return [s.messages[0]["content"] for s in MmluPerspective().samples(None, opts)]


def test_shared_demonstrations_are_encoded_once_per_subject_with_the_same_log_probs(tiny_llama, monkeypatch):
    """A subject's header and demonstrations are encoded once, even across chunks; values do not move."""
    import comptrust.backends.hf.loglik as loglik
    from comptrust.backends.hf.backend import HFBackend

    backend = HFBackend.from_path(tiny_llama, batch_size=3)
    prompts = _subject_prompts(("elementary_mathematics", "world_religions"), 4)
    assert len(prompts) == 8
    plain = []
    for p in prompts:  # one prompt per call, nothing to share: the whole prompt is encoded
        monkeypatch.setattr(loglik, "MIN_SHARED_PREFIX", 10**9)
        plain += hf_choice_logprobs(backend.model, backend.tokenizer, [p], list(CHOICES), batch_size=1)
    monkeypatch.setattr(loglik, "MIN_SHARED_PREFIX", 16)
    encoded = []
    real = loglik._encode_prefix

    def counted(model, tokens, prefixes):
        cache, length = real(model, tokens, prefixes)
        encoded.append((length, cache))
        return cache, length

    monkeypatch.setattr(loglik, "_encode_prefix", counted)
    shared = []
    for start in range(0, 8, 2):  # chunks of two questions, as evaluate_loglik sends them
        shared += backend.choice_logprobs(prompts[start:start + 2], list(CHOICES))
    assert [x for row in shared for x in row] == pytest.approx([x for row in plain for x in row], abs=1e-4)
    assert [max(range(4), key=row.__getitem__) for row in shared] == [
        max(range(4), key=row.__getitem__) for row in plain]
    caches = {id(cache) for _length, cache in encoded}
    assert len(encoded) == 4 and len(caches) == 2  # four chunks, one encoding per subject
    header = backend.tokenizer.encode(prompts[0][:prompts[0].index("\n\n") + 2])
    assert all(length > 5 * len(header) for length, _cache in encoded)  # the demonstrations, not just the header


def test_loglik_with_shared_prefixes_equals_lm_eval_hflm(tiny_llama):
    """Prompts sharing their demonstrations: our log-likelihoods equal lm-eval's HFLM.loglikelihood."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    prompts = _subject_prompts(("elementary_mathematics", "astronomy"), 3)
    ours = hf_choice_logprobs(model, tok, prompts, list(CHOICES), batch_size=2, prefixes={})
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=2)
    reqs = [Instance(request_type="loglikelihood", doc={}, arguments=(pr, c), idx=j)
            for pr in prompts for j, c in enumerate(CHOICES)]
    theirs = [r[0] for r in lm.loglikelihood(reqs, disable_tqdm=True)]
    assert [x for row in ours for x in row] == pytest.approx(theirs, abs=1e-4)
