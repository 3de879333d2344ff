"""The noise floor: the dense model rerun under a recorded perturbation, beside every change and flip rate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comptrust.report.build import write_report
from report_fakes import compressed_model, dense_model, scored_samples, write_run


def _spec(pattern: str, scenarios: tuple[str, ...] = ("a", "b")) -> list:
    """``pattern`` per scenario: y = correct, n = wrong."""
    texts = [{"y": "yes", "n": "no"}[c] for _sc in scenarios for c in pattern]
    return scored_samples([(sc, c == "y") for sc in scenarios for c in pattern], responses=texts)


def _as_replicate(run: Path, of_run: str, seed: int = 1, link_from: Path | None = None) -> Path:
    """Mark ``run`` a seed noise-floor rerun of ``of_run`` (as ``comptrust eval --noise-floor seed`` writes it)."""
    summary = json.loads((run / "summary.json").read_text())
    summary["perturbation"] = {"kind": "seed", "of_run": of_run, "seed": seed}
    summary["seed"] = seed
    (run / "summary.json").write_text(json.dumps(summary))
    if link_from is not None:
        first = json.loads((link_from / "summary.json").read_text())
        first["noise_floor"] = {"run_dir": run.name, "run_id": summary["run_id"],
                                "perturbation": summary["perturbation"]}
        (link_from / "summary.json").write_text(json.dumps(first))
    return run


# 20 samples per scenario. Dense: 14 right. Rerun: 2 of them wrong, 1 wrong one right (-1 per scenario, -5 points,
# 3 of 20 flipped = 15%). RTN: ood -10 points with 4 flips, machine_ethics -5 points with 1 + 0 flips... per scenario.
DENSE = "y" * 14 + "n" * 6
RERUN = "nn" + "y" * 12 + "y" + "n" * 5
RTN_OOD = "nnnn" + "y" * 10 + "n" * 6  # -4 per scenario: -20 points, 4 flips (20%)
RTN_ETHICS = "n" + "y" * 13 + "n" * 6  # -1 per scenario: -5 points, 1 flip (5%)


def _study(tmp_path: Path, link: bool = True) -> tuple[Path, Path, Path]:
    dense = write_run(tmp_path, "dense", dense_model(), {"ood": _spec(DENSE), "machine_ethics": _spec(DENSE)})
    rerun = write_run(tmp_path, "dense-noise-seed", dense_model(),
                      {"ood": _spec(RERUN), "machine_ethics": _spec(RERUN)})
    _as_replicate(rerun, "dense", link_from=dense if link else None)
    comp = write_run(tmp_path, "rtn", compressed_model("rtn", 4),
                     {"ood": _spec(RTN_OOD), "machine_ethics": _spec(RTN_ETHICS)})
    return dense, rerun, comp


def test_dense_vs_rerun_sits_beside_every_change_and_flip_rate(tmp_path, fake_perspectives):
    dense, rerun, comp = _study(tmp_path)
    out = write_report([dense, comp], tmp_path / "r", n_bootstrap=200)  # the rerun is found from dense's summary
    data = json.loads(out["json"].read_text())
    assert [v["label"] for v in data["variants"]] == ["tiny-llama (dense)", "RTN 4-bit g128"]  # the rerun: no variant
    floor = data["noise_floor"]["tiny-llama"]
    assert floor["label"] == "dense rerun (seed 1)" and floor["replicate_run"].endswith("dense-noise-seed")
    assert floor["changes"]["ood"]["delta"] == pytest.approx(65.0 - 70.0)
    assert floor["changes"]["ood"]["ci95"] is not None
    deltas = data["variants"][1]["deltas"]
    assert deltas["ood"]["delta"] == pytest.approx(-20.0) and deltas["ood"]["within_noise_floor"] is False
    assert deltas["machine_ethics"]["delta"] == pytest.approx(-5.0) and deltas["machine_ethics"]["within_noise_floor"]
    assert deltas["ood"]["noise_floor"]["delta"] == pytest.approx(-5.0)
    # flips: the rerun flips 3 of 20 per scenario (15%); RTN 20% on ood (above), 5% on ethics (inside)
    noise_flips = data["flips"]["noise_floor"]["tiny-llama"]["measures"]
    assert noise_flips["ood"]["shares"]["flipped"]["pct"] == pytest.approx(15.0)
    assert noise_flips["ood"]["counts"] == {"flipped": 6, "worse": 4, "better": 2, "to_refusal": 0,
                                            "from_refusal": 0}
    [row] = data["flips"]["bases"]["tiny-llama"]
    assert row["within_noise_floor"] == {"ood": False, "machine_ethics": True}
    assert data["flips"]["tests"] == 2  # only RTN's direction tests form the corrected family
    text = "\n".join(data["findings"])
    assert ("Noise floor of tiny-llama (dense rerun (seed 1)): rerunning the dense model moves its scores by up to "
            "5.0 points") in text
    assert "flips up to 15.0% of samples" in text
    assert "RTN 4-bit g128: 1 of its 2 score changes lie inside the noise floor (no larger than the rerun's): " \
           "machine ethics" in text
    assert any("Noise floor: rerun dense-noise-seed loaded from beside dense" in c for c in data["caveats"])
    md = out["markdown"].read_text()
    assert "| noise floor: dense rerun (seed 1) |" in md and "-5.0 ≈" in md
    assert "≈ = inside the noise floor" in md
    html = out["html"].read_text()
    assert "noise floor: dense rerun (seed 1)" in html and "inside the noise floor" in html


def test_the_rerun_changes_no_number_of_the_comparison(tmp_path, fake_perspectives):
    dense, rerun, comp = _study(tmp_path, link=False)
    without = json.loads(write_report([dense, comp], tmp_path / "a", n_bootstrap=200)["json"].read_text())
    with_floor = json.loads(write_report([dense, rerun, comp], tmp_path / "b", n_bootstrap=200)["json"].read_text())
    assert "tiny-llama" not in without["noise_floor"] and "tiny-llama" in with_floor["noise_floor"]
    for m in ("ood", "machine_ethics"):
        a, b = without["variants"][1]["deltas"][m], with_floor["variants"][1]["deltas"][m]
        assert (a["delta"], a["ci95"], a["p_value"]) == (b["delta"], b["ci95"], b["p_value"])
        assert without["variants"][0]["scores"][m] == with_floor["variants"][0]["scores"][m]
    assert without["verdicts"] == with_floor["verdicts"]


def test_a_second_plain_dense_run_is_a_noise_floor_too(tmp_path, fake_perspectives):
    dense = write_run(tmp_path, "dense", dense_model(), {"ood": _spec(DENSE)})
    again = write_run(tmp_path, "dense2", dense_model(), {"ood": _spec(RERUN)})
    summary = json.loads((again / "summary.json").read_text())
    summary["seed"] = 7
    (again / "summary.json").write_text(json.dumps(summary))
    comp = write_run(tmp_path, "rtn", compressed_model("rtn", 4), {"ood": _spec(RTN_OOD)})
    data = json.loads(write_report([dense, again, comp], tmp_path / "r", n_bootstrap=100)["json"].read_text())
    floor = data["noise_floor"]["tiny-llama"]
    assert floor["label"] == "dense rerun (second dense run, seed 7 vs 0)" and floor["perturbation"] is None
    assert floor["changes"]["ood"]["delta"] == pytest.approx(-5.0)


def test_missing_or_misplaced_reruns_are_said_in_one_note(tmp_path, fake_perspectives):
    dense, rerun, comp = _study(tmp_path)
    rerun.rename(tmp_path / "elsewhere")
    data = json.loads(write_report([dense, comp], tmp_path / "r", n_bootstrap=50)["json"].read_text())
    assert "tiny-llama" not in data["noise_floor"]
    assert any("names a noise-floor rerun dense-noise-seed that is not beside it" in c for c in data["caveats"])
    # a rerun of a compressed model is not a noise floor, and not a second seed of that variant either
    comp_again = write_run(tmp_path, "rtn-noise", compressed_model("rtn", 4), {"ood": _spec(RTN_OOD),
                                                                                "machine_ethics": _spec(RTN_ETHICS)})
    _as_replicate(comp_again, "rtn")
    data = json.loads(write_report([dense, comp, comp_again], tmp_path / "r2", n_bootstrap=50)["json"].read_text())
    assert data["variants"][1]["label"] == "RTN 4-bit g128"  # not "(2 seeds)"
    assert any("rtn-noise is a noise-floor rerun of a compressed model: not used" in c for c in data["caveats"])
    # a rerun whose dense run was not given
    data = json.loads(write_report([tmp_path / "elsewhere", comp], tmp_path / "r3",
                                   n_bootstrap=50)["json"].read_text())
    assert any("has no dense run of tiny-llama beside it" in c for c in data["caveats"])


@pytest.mark.parametrize("kind", ["seed", "batch"])
def test_eval_noise_floor_reruns_the_model_and_the_report_shows_it(tiny_llama, tmp_path, kind):
    from comptrust.cli import main
    from comptrust.compression import compress_model

    run = tmp_path / "dense"
    args = ["eval", str(tiny_llama), "--smoke", "--perspectives", "stereotype,machine_ethics", "--limit", "2",
            "--samples", "2", "--max-new-tokens", "6", "--dtype", "float32", "--quiet", "--out", str(run)]
    assert main([*args, "--noise-floor", kind]) == 0
    rerun = tmp_path / f"dense-noise-{kind}"
    first = json.loads((run / "summary.json").read_text())
    again = json.loads((rerun / "summary.json").read_text())
    assert first["noise_floor"]["run_dir"] == rerun.name and first["noise_floor"]["run_id"] == again["run_id"]
    assert again["perturbation"]["kind"] == kind and again["perturbation"]["of_run"] == first["run_id"]
    assert again["run_id"] != first["run_id"]
    ethics, stereo = again["perspectives"]["machine_ethics"], again["perspectives"]["stereotype"]
    if kind == "seed":
        assert again["seed"] == 1
        assert ethics["generation"]["cached"] == ethics["generation"]["rows"]  # greedy: the seed does not enter
        assert stereo["generation"]["generated"] == stereo["generation"]["rows"]  # sampled: drawn again
    else:
        assert again["seed"] == 0 and again["perturbation"]["batch_size"] == 8
        assert ethics["generation"]["generated"] == ethics["generation"]["rows"]  # afresh, in another layout
        texts = [json.loads(line)["responses"] for line in (run / "machine_ethics" / "generations.jsonl").open()]
        reordered = [json.loads(line)["responses"] for line in (rerun / "machine_ethics" / "generations.jsonl").open()]
        assert texts == reordered  # float32 on the CPU: batch layout changes no text
    artifact = compress_model(tiny_llama, "rtn", tmp_path / "rtn", bits=4, group_size=32)
    comp = tmp_path / "rtn-run"
    assert main([args[0], str(artifact), *args[2:-1], str(comp)]) == 0
    assert main(["report", str(run), str(comp), "--out", str(tmp_path / "report"), "--quiet"]) == 0
    data = json.loads((tmp_path / "report" / "scores.json").read_text())
    [floor] = data["noise_floor"].values()
    assert floor["replicate_run"].endswith(rerun.name)
    assert set(floor["changes"]) >= {"stereotype", "machine_ethics"}
    if kind == "batch":
        assert floor["changes"]["machine_ethics"]["delta"] == 0.0
