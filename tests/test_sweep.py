"""Sweeps: strict YAML, grid expansion with dedup, dry-run estimates, the local executor and resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from comptrust.cli import main
from comptrust.errors import ConfigError
from comptrust.store.cache import Cache
from comptrust.sweep import build_plan, load_sweep
from comptrust.sweep.config import parse_sweep
from comptrust.sweep.executors import run_plan
from comptrust.sweep.jobs import SweepState
from conftest import DT_DATA, MMLU_DATA, REPO

EXAMPLES = REPO / "examples" / "sweeps"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "sweep.yaml"
    p.write_text(text)
    return p


def test_unknown_key_is_one_line_naming_key_and_file(tmp_path, capsys):
    path = write(tmp_path, "models: [m]\ncompressions:\n  - {method: gptq, bitz: 4}\n")
    with pytest.raises(ConfigError) as err:
        load_sweep(path)
    assert "unknown key 'compressions[0].bitz'" in str(err.value) and str(path) in str(err.value)
    assert main(["sweep", str(path), "--dry-run"]) == 2
    out = capsys.readouterr().err.strip()
    assert out.count("\n") == 0 and "bitz" in out and str(path) in out


def test_bad_yaml_and_bad_values(tmp_path):
    with pytest.raises(ConfigError, match=r"sweep.yaml:2 is not valid YAML"):
        load_sweep(write(tmp_path, "models: [m\nseeds: [0\n"))
    with pytest.raises(ConfigError, match=r"bad value for 'eval.limit'"):
        parse_sweep({"models": ["m"], "eval": {"limit": 0}}, "f.yaml")
    with pytest.raises(ConfigError, match=r"compressions\[0\] in f.yaml: 5-bit weights are not supported"):
        build_plan(parse_sweep({"models": ["m"], "compressions": [{"method": "rtn", "bits": 5}]}, "f.yaml"),
                   "f.yaml")
    with pytest.raises(ConfigError, match="unknown perspective 'toxic'"):
        build_plan(parse_sweep({"models": ["m"], "perspectives": ["toxic"]}))


def test_grid_expands_adds_dense_and_merges_seed_independent_artifacts():
    config = parse_sweep({
        "models": ["base-a", {"model": "org/base-b", "name": "b"}],
        "compressions": [{"method": "gptq", "bits": [3, 4]},
                         {"method": "magnitude", "pattern": ["unstructured", "2:4"]}],
        "seeds": [0, 1, 2], "perspectives": ["stereotype"], "benign": ["mmlu"],
    })
    plan = build_plan(config, "grid.yaml")
    ids = [a.id for a in plan.artifacts]
    # per model: dense + gptq 2 bits x 3 seeds + magnitude 2 patterns (seed-free: merged) = 9
    assert len(ids) == 18 and len(set(ids)) == 18
    assert ids[0] == "base-a-dense" and "b-dense" in ids
    assert "base-a-gptq-3bit-s2" in ids and "b-magnitude-2of4" in ids
    magnitude = plan.artifact("base-a-magnitude-50pct")
    assert magnitude.seeds == [0, 1, 2] and "seed" not in magnitude.params
    assert plan.artifact("base-a-gptq-4bit-s1").params == {"bits": 4, "seed": 1}
    assert plan.perspectives == ["stereotype", "mmlu"]
    assert len(plan.jobs) == 36
    assert plan.sweep_dir == Path("comptrust-sweeps/grid")


def test_dry_run_small_example_counts_prompts_from_the_smoke_suite(capsys):
    assert main(["sweep", str(EXAMPLES / "smollm2-cpu.yaml"), "--dry-run", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    est = out["estimate"]
    assert est["artifacts"] == 9 and est["jobs"] == 81 and est["to_compress"] == 8
    by_name = {p["perspective"]: p for p in est["perspectives"]}
    # worked out from the smoke suite: fairness has 3 scenarios x limit 2, max_new_tokens capped at 16
    from comptrust.data.source import SmokeSuite
    from comptrust.perspectives.base import EvalOptions
    from comptrust.registry import get_perspective

    fairness = get_perspective("fairness").samples(SmokeSuite(), EvalOptions(limit=2, samples=1, max_new_tokens=16))
    assert by_name["fairness"]["prompts"] == len(fairness)
    assert by_name["fairness"]["max_tokens"] == sum(s.params.n * min(16, s.params.max_tokens) for s in fairness)
    assert by_name["mmlu"]["completions"] == 0
    total = sum(p["max_tokens"] for p in est["perspectives"]) * 9
    assert est["max_generated_tokens"] == total
    hf = next(t for t in est["time"] if t["backend"] == "hf")
    assert hf["hours"] == round(total / hf["tokens_per_second"] / 3600, 2)


# SmolLM2-135M-Instruct's config.json (the facts the estimate reads)
SMOLLM2_CONFIG = {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
                  "num_key_value_heads": 3, "vocab_size": 49152, "tie_word_embeddings": True}


def test_size_estimates_match_the_sizes_measured_on_smollm2():
    from comptrust.sweep.sizes import auto_group, estimated_bytes, parameter_counts

    # by hand: per layer q,o 576x576 each, k,v 576x(3x64) each, MLP 3x576x1536; embeddings tied
    assert parameter_counts(SMOLLM2_CONFIG) == (30 * (2 * 576 * 576 + 2 * 576 * 192 + 3 * 576 * 1536), 49152 * 576)
    assert auto_group(SMOLLM2_CONFIG) == 64  # 576 is not a multiple of 128
    # weights MB measured in docs/benchmarks.md (float32 base model)
    measured = {(None, ()): 538.1, ("rtn", (("bits", 8), ("group_size", "auto"))): 226.3,
                ("gptq", (("bits", 4), ("group_size", "auto"))): 173.2,
                ("rtn", (("bits", 3), ("group_size", "auto"))): 159.9, ("magnitude", (("sparsity", 0.5),)): 538.1,
                ("fp8", ()): 220.2, ("gguf", (("gguf_type", "Q8_0"),)): 144.2}
    for (method, cfg), mb in measured.items():
        estimate = estimated_bytes(method, dict(cfg), SMOLLM2_CONFIG | {"torch_dtype": "float32"}) / 1e6
        assert abs(estimate - mb) / mb < 0.02, (method, cfg, estimate, mb)
    assert estimated_bytes("gptq", {"bits": 4}, SMOLLM2_CONFIG | {"num_local_experts": 8}) is None
    # k-quants need rows a multiple of 256: llama.cpp wrote 180 of SmolLM2's 272 tensors (576 wide) as Q5_0/Q8_0
    # instead, a 104.8 MB file (tokenizer and float32 norms included) where 4.9 bits for everything gives 82 MB
    q4km = estimated_bytes("gguf", {"gguf_type": "Q4_K_M"}, SMOLLM2_CONFIG) / 1e6
    assert 100 < q4km < 104.8


def test_dry_run_shows_each_artifact_s_estimated_size(capsys):
    assert main(["sweep", str(EXAMPLES / "smollm2-deployed.yaml"), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "[W4A16 int; ~173 MB weights; backend hf]" in text and "[GGUF Q4_K_M; ~101 MB weights" in text
    assert "compressed weights to write, estimated:" in text


@pytest.mark.slow
def test_dry_run_sizes_every_model_alias_from_its_installed_gguf(tmp_path, capsys):
    from comptrust.models import GEMMA3_ALIAS, alias_gguf_path, resolve_model

    path = write(tmp_path, f"models: [{GEMMA3_ALIAS}]\ncompressions:\n  - {{method: dense}}\n"
                           "  - {method: gguf, type: Q4_K_M}\nperspectives: [stereotype]\neval: {smoke: true}\n")
    assert main(["sweep", str(path), "--dry-run", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    sizes = {"gguf" if a["method"] == "gguf" else "dense": out["estimate"]["sizes"][a["id"]]
             for a in out["plan"]["artifacts"]}
    # the converted float32 folder (norms aside) and the published Q4_K_M file (tokenizer included)
    dense = sum(p.stat().st_size for p in resolve_model(GEMMA3_ALIAS).path.glob("*.safetensors"))
    assert abs(sizes["dense"] - dense) / dense < 0.01, (sizes, dense)
    q4km = alias_gguf_path(GEMMA3_ALIAS).stat().st_size
    assert 0.94 * q4km < sizes["gguf"] < q4km, (sizes, q4km)


@pytest.mark.slow
def test_dry_run_paper_example_on_the_real_data(capsys, monkeypatch):
    monkeypatch.setenv("COMPTRUST_MMLU_DATA", str(MMLU_DATA))
    args = ["sweep", str(EXAMPLES / "llama2-13b-chat-paper.yaml"), "--dry-run", "--data-dir", str(DT_DATA)]
    assert main(args) == 0
    text = capsys.readouterr().out
    # 1 dense + gptq 9 + awq 9 + magnitude 2 (seed-free) + sparsegpt 6 + wanda 6 = 33 artifacts, 9 measures
    assert "33 artifacts (32 to compress, each once) x 9 perspectives = 297 jobs" in text
    assert "llama2-13b-chat-awq-3bit-g128-s2" in text and "llama2-13b-chat-magnitude-2of4 " in text
    assert "1,764.0 tok/s" in text and "21.0 tok/s" in text
    # sizes offline from the paper models' known shape: Llama-2-13B in float16 is 26 GB
    assert "llama2-13b-chat-dense " in text and "[dense float16; ~26.0 GB weights" in text
    assert "[W4A16 int; ~7.4 GB weights" in text


SMALL = """
name: tiny
models:
  - {{model: {good}, name: good}}
  - {{model: {bad}, name: bad}}
compressions:
  - {{method: magnitude, sparsity: 0.5}}
seeds: [0, 1]
perspectives: [stereotype]
benign: [mmlu]
eval: {{smoke: true, limit: 2, samples: 1, max_new_tokens: 4}}
backend: {{batch_size: 4}}
"""


def make_bad_model(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    return folder


@pytest.mark.slow
def test_local_sweep_records_failures_goes_on_and_resumes(tmp_path, tiny_llama):
    bad = make_bad_model(tmp_path / "bad")
    path = write(tmp_path, SMALL.format(good=tiny_llama, bad=bad))
    plan = build_plan(load_sweep(path), str(path), out=tmp_path / "out")
    assert [a.id for a in plan.artifacts] == ["good-dense", "good-magnitude-50pct", "bad-dense",
                                              "bad-magnitude-50pct"]
    first = run_plan(plan)
    assert first["done"] == 4 and first["failed"] == 4 and first["ran"] == 8
    state = SweepState(plan)
    errors = {f["job"]: f["error"] for f in first["failures"]}
    assert set(errors) == {"bad-dense/stereotype", "bad-dense/mmlu", "bad-magnitude-50pct/stereotype",
                           "bad-magnitude-50pct/mmlu"}
    summary = json.loads((tmp_path / "out/runs/good-magnitude-50pct/summary.json").read_text())
    assert set(summary["perspectives"]) == {"stereotype", "mmlu"} and summary["finished"] is True
    assert summary["model"]["compression"]["method"] == "magnitude"
    assert summary["sweep"]["planned"] == ["stereotype", "mmlu"]
    done_marker = state.marker(plan.jobs[0]).read_text()
    cache = Cache()
    before = cache.stats()["generations"]

    # fix the broken model and rerun: only the four failed jobs run, the good ones are untouched
    shutil.rmtree(bad)
    shutil.copytree(tiny_llama, bad)
    second = run_plan(plan, cache=cache)
    assert second["ran"] == 4 and second["done"] == 8 and second["failed"] == 0
    assert state.marker(plan.jobs[0]).read_text() == done_marker
    # the fixed model is a copy of the good one (same weights): its generations were cached already
    assert cache.stats()["generations"] == before
    assert run_plan(plan, cache=cache)["ran"] == 0
    cache.close()


def test_compress_only_materializes_every_compressed_artifact_and_reports_failures(tmp_path, tiny_llama, capsys):
    bad = make_bad_model(tmp_path / "bad")
    path = write(tmp_path, SMALL.format(good=tiny_llama, bad=bad))
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--compress-only", "--quiet"]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2  # the dense artifacts need no compression
    good_id, good_path = lines[0].split(": ", 1)
    assert good_id == "good-magnitude-50pct" and (Path(good_path) / "comptrust.json").is_file()
    assert lines[1].startswith("bad-magnitude-50pct: FAILED (")
    assert not (tmp_path / "out" / "state").exists()  # nothing was evaluated
    # the rerun reuses the finished artifact (the evaluating environment relies on this)
    stamp = (Path(good_path) / "model.safetensors").stat().st_mtime_ns
    main(["sweep", str(path), "--out", str(tmp_path / "out"), "--compress-only", "--quiet"])
    assert capsys.readouterr().out.splitlines()[0] == lines[0]
    assert (Path(good_path) / "model.safetensors").stat().st_mtime_ns == stamp


def test_each_executor_loads_an_artifact_with_its_own_backend_and_kv_cache(tmp_path):
    """A Ray worker must load a GGUF with llamacpp and "dense + KV int4" with the quantized cache, as local does."""
    from comptrust.sweep.executors import _RayRun
    from comptrust.sweep.jobs import backend_settings

    config = parse_sweep({"models": ["m"], "perspectives": ["stereotype"],
                          "compressions": [{"method": "dense", "kv_cache": "int4"}, {"method": "gguf", "type": "Q8_0"}],
                          "eval": {"smoke": True}, "backend": {"name": "hf", "batch_size": 4}})
    plan = build_plan(config, "k.yaml", out=tmp_path / "out")
    kv = next(a for a in plan.artifacts if a.kv_cache == "int4")
    gguf = next(a for a in plan.artifacts if a.method == "gguf")
    assert backend_settings(plan, kv) == {"name": "hf", "batch_size": 4, "options": {"kv_cache": "int4"}}
    assert backend_settings(plan, gguf)["name"] == "llamacpp"
    driver = _RayRun(plan, SweepState(plan), Cache(), print)
    for artifact in (kv, gguf):
        job = next(j for j in plan.jobs if j.artifact == artifact.id)
        payload = driver.payload(artifact, job, "spec", 0, 1, [])
        assert payload["backend"] == backend_settings(plan, artifact)
