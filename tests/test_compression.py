"""Compression on tiny random Llama models: patterns, bits, untouched layers, reload, seeds, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from comptrust.cli import main
from comptrust.compression import compress_model, load_manifest, make_config
from comptrust.compression.pipeline import artifact_key, run_compression, save_artifact, stable_manifest
from comptrust.errors import ConfigError, ModelError
from conftest import build_tiny_llama

CALIB = {"calib_samples": 4, "calib_seqlen": 32}
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def load(path: Path) -> torch.nn.Module:
    """The artifact as any user would load it: plain transformers."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def target_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: module.weight.detach() for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and name.split(".")[-1] in TARGETS}


def untouched(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Everything but the compressed Linear weights: embeddings, norms, lm_head."""
    targets = {f"{name}.weight" for name in target_weights(model)}
    return {k: v for k, v in model.state_dict().items() if k not in targets}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("base") / "model", seed=3)


@pytest.fixture(scope="module")
def base_model(base) -> torch.nn.Module:
    return load(base)


@pytest.fixture(scope="module")
def out_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("artifacts")


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ---------------------------------------------------------------- pruning


@pytest.mark.parametrize("method,pattern", [
    ("magnitude", "unstructured"), ("magnitude", "2:4"), ("magnitude", "4:8"), ("magnitude", "1:2"),
    ("sparsegpt", "unstructured"), ("sparsegpt", "2:4"), ("wanda", "unstructured"), ("wanda", "4:8"),
])
def test_pruning_meets_pattern_and_leaves_other_layers_alone(base, base_model, out_root, method, pattern):
    params = {} if method == "magnitude" else CALIB
    out = compress_model(base, method, out_root / f"{method}-{pattern.replace(':', 'of')}", pattern=pattern,
                         **params)
    pruned = load(out)
    weights = target_weights(pruned)
    assert len(weights) == 14  # 7 per decoder layer, 2 layers
    for name, w in weights.items():
        if pattern == "unstructured":
            assert abs(float((w == 0).float().mean()) - 0.5) <= 0.001, name
        else:
            n, m = (int(x) for x in pattern.split(":"))
            blocks = (w.reshape(w.shape[0], -1, m) != 0).sum(-1)
            assert int(blocks.max()) <= n, name  # at most N nonzeros in every M inputs
            assert float((w == 0).float().mean()) == pytest.approx((m - n) / m), name
    before, after = untouched(base_model), untouched(pruned)
    assert before.keys() == after.keys() and "lm_head.weight" in after
    for key in before:
        assert torch.equal(before[key], after[key]), key  # embeddings, norms and the tied lm_head
    assert pruned.lm_head.weight.data_ptr() == pruned.model.embed_tokens.weight.data_ptr()
    manifest = load_manifest(out)
    assert manifest["method"] == method and manifest["params"]["pattern"] == pattern
    assert set(manifest["sparsity"]["per_layer"]) == set(weights)
    assert abs(manifest["sparsity"]["overall"] - 0.5) <= 0.001
    assert manifest["sparsity"].get("nm_valid", True) is True
    assert manifest["kind"] == "pruning" and "lm_head" not in json.dumps(manifest["sparsity"])


def test_magnitude_drops_the_smallest_weights():
    from comptrust.compression.magnitude import nm_mask, unstructured_mask

    w = torch.tensor([[0.1, -4.0, 3.0, -0.2], [5.0, 0.3, -0.4, 1.0]])
    assert nm_mask(w, 2, 4).tolist() == [[False, True, True, False], [True, False, False, True]]
    assert unstructured_mask(w, 0.25).tolist() == [[False, True, True, True], [True, False, True, True]]
    w8 = torch.arange(1.0, 9.0).reshape(1, 8)
    assert nm_mask(w8, 1, 2).tolist() == [[False, True] * 4]
    # 0.3 x 64 columns is not whole: rows drop 19 or 20 weights so the layer is exactly 30%
    w = torch.randn(48, 64, generator=torch.Generator().manual_seed(0))
    keep = unstructured_mask(w, 0.3)
    assert int((~keep).sum()) == round(0.3 * 48 * 64)
    assert set((~keep).sum(dim=1).tolist()) == {19, 20}
    for row in range(48):  # whatever a row drops is smaller than whatever it keeps
        assert w[row][~keep[row]].abs().max() <= w[row][keep[row]].abs().min()


# ---------------------------------------------------------------- quantization


@pytest.mark.parametrize("method,bits,group_size,symmetric", [
    ("rtn", 4, 32, True), ("rtn", 3, 64, False), ("gptq", 4, 32, True), ("gptq", 3, 64, False),
    ("gptq", 8, "channel", True), ("awq", 4, 32, False),
])
def test_quantized_weights_take_few_values_and_reload_exactly(base, base_model, tmp_path, method, bits,
                                                              group_size, symmetric):
    config = make_config(method, bits=bits, group_size=group_size, symmetric=symmetric,
                         **(CALIB if method != "rtn" else {}))
    result = run_compression(base, config)
    ids = torch.tensor([[5, 17, 42, 99, 7, 3, 250, 11]])
    with torch.no_grad():
        in_memory = result.model(ids).logits
    out = tmp_path / "artifact"
    out.mkdir()
    save_artifact(result, out, base, artifact_key(base, config))
    quantized = load(out)
    with torch.no_grad():
        reloaded = quantized(ids).logits
    assert torch.allclose(in_memory, reloaded, atol=1e-5, rtol=0)
    with torch.no_grad():
        dense = base_model(ids).logits
    assert not torch.allclose(dense, reloaded, atol=1e-4)  # it really was quantized
    for name, w in target_weights(quantized).items():
        g = w.shape[1] if group_size == "channel" else group_size
        groups = w.reshape(w.shape[0], -1, g)
        distinct = max(len(torch.unique(groups[r, c])) for r in range(groups.shape[0])
                       for c in range(groups.shape[1]))
        assert distinct <= 2 ** bits, name
    before, after = untouched(base_model), untouched(quantized)
    for key in before:
        # AWQ folds its channel scales into the RMSNorm in front of q/k/v and gate/up, by design
        if method == "awq" and key.endswith("layernorm.weight"):
            continue
        assert torch.equal(before[key], after[key]), key
    config_json = json.loads((out / "config.json").read_text())
    assert config_json["quantization_config"]["quant_method"] == "compressed-tensors"
    manifest = load_manifest(out)
    assert manifest["params"]["bits"] == bits and manifest["params"]["group_size"] == group_size
    assert manifest["calibration"] is None if method == "rtn" else manifest["calibration"]["samples"] == 4
    # float32 scales: g32 -> 4 + 32/32 bits, plus a zero point per group when asymmetric
    if (method, bits, group_size, symmetric) == ("rtn", 4, 32, True):
        assert 5.0 <= manifest["storage"]["effective_bits_per_weight"] < 5.1


def test_group_size_must_divide_every_layer(base, tmp_path, capsys):
    code, out, err = run_cli(capsys, "compress", str(base), "--method", "rtn", "--bits", "4",
                             "--out", str(tmp_path / "x"))
    assert code != 0 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert "group size 128 does not divide" in err and "model.layers.0.self_attn.q_proj (64)" in err
    assert "--group-size auto" in err
    auto = compress_model(base, "rtn", tmp_path / "auto", bits=4, group_size="auto")
    manifest = load_manifest(auto)
    assert manifest["params"]["group_size"] == 64 and manifest["config"]["group_size"] == "auto"


def test_auto_group_size_picks_largest_power_of_two_that_fits():
    from comptrust.compression.measure import resolve_group_size

    model = torch.nn.Sequential(torch.nn.Linear(576, 8), torch.nn.Linear(96, 8))
    assert resolve_group_size(model, "auto") == 32
    assert resolve_group_size(torch.nn.Sequential(torch.nn.Linear(576, 8)), "auto") == 64
    assert resolve_group_size(torch.nn.Sequential(torch.nn.Linear(100, 8)), "auto") == "channel"
    with pytest.raises(ConfigError, match=r"0 \(576\)"):
        resolve_group_size(model, 128)


# ---------------------------------------------------------------- seeds and reuse


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != "comptrust.json"}


def test_same_seed_gives_byte_identical_artifact_and_other_seed_other_weights(base, tmp_path):
    a = compress_model(base, "gptq", tmp_path / "a", bits=4, group_size=32, seed=0, **CALIB)
    b = compress_model(base, "gptq", tmp_path / "b", bits=4, group_size=32, seed=0, **CALIB)
    c = compress_model(base, "gptq", tmp_path / "c", bits=4, group_size=32, seed=1, **CALIB)
    assert _files(a) == _files(b) and "model.safetensors" in _files(a)
    assert stable_manifest(load_manifest(a)) == stable_manifest(load_manifest(b))
    assert _files(a)["model.safetensors"] != _files(c)["model.safetensors"]
    calib_a, calib_c = load_manifest(a)["calibration"], load_manifest(c)["calibration"]
    assert calib_a["token_ids_sha256"] != calib_c["token_ids_sha256"] and calib_c["seed"] == 1


def test_wanda_calibration_seed_changes_the_mask(base, tmp_path):
    a = compress_model(base, "wanda", tmp_path / "a", seed=0, **CALIB)
    b = compress_model(base, "wanda", tmp_path / "b", seed=2, **CALIB)
    wa, wb = target_weights(load(a)), target_weights(load(b))
    assert any(not torch.equal(wa[k] == 0, wb[k] == 0) for k in wa)


def test_artifact_is_reused_by_content_hash(base, tmp_path, isolated_home):
    first = compress_model(base, "magnitude", sparsity=0.3)
    assert first.parent == isolated_home / "artifacts"
    assert all(abs(s - 0.3) <= 0.001 for s in load_manifest(first)["sparsity"]["per_layer"].values())
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    again = compress_model(base, "magnitude", sparsity=0.3)
    assert again == first and (first / "model.safetensors").stat().st_mtime_ns == stamp
    other = compress_model(base, "magnitude", sparsity=0.4)
    assert other != first
    out = compress_model(base, "magnitude", tmp_path / "out", sparsity=0.3)
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    assert compress_model(base, "magnitude", tmp_path / "out", sparsity=0.3) == out
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(ConfigError, match="already exists"):
        compress_model(base, "magnitude", tmp_path / "out", sparsity=0.4)
    with pytest.raises(ConfigError, match="would overwrite the base model"):
        compress_model(base, "magnitude", base, sparsity=0.4, force=True)
    compress_model(base, "magnitude", tmp_path / "out", sparsity=0.4, force=True)
    assert load_manifest(out)["params"]["sparsity"] == 0.4
    # a different base model is a different artifact, even with the same config
    other_base = build_tiny_llama(tmp_path / "other", seed=4)
    assert compress_model(other_base, "magnitude", sparsity=0.3) != first


def test_reusing_an_artifact_needs_no_llm_compressor(base, isolated_home, monkeypatch):
    import sys

    first = compress_model(base, "awq", bits=4, group_size=32, **CALIB)
    monkeypatch.setitem(sys.modules, "llmcompressor", None)  # as in the vllm environment
    assert compress_model(base, "awq", bits=4, group_size=32, **CALIB) == first
    with pytest.raises(ConfigError, match="awq needs llm-compressor.*compress in the main environment"):
        compress_model(base, "awq", bits=4, group_size=64, **CALIB)
    assert compress_model(base, "magnitude", sparsity=0.2).is_dir()  # comptrust's own method still works


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("argv,expected", [
    (["--method", "quantize"], "unknown compression method 'quantize'"),
    (["--method", "gptq", "--bits", "5"], "5-bit weights are not supported"),
    (["--method", "awq", "--pattern", "2:4"], "--pattern applies to pruning, not to awq"),
    (["--method", "wanda", "--sparsity", "1.5"], "sparsity 1.5 is outside (0, 1)"),
    (["--method", "magnitude", "--sparsity", "0"], "sparsity 0.0 is outside (0, 1)"),
    (["--method", "sparsegpt", "--pattern", "2:4", "--sparsity", "0.7"], "pattern 2:4 means 50% sparsity"),
    (["--method", "rtn", "--bits", "4", "--calib-samples", "8"], "rtn uses no calibration data"),
    (["--method", "gptq", "--group-size", "abc"], "group size 'abc' is not a number"),
])
def test_bad_options_fail_in_one_line(base, capsys, argv, expected):
    code, out, err = run_cli(capsys, "compress", str(base), *argv)
    assert code != 0 and out == ""
    assert len(err.strip().splitlines()) == 1 and expected in err


def test_bad_models_fail_in_one_line(tmp_path, capsys):
    empty = tmp_path / "no-weights"
    empty.mkdir()
    (empty / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}))
    code, _, err = run_cli(capsys, "compress", str(empty), "--method", "magnitude")
    assert code != 0 and len(err.strip().splitlines()) == 1 and "has no weight files" in err
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"architectures": ["BertForMaskedLM"], "model_type": "bert"}))
    save_file({"w": torch.zeros(2)}, str(bert / "model.safetensors"))
    code, _, err = run_cli(capsys, "compress", str(bert), "--method", "gptq")
    assert code != 0 and len(err.strip().splitlines()) == 1 and "unsupported architecture 'BertForMaskedLM'" in err
    with pytest.raises(ModelError):
        compress_model(tmp_path / "missing", "rtn")


def test_cli_exit_status_from_a_real_process(base):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "comptrust.cli", "compress", str(base), "--method", "rtn",
                           "--bits", "5"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "comptrust: error: 5-bit weights are not supported. choose --bits from 3, 4, 8"


def test_inspect_prints_the_manifest(base, tmp_path, capsys):
    out = tmp_path / "mag"
    code, stdout, _ = run_cli(capsys, "compress", str(base), "--method", "magnitude", "--pattern", "2:4",
                              "--out", str(out), "--quiet")
    assert code == 0 and stdout.strip() == str(out)
    code, stdout, _ = run_cli(capsys, "inspect", str(out))
    assert code == 0
    assert "magnitude (pruning)" in stdout and "2:4 valid: yes" in stdout and "0.5000 overall" in stdout
    code, stdout, _ = run_cli(capsys, "inspect", str(out), "--json")
    assert json.loads(stdout)["sparsity"]["nm_valid"] is True
    code, _, err = run_cli(capsys, "inspect", str(tmp_path))
    assert code != 0 and "is not a comptrust artifact" in err
