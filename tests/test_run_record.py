"""The typed run record: spec.json and summary.json read back as written, and a damaged one is one line."""

from __future__ import annotations

import json

import pytest

from comptrust.api import evaluate
from comptrust.backends.scripted import ScriptedBackend
from comptrust.cli import main
from comptrust.store.record import RecordError, RunSpec, RunSummary, read_summary


def _responder(row):
    return "I agree." if "wheel" in row.messages[-1]["content"] else "No. I disagree."


@pytest.fixture
def run_dir(tmp_path):
    out = tmp_path / "run"
    evaluate(ScriptedBackend(_responder), ["stereotype"], smoke=True, samples=1,
             scenarios=["stereotype:targeted"], out=out)
    return out


def test_summary_and_spec_read_back_to_exactly_what_the_runner_wrote(run_dir):
    for name, record in (("summary.json", RunSummary), ("spec.json", RunSpec)):
        text = (run_dir / name).read_text()
        raw = json.loads(text)
        typed = record.from_dict(raw, run_dir / name)
        assert typed.to_dict() == raw and list(typed.to_dict()) == list(raw), name  # same keys, same order
        assert json.dumps(typed.to_dict(), indent=2, ensure_ascii=False) + "\n" == text, name  # byte for byte
        assert record.from_dict(typed.to_dict()) == typed, name
    assert read_summary(run_dir).finished is True and not read_summary(run_dir).extra


def test_each_perspective_records_the_options_it_ran_under(run_dir):
    from comptrust.registry import get_perspective
    from comptrust.report.bootstrap import eval_options
    from comptrust.report.runs import load_run

    summary = json.loads((run_dir / "summary.json").read_text())
    entry = summary["perspectives"]["stereotype"]
    assert summary["options"]["scenarios"] == ["stereotype:targeted"]
    assert entry["options"] == {**summary["options"], "scenarios": ["targeted"]}  # its own, unprefixed
    assert json.loads((run_dir / "stereotype" / "result.json").read_text())["options"] == entry["options"]

    # the report re-aggregates with the recorded options, and derives the same for a run written before
    recorded = eval_options(load_run(run_dir), get_perspective("stereotype"))
    for path in (run_dir / "summary.json", run_dir / "stereotype" / "result.json"):
        data = json.loads(path.read_text())
        (data["perspectives"]["stereotype"] if "perspectives" in data else data).pop("options")
        path.write_text(json.dumps(data))
    assert eval_options(load_run(run_dir), get_perspective("stereotype")) == recorded
    assert recorded.scenarios == ["targeted"]


@pytest.mark.parametrize("damage, named", [
    (lambda s: s.update(perspectives=["stereotype"]), "'perspectives' is a JSON array, not an object"),
    (lambda s: s.update(model="tiny"), "'model' is a JSON string, not an object"),
    (lambda s: s["perspectives"].update(stereotype=88.0),
     "the entry of perspective 'stereotype' is a JSON number, not an object"),
    (lambda s: s.pop("model"), "is not a comptrust run summary (it has no 'model')"),
])
def test_a_damaged_summary_is_one_line_naming_the_file(run_dir, tmp_path, capsys, damage, named):
    path = run_dir / "summary.json"
    summary = json.loads(path.read_text())
    damage(summary)
    path.write_text(json.dumps(summary))
    assert main(["report", str(run_dir), "--out", str(tmp_path / "report"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert str(path) in err and named in err and "re-run" in err


def test_a_summary_that_is_no_json_object_is_a_record_error(tmp_path):
    (tmp_path / "summary.json").write_text("[1, 2]")
    with pytest.raises(RecordError, match=r"summary.json is not a comptrust run summary \(not a JSON object\)"):
        read_summary(tmp_path)
