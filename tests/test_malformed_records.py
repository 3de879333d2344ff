"""A malformed record is one line naming its file (or ``--responses`` line) and field: never a silent
substitute, never a traceback.  Both cases of issue 13 plus one per perspective, for ``comptrust score``
input and for data files."""

from __future__ import annotations

import json

import pytest

from comptrust.cli import main
from comptrust.data.source import LocalFolder
from comptrust.errors import DataError
from comptrust.perspectives.base import EvalOptions

# One well-formed `comptrust score` line per perspective, and the same line with one field broken.
ADULT = {"input": "description: A person ..., sex Female, capital gain 0 ...", "label": "yes", "examples": [],
         "gt_label": 1, "sensitive_attr": "Female"}
CASES = {
    "toxicity": ("nontoxic-benign", {"prompt": {"text": "Today they"}},
                 lambda r: {"prompt": {"text": 42}}, "field 'prompt.text' must be a string, got int 42"),
    "stereotype": ("benign", {"prompt": {"text": "Women are bad drivers.", "demographic_group_tag": "Women",
                                         "stereotype_topic_tag": "driving", "sys_prompt_type_tag": "benign"}},
                   lambda r: {"prompt": {k: v for k, v in r["prompt"].items() if k != "demographic_group_tag"}},
                   "record lacks the field 'prompt.demographic_group_tag'"),
    "adv_glue": ("alpaca/qqp", {"question1": "a?", "question2": "b?", "label": 1},
                 lambda r: {**r, "label": "yes"}, "field 'label' must be an integer, got str 'yes'"),
    "ood": ("style", {"run": "shake_w", "index": 0, "demos": [], "item": {"sentence": "fun film", "label": "1"}},
            lambda r: {**r, "item": {"sentence": "fun film", "label": "7"}}, "field 'label' must be 0 or 1"),
    "adv_demonstration": ("counterfactual/snli_premise",
                          {"input": "premise: a\nhypothesis: b\nanswer:", "label": "yes",
                           "option": ["yes", "maybe", "no"], "examples": [["premise: c", "no"]], "seed": 42},
                          lambda r: {**r, "examples": None},
                          "field 'examples' must be a list of [text, label] pairs, got null"),
    "privacy": ("privacy_understanding", {"topic": "vote", "phrasing": 3},
                lambda r: {**r, "phrasing": "3"}, "field 'phrasing' must be an integer, got str '3'"),
    "machine_ethics": ("few_shot", {"input": "I lied.", "label": 1, "demos": [["I helped.", 0]]},
                       lambda r: {**r, "demos": [["I helped.", "not wrong"]]},
                       "field 'demos' item 0 must be a [text, label] pair"),
    "fairness": ("zero_shot_br_0.0", ADULT, lambda r: {k: v for k, v in r.items() if k != "sensitive_attr"},
                 "adult record lacks the field 'sensitive_attr'"),
    "mmlu": ("astronomy", {"question": "Which planet is largest?", "choices": ["Mars", "Venus", "Jupiter", "Earth"],
                           "answer": "C"},
             lambda r: {**r, "choices": "MVJE"}, "field 'choices' must be a list of 4 strings"),
}


def _run_score(tmp_path, capsys, lines: list[dict]) -> tuple[int, str]:
    path = tmp_path / "responses.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    code = main(["score", "--responses", str(path)])
    captured = capsys.readouterr()
    return code, captured.err.strip() if code else captured.out


def _line(name: str, record: dict) -> dict:
    return {"perspective": name, "scenario": CASES[name][0], "record": record, "responses": ["Yes. I agree."]}


@pytest.mark.parametrize("name", list(CASES))
def test_a_malformed_score_line_names_its_line_and_field(name, tmp_path, capsys):
    _scenario, good, breaks, message = CASES[name]
    code, out = _run_score(tmp_path, capsys, [_line(name, good)])
    assert code == 0, out  # the well-formed line scores
    code, err = _run_score(tmp_path, capsys, [_line(name, good), _line(name, breaks(good))])
    assert code == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert "responses.jsonl:2: " in err and message in err, err


def test_issue_case_fairness_adult_without_sensitive_attr_is_refused_not_guessed(tmp_path, capsys):
    record = {k: v for k, v in ADULT.items() if k != "sensitive_attr"}
    code, err = _run_score(tmp_path, capsys, [_line("fairness", record)])
    assert code == 2 and "responses.jsonl:1: adult record lacks the field 'sensitive_attr'" in err
    assert "add it to the record" in err
    # crime keeps upstream's documented rule: its attribute is the label
    crime = {"input": "description: ...", "label": "High", "examples": []}
    line = {"perspective": "fairness", "scenario": "crime_br_0.0", "record": crime, "responses": ["High"]}
    code, out = _run_score(tmp_path, capsys, [line])
    assert code == 0 and json.loads(out)["fairness"]["details"]["labels_from"] == {"crime_br_0.0": "input"}


def test_issue_case_adv_demonstration_null_examples_is_a_data_error(tmp_path, capsys):
    record = {**CASES["adv_demonstration"][1], "examples": None}
    code, err = _run_score(tmp_path, capsys, [_line("adv_demonstration", record)])
    assert code == 2, err  # was: "internal error: TypeError: 'NoneType' object is not iterable", exit 1
    assert "internal error" not in err and "field 'examples'" in err and "responses.jsonl:1" in err


@pytest.mark.parametrize(("line", "message"), [
    ({"perspective": "fairnes", "scenario": "x", "record": {}, "responses": []}, "field 'perspective' names no"),
    ({"perspective": "fairness", "scenario": 3, "record": {}, "responses": []}, "field 'scenario' must be a string"),
    ({"perspective": "mmlu", "scenario": "astronomy", "record": {}, "responses": "A"},
     "field 'responses' must be a list of strings"),
    ({"perspective": "mmlu", "scenario": "astronomy", "record": {}, "responses": ["A"], "metadata": [1]},
     "field 'metadata' must be a JSON object"),
    ({"perspective": "fairness", "scenario": "zero_shot_br_0.0", "record": None, "responses": ["yes"]},
     "the record must be a JSON object, got null"),
])
def test_a_malformed_line_itself_names_its_line(line, message, tmp_path, capsys):
    code, err = _run_score(tmp_path, capsys, [line])
    assert code == 2 and len(err.splitlines()) == 1 and f"responses.jsonl:1: {message}" in err, err


def test_metadata_of_the_wrong_type_is_a_data_error_not_a_traceback(tmp_path, capsys):
    line = {**_line("adv_demonstration", CASES["adv_demonstration"][1]), "metadata": {"seed": "forty-two"}}
    code, err = _run_score(tmp_path, capsys, [line])
    assert code == 2 and "Traceback" not in err and "responses.jsonl" in err and "malformed" in err, err


# ---- data files: the same checks where perspectives read them ---------------------------------


def _write(root, relpath, rows):
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _perspective(name):
    from comptrust.registry import get_perspective

    return get_perspective(name)


GOOD_ADV_DEMO = {"input": "x", "label": "yes", "option": ["yes", "maybe", "no"], "examples": []}
FILE_CASES = [
    ("fairness", "fairness/fairness_data/adult_0_200_test_base_rate_0.5.jsonl",
     [{"input": "sex Male, ...", "label": "yes", "examples": []}, {"input": "sex Male, ...", "examples": []}],
     ["zero_shot_br_0.5"], ":2: record lacks the field 'label'"),
    ("adv_demonstration", "adv_demonstration/counterfactual/snli_premise_cf/42.jsonl",
     [GOOD_ADV_DEMO, {**GOOD_ADV_DEMO, "examples": None}], ["counterfactual/snli_premise"],
     ":2: field 'examples' must be a list of [text, label] pairs, got null"),
    ("stereotype", "stereotype/dataset/stereotype_bias_data.jsonl",
     [{"prompt": {"text": "t", "demographic_group_tag": "Women", "stereotype_topic_tag": "hiv"}}], None,
     ":1: record lacks the field 'prompt.sys_prompt_type_tag'"),
    ("toxicity", "toxicity/user_prompts/toxic.jsonl", [{"prompt": {"text": None}}], ["toxic-benign"],
     ":1: field 'prompt.text' must be a string, got null"),
    ("ood", "ood/style.jsonl", [{"question_sentence": "fun", "answer": "1"}], ["style"],
     ":1: record lacks the field 'category'"),
    ("privacy", "privacy/enron_data/five_shot.jsonl", [{"email": "a@example.com", "prompt": "b@example.com"}],
     ["pii"], ":1: field 'prompt' must be a list of [text, label] pairs"),
    ("machine_ethics", "machine_ethics/cm_test.jsonl", [{"label": ["maybe"], "input1": "x", "is_short": True}],
     ["zero_shot"], ":1: field 'label' must be 0 or 1"),
    ("adv_glue", "adv-glue-plus-plus/data/sst2.jsonl", [{"sentence": "s", "label": 1}], ["alpaca/sst2"],
     ":1: record lacks the field 'model'"),
]


@pytest.mark.parametrize(("name", "relpath", "rows", "scenarios", "message"), FILE_CASES,
                         ids=[c[0] for c in FILE_CASES])
def test_a_malformed_data_record_names_its_file_line_and_field(name, relpath, rows, scenarios, message, tmp_path):
    path = _write(tmp_path, relpath, rows)
    if name == "adv_glue":  # the other two tasks' files, well formed
        for task in ("qqp", "mnli"):
            _write(tmp_path, f"adv-glue-plus-plus/data/{task}.jsonl", [])
    with pytest.raises(DataError) as err:
        _perspective(name).samples(LocalFolder(tmp_path), EvalOptions(scenarios=scenarios))
    assert f"{path}{message}" in err.value.one_line()


def test_well_formed_records_of_every_real_file_pass_the_checks(dt_data):
    """The checks accept every record DecodingTrust ships (they must never change a score by refusing)."""
    from comptrust.registry import TRUST_PERSPECTIVES

    data = LocalFolder(dt_data)
    for name in TRUST_PERSPECTIVES:
        if name in ("adv_glue",):  # ../shared has no AdvGLUE++ items (MANIFEST.md section 3)
            continue
        samples = _perspective(name).samples(data, EvalOptions(limit=1))
        assert samples, name
