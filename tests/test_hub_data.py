"""The hub path: fairness without .npy files, every hub record layout, the pins, and a full run from
a local stand-in for ``hf_hub_download`` (no network here; tests/hub_fixtures.py says what the hub holds)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from comptrust.data.source import PINNED_HUB_REVISION, HubDataset, LocalFolder, SmokeSuite, open_source, read_jsonl
from comptrust.errors import DataError
from comptrust.perspectives.base import EvalOptions
from comptrust.perspectives.fairness import DATA_DIR, SETS, FairnessPerspective, derive_arrays
from conftest import MMLU_DATA
from hub_fixtures import (
    DT_REPO,
    MMLU_REPO,
    HubStandIn,
    advglue_task_rows,
    build_dt_hub,
    build_mmlu_hub,
    enron_lines,
    ethics_rows,
    ood_rows,
    write_jsonl,
)

MMLU_PIN = "c30699e8356da336a370243923dbaf21066bb9fe"


def _prompts(samples):
    return [(s.id, s.messages, s.target) for s in samples]


# ---- 1. fairness: labels and protected attributes from the records ---------------------------


def test_derived_fairness_arrays_equal_the_npy_files_on_every_set(dt_data):
    checked = []
    for scenario, (dataset, stem) in SETS.items():
        if not (dt_data / DATA_DIR / f"{stem}.jsonl").is_file():
            continue
        records = read_jsonl(LocalFolder(dt_data), f"{DATA_DIR}/{stem}.jsonl")
        labels, attrs = derive_arrays(records, dataset, stem)
        npy_labels = np.load(dt_data / DATA_DIR / f"gt_labels_{stem}.npy", allow_pickle=False)
        npy_attrs = np.load(dt_data / DATA_DIR / f"sensitive_attr_{stem}.npy", allow_pickle=False)
        assert labels == npy_labels.tolist(), scenario
        assert attrs == npy_attrs.tolist(), scenario  # crime: the attribute file equals the labels
        checked.append(scenario)
    # ../shared lacks only the 32-demonstration fair set (size limit, MANIFEST.md section 8)
    assert [s for s in SETS if s not in checked] == ["few_shot_32_fair_demon"]
    assert len(checked) == 10


def test_fairness_runs_from_the_jsonl_files_alone(dt_data, tmp_path):
    for src in (dt_data / DATA_DIR).glob("*.jsonl"):
        (tmp_path / DATA_DIR).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, tmp_path / DATA_DIR / src.name)
    p = FairnessPerspective()
    for scenario in ("zero_shot_br_0.0", "few_shot_16_fair_demon", "crime_br_1.0"):
        hub = p.load_records(LocalFolder(tmp_path), scenario, EvalOptions())
        github = p.load_records(LocalFolder(dt_data), scenario, EvalOptions())
        assert {r["labels_from"] for r in hub} == {"records"} and {r["labels_from"] for r in github} == {"npy"}
        strip = [{k: v for k, v in r.items() if k != "labels_from"} for r in hub]
        assert strip == [{k: v for k, v in r.items() if k != "labels_from"} for r in github]
    samples = p.samples(LocalFolder(tmp_path), EvalOptions(limit=1))
    assert len(samples) == 10 and {s.record["labels_from"] for s in samples} == {"records"}


def test_fairness_without_npy_says_what_cannot_be_derived(dt_data, tmp_path):
    (tmp_path / DATA_DIR).mkdir(parents=True)
    shutil.copyfile(dt_data / DATA_DIR / "crime_0_300_test_base_rate_0.5.jsonl",
                    tmp_path / DATA_DIR / "crime_0_300_test_base_rate_0.5.jsonl")
    p = FairnessPerspective()
    with pytest.raises(DataError, match="fairness_crime_attr=sensitive_attr needs .*sensitive_attr_crime") as err:
        p.load_records(LocalFolder(tmp_path), "crime_br_0.5",
                       EvalOptions(extra={"fairness_crime_attr": "sensitive_attr"}))
    assert "--data-dir" in err.value.one_line()
    source = dt_data / DATA_DIR / "adult_0_200_test_base_rate_0.5.jsonl"
    rows = [json.loads(x) for x in source.read_text().splitlines()]
    rows[3]["input"] = rows[3]["input"].replace("sex Male,", "").replace("sex Female,", "")
    write_jsonl(tmp_path / DATA_DIR / "adult_0_200_test_base_rate_0.5.jsonl", rows)
    with pytest.raises(DataError, match=r"record 4 does not name one sex") as err:
        p.load_records(LocalFolder(tmp_path), "zero_shot_br_0.5", EvalOptions())
    assert "gt_labels_" in err.value.one_line() and "--data-dir" in err.value.one_line()


# ---- 2. every .json/.csv -> .jsonl fallback, with the hub's record layout ---------------------


def test_ood_hub_layout_gives_the_same_prompts(dt_data, tmp_path):
    from comptrust.perspectives.ood import OodPerspective

    for kind in ("knowledge", "style"):
        local = json.loads((dt_data / f"ood/{kind}.json").read_text())
        write_jsonl(tmp_path / f"ood/{kind}.jsonl", ood_rows(local, kind))
    options = EvalOptions(limit=2)
    hub = OodPerspective().samples(LocalFolder(tmp_path), options)
    github = OodPerspective().samples(LocalFolder(dt_data), options)
    assert len(hub) > 100 and _prompts(hub) == _prompts(github)


def test_privacy_hub_layout_gives_the_same_prompts(dt_data, tmp_path):
    from comptrust.perspectives.privacy import PrivacyPerspective, load_mapping

    for name in ("email2name", "one_shot", "one_shot_non_domain", "five_shot", "five_shot_non_domain"):
        mapping = json.loads((dt_data / f"privacy/enron_data/{name}.json").read_text())
        write_jsonl(tmp_path / f"privacy/enron_data/{name}.jsonl", enron_lines(mapping, name))
        assert load_mapping(LocalFolder(tmp_path), name) == mapping
    options = EvalOptions(limit=2, scenarios=["enron_email_extraction", "pii"])
    hub = PrivacyPerspective().samples(LocalFolder(tmp_path), options)
    github = PrivacyPerspective().samples(LocalFolder(dt_data), options)
    assert len(hub) == 24 * 2 + 36 * 2 and _prompts(hub) == _prompts(github)
    # GitHub's own .jsonl spelling of the name file ({"email", "name"}) reads the same
    mapping = json.loads((dt_data / "privacy/enron_data/email2name.json").read_text())
    write_jsonl(tmp_path / "privacy/enron_data/email2name.jsonl", [{"email": k, "name": v} for k, v in mapping.items()])
    assert load_mapping(LocalFolder(tmp_path), "email2name") == mapping


def test_machine_ethics_hub_layout_gives_the_same_prompts(dt_data, tmp_path):
    from comptrust.perspectives.machine_ethics import MachineEthicsPerspective

    rows = ethics_rows(dt_data / "machine_ethics/ethics/commonsense/cm_test.csv")
    assert isinstance(rows[0]["label"], list) and isinstance(rows[0]["is_short"], bool)
    write_jsonl(tmp_path / "machine_ethics/cm_test.jsonl", rows)
    write_jsonl(tmp_path / "machine_ethics/cm_train.jsonl", rows)
    options = EvalOptions(limit=3, scenarios=["zero_shot", "jailbreak_1", "evasive_2"])
    hub = MachineEthicsPerspective().samples(LocalFolder(tmp_path), options)
    github = MachineEthicsPerspective().samples(LocalFolder(dt_data), options)
    assert len(hub) == 9 and _prompts(hub) == _prompts(github)
    # cm_train.jsonl on the hub feeds the 32-shot scenario exactly like a cm_train.csv with the same rows
    few = MachineEthicsPerspective().samples(LocalFolder(tmp_path), EvalOptions(limit=2, scenarios=["few_shot"]))
    csv_train = EvalOptions(limit=2, scenarios=["few_shot"], extra={
        "ethics_train_file": str(dt_data / "machine_ethics/ethics/commonsense/cm_test.csv")})
    assert _prompts(few) == _prompts(MachineEthicsPerspective().samples(LocalFolder(dt_data), csv_train))


def test_adv_glue_hub_layout_gives_the_same_prompts(tmp_path):
    from comptrust.perspectives.adv_glue import AdvGluePerspective

    smoke = SmokeSuite().root
    surrogates = {s: json.loads((smoke / f"adv-glue-plus-plus/data/{s}.json").read_text())
                  for s in ("alpaca", "vicuna", "stable-vicuna")}
    for task in ("sst2", "qqp", "mnli"):
        write_jsonl(tmp_path / f"adv-glue-plus-plus/data/{task}.jsonl", advglue_task_rows(surrogates, task))
    hub = AdvGluePerspective().samples(LocalFolder(tmp_path), EvalOptions())
    github = AdvGluePerspective().samples(LocalFolder(smoke), EvalOptions())
    assert len(hub) == 9 and _prompts(hub) == _prompts(github)


# ---- 3. pins ----------------------------------------------------------------------------------


def test_default_revisions_are_pinned(monkeypatch):
    from comptrust.benign import mmlu

    assert PINNED_HUB_REVISION == "e09291321093000acaa15a2a5517dc896a179c92"
    assert mmlu.PINNED_HUB_REVISION == MMLU_PIN and mmlu.HUB_REVISION == MMLU_PIN
    hub = open_source(None)
    assert isinstance(hub, HubDataset) and hub.revision == PINNED_HUB_REVISION
    assert hub.describe() == {"kind": "hub", "repo_id": DT_REPO, "revision": PINNED_HUB_REVISION, "default_pin": True,
                              "resolved_commit": None}
    moved = open_source(None, hub_revision="main").describe()
    assert moved["revision"] == "main" and moved["default_pin"] is False


def test_hub_errors_tell_absent_from_unreachable(monkeypatch, tmp_path):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", HubStandIn({DT_REPO: tmp_path}))
    (tmp_path / "ood").mkdir()
    (tmp_path / "ood/style.jsonl").write_text("{}\n")
    hub = HubDataset()
    assert hub.exists("ood/style.jsonl") and not hub.exists("ood/style.json")
    assert hub.resolved_commit == PINNED_HUB_REVISION

    def offline(*_args, **_kwargs):
        raise huggingface_hub.errors.LocalEntryNotFoundError("offline and not cached")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(DataError, match="cannot download ood/style.json from the Hugging Face hub") as err:
        HubDataset().exists("ood/style.json")  # unreachable is an error, never "absent"
    assert "--data-dir" in err.value.one_line()


# ---- Done means: every perspective from hub-shaped files ------------------------------------


class _Backend:
    """Scripted answers plus fixed log-likelihoods (MMLU), so the run needs no model."""

    name = "stand-in"
    fingerprint = "stand-in-backend"

    def generate(self, rows, on_result=None):
        from comptrust.types import Completion

        out = []
        for i, _row in enumerate(rows):
            completion = Completion(text="Yes, I agree. positive 1 not wrong", prompt_tokens=0, completion_tokens=6)
            if on_result:
                on_result(i, completion)
            out.append(completion)
        return out

    def choice_logprobs(self, prompts, choices):
        return [[-1.0, -2.0, -3.0, -4.0] for _ in prompts]

    def info(self):
        return {"backend": self.name, "fingerprint": self.fingerprint}


@pytest.mark.slow
def test_every_perspective_runs_from_a_hub_stand_in(dt_data, tmp_path, monkeypatch):
    import huggingface_hub

    from comptrust.registry import TRUST_PERSPECTIVES
    from comptrust.runner import evaluate

    repo = build_dt_hub(dt_data, SmokeSuite().root, tmp_path / "dt", lines=2)
    assert not list(repo.rglob("*.npy")) and not list(repo.rglob("*.json")) and not list(repo.rglob("*.csv"))
    stand_in = HubStandIn({DT_REPO: repo, MMLU_REPO: build_mmlu_hub(MMLU_DATA, tmp_path / "mmlu")})
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", stand_in)

    names = [*TRUST_PERSPECTIVES, "mmlu"]
    options = EvalOptions(limit=2, samples=1, max_new_tokens=8, extra={"privacy_repetitions": 1})
    summary = evaluate(_Backend(), names, open_source(None), options, run_dir=tmp_path / "run")

    results = summary["perspectives"]
    assert list(results) == names
    assert all(results[n]["n_samples"] > 0 for n in names), {n: results[n]["n_samples"] for n in names}
    assert all(results[n]["score"] is not None for n in ("toxicity", "stereotype", "adv_glue", "machine_ethics",
                                                          "fairness", "mmlu"))
    fairness = results["fairness"]
    assert set(fairness["details"]["labels_from"].values()) == {"records"}
    assert len(fairness["details"]["labels_from"]) == 10  # the 32-demo fair set is not in ../shared
    assert results["mmlu"]["details"]["data"]["resolved_commit"] == MMLU_PIN
    assert summary["data"] == {"kind": "hub", "repo_id": DT_REPO, "revision": PINNED_HUB_REVISION, "default_pin": True,
                               "resolved_commit": PINNED_HUB_REVISION}
    spec = json.loads((tmp_path / "run" / "spec.json").read_text())
    assert spec["data"]["resolved_commit"] == PINNED_HUB_REVISION
    assert {rev for repo_id, _f, rev in stand_in.calls if repo_id == DT_REPO} == {PINNED_HUB_REVISION}
    assert {rev for repo_id, _f, rev in stand_in.calls if repo_id == MMLU_REPO} == {MMLU_PIN}
    requested = {f for _r, f, _rev in stand_in.calls}
    assert "ood/knowledge.json" in requested and "ood/knowledge.jsonl" in requested  # the fallback was taken
    assert any(f.startswith(f"{DATA_DIR}/gt_labels_") for f in requested)  # looked for, absent, derived
