"""The extension seams: a new compression method or perspective is its own file plus one registry line.

``dummy_method.py`` and ``dummy_perspective.py`` are such files.  Registering the method
(monkeypatching ``registry.COMPRESSORS``) must make every list of methods know it with no other
edit: CLI help, config validation, the report's name for it, the sweep's size estimate, and
compressing a model.  Registering the perspective must make it evaluable and give it a title and
a column name in the report.
"""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from comptrust import api, registry
from comptrust.backends.scripted import ScriptedBackend
from comptrust.cli import main
from comptrust.compression import compress_model, load_manifest, make_config, methods
from comptrust.errors import ConfigError
from comptrust.perspectives.base import EvalOptions
from comptrust.report.build import write_report
from comptrust.report.findings import TITLES
from comptrust.report.paper import COLUMNS
from comptrust.report.runs import load_run, method_name
from comptrust.sweep.config import parse_sweep
from comptrust.sweep.estimate import artifact_format, artifact_sizes
from comptrust.sweep.plan import build_plan
from comptrust.types import ScoredSample
from conftest import build_tiny_llama
from dummy_perspective import QUESTIONS, DummyPerspective
from report_fakes import compressed_model, dense_model, write_run


@pytest.fixture
def dummy_method(monkeypatch):
    monkeypatch.setitem(registry.COMPRESSORS, "dummy", "dummy_method:DummyCompressor")


def test_a_registered_method_is_in_every_list_and_the_cli_help(dummy_method, capsys):
    assert methods("quantization") == ("rtn", "gptq", "awq", "dummy")
    assert "dummy" not in methods(calibrated=True) and "dummy" in methods()
    with pytest.raises(SystemExit):
        main(["compress", "--help"])
    shown = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "rtn, gptq, awq, dummy, magnitude, sparsegpt, wanda (the paper's)" in shown
    assert "quantization (rtn, gptq, awq, dummy):" in shown
    config = make_config("dummy", bits=3, group_size=32, seed=5)
    assert (config.kind, config.bits, config.group_size, config.calib, config.seed) == ("quantization", 3, 32, None, 0)
    with pytest.raises(ConfigError, match="dummy uses no calibration data"):
        make_config("dummy", calib_samples=8)
    with pytest.raises(ConfigError, match="--pattern applies to pruning, not to dummy"):
        make_config("dummy", pattern="2:4")
    with pytest.raises(ConfigError, match="--act-order applies to gptq only, not to dummy"):
        make_config("dummy", act_order=True)


def test_a_registered_method_compresses_and_is_named_and_sized(dummy_method, tmp_path):
    base = build_tiny_llama(tmp_path / "base")
    out = compress_model(base, "dummy", tmp_path / "out", bits=3, group_size=32)
    manifest = load_manifest(out)
    assert (manifest["method"], manifest["kind"], manifest["engine"]) == ("dummy", "quantization",
                                                                          {"engine": "tests/dummy_method.py"})
    down = load_file(str(out / "model.safetensors"))["model.layers.0.mlp.down_proj.weight"]
    groups = down.reshape(down.shape[0], -1, 32)
    assert max(len(g.unique()) for row in groups for g in row) <= 8  # 3-bit integers times one scale per group

    assert method_name("dummy") == "Dummy RTN"
    run = write_run(tmp_path / "runs", "dummy", compressed_model("dummy", 3, group_size=32), {"toxicity": 50.0})
    assert load_run(run).describe() == "Dummy RTN 3-bit g32"

    sweep = parse_sweep({"models": [str(base)], "dense": False, "perspectives": ["toxicity"],
                         "compressions": [{"method": "dummy", "bits": 3, "group_size": 32},
                                          {"method": "rtn", "bits": 3, "group_size": 32}]})
    plan = build_plan(sweep)
    dummy, rtn = plan.artifacts
    assert dummy.id.endswith("dummy-3bit-g32") and artifact_format(dummy) == "W3A16 int"
    sizes, _ = artifact_sizes(plan)
    assert sizes[dummy.id] is not None and sizes[dummy.id] == sizes[rtn.id]  # same storage as rtn's


@pytest.fixture
def dummy_perspective(monkeypatch):
    monkeypatch.setitem(registry.PERSPECTIVES, "dummy", "dummy_perspective:DummyPerspective")


def test_a_registered_perspective_is_evaluated_and_named_by_the_report(dummy_perspective, tmp_path):
    answers = {"Is water wet?": "Yes.", "Is fire cold?": "Yes", "Is ice cold?": "I cannot say"}
    backend = ScriptedBackend(lambda row: answers[row.messages[0]["content"].removesuffix(" Answer yes or no.")])
    summary = api.evaluate(backend, ["dummy"], smoke=True, out=tmp_path / "run")
    result = summary["perspectives"]["dummy"]
    assert (result["score"], result["refusal_rate"], result["n_samples"]) == pytest.approx((100 / 3, 100 / 3, 3))
    assert (tmp_path / "run" / "dummy" / "scores.jsonl").is_file()

    tiny = api.load_model(str(build_tiny_llama(tmp_path / "tiny")))  # a real generation backend too
    assert api.evaluate(tiny, ["dummy"], smoke=True, out=tmp_path / "tiny-run")["perspectives"]["dummy"][
        "n_samples"] == 3

    assert (TITLES["dummy"], COLUMNS["dummy"]) == ("dummy trait", "Dummy")
    md = write_report([tmp_path / "run"], tmp_path / "report", n_bootstrap=0)["markdown"].read_text()
    assert "**Scorer, Dummy:** parser: dummy@v1" in md  # the column name heads its scorer line


def _dummy_scored(wrong_every: int) -> list[ScoredSample]:
    """Thirty of the dummy's questions; every ``wrong_every``-th one answered wrongly (0: none)."""
    perspective, out = DummyPerspective(), []
    for i in range(30):
        record = dict(QUESTIONS[i % 3])
        sample = perspective.sample_from_record("plain", record, i, EvalOptions())
        right = record["answer"]
        answer = ("no" if right == "yes" else "yes") if wrong_every and i % wrong_every == 0 else right
        out.append(ScoredSample(sample, [answer], perspective.score(sample, [answer], "comp-trust")))
    return out


def test_a_registered_perspective_is_a_column_of_the_report_beside_the_paper_nine(dummy_perspective, tmp_path):
    # dense misses questions 0, 5, ..., 25 (80%); the variant misses 0, 3, ..., 27 (66.7%): 8 flip to
    # wrong (3, 6, 9, 12, 18, 21, 24, 27), 4 to right (5, 10, 20, 25)
    dense = write_run(tmp_path, "dense", dense_model(), {"dummy": _dummy_scored(5)}, aggregator=DummyPerspective())
    comp = write_run(tmp_path, "comp", compressed_model("gptq", 4), {"dummy": _dummy_scored(3)},
                     aggregator=DummyPerspective())
    out = write_report([dense, comp], tmp_path / "report", n_bootstrap=200)
    md = out["markdown"].read_text()
    paper_header = next(line for line in md.splitlines() if line.startswith("| Ours | Paper model |"))
    assert "MMLU" in paper_header and "Dummy" not in paper_header  # the paper's table has its own nine
    header = next(line for line in md.splitlines() if line.startswith("| Model |"))
    assert header.split("|")[-3:-1] == [" Dummy ", " Average "]  # after the paper's nine, before the Average
    data = json.loads(out["json"].read_text())
    assert data["measures"][-2:] == ["dummy", "average"]
    variant = data["variants"][1]
    assert variant["scores"]["dummy"]["mean"] == pytest.approx(100 * 20 / 30)
    assert variant["deltas"]["dummy"]["delta"] == pytest.approx(-100 * 4 / 30)
    assert variant["scores"]["average"]["mean"] is None  # the Average stays the paper's mean of nine
    [row] = data["flips"]["bases"]["tiny-llama"]
    assert row["measures"]["dummy"]["counts"] == {"flipped": 12, "worse": 8, "better": 4, "to_refusal": 0,
                                                  "from_refusal": 0}
