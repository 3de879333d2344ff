"""FP8, INT8 W8A8 and NVFP4: activations are quantized in the forward pass, as the runtime does.

The reference below is written from the formats' definitions (per-token absmax
scale, round to the format, clamp) and applied with plain PyTorch hooks to a
plain Llama holding the artifact's dequantized weights: it shares no code with
compressed-tensors' quantized forward that comptrust evaluates with.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from comptrust.compression import compress_model, load_manifest, make_config
from comptrust.errors import ConfigError
from conftest import build_tiny_llama

CALIB = {"calib_samples": 4, "calib_seqlen": 32}
IDS = torch.tensor([[1, 5, 9, 20, 33, 40, 7, 3], [2, 11, 13, 17, 19, 23, 29, 31]])


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("aq") / "base", seed=3)


@pytest.fixture(scope="module")
def artifacts(base, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("aq-artifacts")
    return {"fp8": compress_model(base, "fp8", root / "fp8"),
            "w8a8": compress_model(base, "w8a8", root / "w8a8", **CALIB),
            "nvfp4": compress_model(base, "nvfp4", root / "nvfp4", **CALIB)}


def _load(path: Path):
    from comptrust.backends.hf.backend import HFBackend

    return HFBackend.from_path(str(path), batch_size=2)


def _logits(model) -> torch.Tensor:
    with torch.inference_mode():
        return model(input_ids=IDS).logits.float()


def fp8_per_token(x: torch.Tensor) -> torch.Tensor:
    """FP8 E4M3 with one scale per token: scale = absmax / 448, round to nearest FP8."""
    scale = x.abs().amax(dim=-1, keepdim=True).clamp(min=torch.finfo(torch.float32).eps) / 448.0
    return (x / scale).clamp(-448.0, 448.0).to(torch.float8_e4m3fn).to(x.dtype) * scale


def int8_per_token(x: torch.Tensor) -> torch.Tensor:
    """Symmetric INT8 with one scale per token; compressed-tensors spreads absmax over the 255 steps of [-128, 127]."""
    scale = x.abs().amax(dim=-1, keepdim=True).clamp(min=torch.finfo(torch.float32).eps) / 127.5
    return torch.round(x / scale).clamp(-128, 127) * scale


def _reference_model(base: Path, artifact: Path, quantize) -> torch.nn.Module:
    """A plain transformers Llama with the artifact's weights dequantized by hand and ``quantize`` on Linear inputs."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(base)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    stored = load_file(str(artifact / "model.safetensors"))
    state = {}
    for key, value in stored.items():
        if key.endswith("weight_scale"):
            continue
        scale = stored.get(key + "_scale")
        state[key] = value.float() * scale.float() if scale is not None else value.float()
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all("lm_head" in k for k in missing)
    model.tie_weights()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and "lm_head" not in name:
            module.register_forward_pre_hook(lambda _m, args: (quantize(args[0]),))
    return model


@pytest.mark.parametrize("method,quantize", [("fp8", fp8_per_token), ("w8a8", int8_per_token)])
def test_activation_quantized_logits_equal_an_independent_reference(base, artifacts, method, quantize):
    backend = _load(artifacts[method])
    got = _logits(backend.model)
    reference = _logits(_reference_model(base, artifacts[method], quantize))
    torch.testing.assert_close(got, reference, rtol=0, atol=2e-5)
    # The same weights with float activations give other logits: the activations really are quantized.
    float_acts = _logits(_reference_model(base, artifacts[method], lambda x: x))
    assert (got - float_acts).abs().max() > 1e-3
    info = backend.info()["activation_quantization"]
    assert info["num_bits"] == 8 and info["layers"] == 14 and info["enabled"] and "token" in info["strategy"]


@pytest.mark.parametrize("method", ["fp8", "w8a8", "nvfp4"])
def test_switching_activation_quantization_off_changes_the_logits(artifacts, method):
    from comptrust.backends.hf.quantized_forward import quantized_layers

    model = _load(artifacts[method]).model
    quantized = _logits(model)
    for _name, layer in quantized_layers(model):
        layer.quantization_enabled = False
    assert (quantized - _logits(model)).abs().max() > 1e-3


def test_nvfp4_runs_in_float32_and_matches_bfloat16(artifacts, monkeypatch):
    """NVFP4 decompresses to bfloat16; the backend casts the weights, so a float32 model runs."""
    f32 = _logits(_load(artifacts["nvfp4"]).model)
    monkeypatch.setenv("COMPTRUST_DTYPE", "bfloat16")
    bf16 = _logits(_load(artifacts["nvfp4"]).model)
    assert torch.isfinite(f32).all()
    assert (f32 - bf16).abs().max() < 0.1 * bf16.abs().max()


@pytest.mark.parametrize("method,weights,acts", [("fp8", "float8_e4m3fn", "FP8"), ("w8a8", "int8", "INT8"),
                                                 ("nvfp4", "uint8", "FP4")])
def test_manifest_records_format_and_runtime(artifacts, method, weights, acts):
    manifest = load_manifest(artifacts[method])
    fmt = manifest["quantized_format"]
    assert acts in fmt["activations"] and fmt["runtime"] and "fake quantization" in fmt["fidelity"]
    assert manifest["params"]["bits"] == (4 if method == "nvfp4" else 8)
    config = json.loads((artifacts[method] / "config.json").read_text())["quantization_config"]
    scheme = next(iter(config["config_groups"].values()))
    assert scheme["input_activations"]["dynamic"] in (True, "local")
    from safetensors import safe_open

    with safe_open(str(artifacts[method] / "model.safetensors"), "pt") as fh:
        key = "model.layers.0.mlp.down_proj." + ("weight_packed" if method == "nvfp4" else "weight")
        assert str(fh.get_slice(key).get_dtype()).lower() in (weights, {"float8_e4m3fn": "f8_e4m3",
                                                                       "int8": "i8", "uint8": "u8"}[weights])


@pytest.mark.parametrize("method,params,message", [
    ("fp8", {"bits": 4}, "fp8 stores 8-bit weights, not 4"),
    ("fp8", {"group_size": 64}, "--group-size does not apply to fp8"),
    ("fp8", {"calib_samples": 8}, "fp8 uses no calibration data"),
    ("w8a8", {"smoothing": 1.5}, "SmoothQuant strength 1.5 is outside"),
    ("nvfp4", {"symmetric": False}, "--symmetric does not apply to nvfp4"),
    ("gptq", {"smoothing": 0.5}, "--smoothing applies to w8a8 only"),
])
def test_format_options_fail_in_one_line(method, params, message):
    with pytest.raises(ConfigError, match=message):
        make_config(method, **params)


def test_uncalibrated_format_ignores_the_sweep_seed():
    assert make_config("fp8", seed=2) == make_config("fp8")
    assert make_config("w8a8", seed=2) != make_config("w8a8")


def test_nvfp4_on_widths_that_16_does_not_divide_fails_before_loading_weights(tmp_path, capsys):
    """NVFP4's groups are 16 wide whatever --group-size says: a model of width 24 cannot be stored."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from comptrust.cli import main

    folder = tmp_path / "w24"
    LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=24, intermediate_size=48, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=2)).save_pretrained(folder)
    capsys.readouterr()
    assert main(["compress", str(folder), "--method", "nvfp4", "--out", str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nvfp4 quantizes groups of 16 inputs" in err and "(24)" in err
    assert not (tmp_path / "out").exists()
