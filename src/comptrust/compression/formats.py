"""The deployed formats beyond the paper: what each quantizes, its bits, and which runtime it stands for.

The paper's methods (rtn, gptq, awq) quantize weights only and take ``--bits``
and ``--group-size``.  The formats here are fixed by the runtime that serves
them: FP8 and INT8 W8A8 quantize weights *and* the activations entering every
Linear layer (vLLM / TensorRT-LLM kernels), NVFP4 is Blackwell's 4-bit float
with FP8 block scales, and GGUF types are llama.cpp's own.  One table keeps the
facts the config validator, the manifest, the reports and the docs all need.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from comptrust.errors import ConfigError

if TYPE_CHECKING:
    from comptrust.compression.base import CompressionConfig


@dataclass(frozen=True)
class Format:
    """One deployable format: what is quantized, to how many bits, and where it runs."""

    method: str
    weights: str
    activations: str
    weight_bits: float
    activation_bits: int | None  # None: activations stay in the compute dtype (16/32-bit)
    runtime: str
    fidelity: str  # how comptrust's evaluation relates to that runtime's numbers
    scheme: str | None = None  # compressed-tensors preset
    calibrated: bool = False


ACTIVATION_FORMATS: dict[str, Format] = {
    "fp8": Format(
        "fp8", "FP8 E4M3, one scale per output channel", "FP8 E4M3, dynamic scale per token", 8, 8,
        "vLLM / TensorRT-LLM FP8 (W8A8) kernels on Ada/Hopper/Blackwell GPUs",
        "fake quantization in the forward pass (compressed-tensors): activations are rounded to FP8 per token "
        "before every Linear, then multiplied in the compute dtype; vLLM's FP8 GEMMs accumulate differently, so "
        "expect small numeric differences", scheme="FP8_DYNAMIC"),
    "w8a8": Format(
        "w8a8", "INT8 symmetric, one scale per output channel (SmoothQuant + GPTQ)",
        "INT8 symmetric, dynamic scale per token", 8, 8,
        "vLLM INT8 (W8A8) kernels (CUTLASS on Ampere+ GPUs; also CPU builds)",
        "fake quantization in the forward pass (compressed-tensors): activations are rounded to INT8 per token "
        "before every Linear; vLLM's INT8 GEMMs accumulate in int32, so expect small numeric differences",
        scheme="W8A8", calibrated=True),
    "nvfp4": Format(
        "nvfp4", "FP4 E2M1, groups of 16 with an FP8 scale and one global scale",
        "FP4 E2M1, groups of 16, dynamic local scales under a calibrated global scale", 4, 4,
        "vLLM / TensorRT-LLM NVFP4 kernels on Blackwell GPUs (B200, RTX 50xx)",
        "fake quantization in the forward pass (compressed-tensors): activations are rounded to FP4 per group of "
        "16 before every Linear; Blackwell FP4 tensor cores accumulate differently, so expect small numeric "
        "differences", scheme="NVFP4", calibrated=True),
}

GGUF_RUNTIME = "llama.cpp (and Ollama, LM Studio, llama-cpp-python) CPU/GPU kernels"

# llama.cpp's quantization types that need no importance matrix (tools/quantize).  The k-quant mixes
# (_S/_M/_L) keep some tensors at higher precision; the manifest records the bits per weight measured
# in the written file, not a nominal figure.
GGUF_TYPES: tuple[str, ...] = ("Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_0", "Q4_1", "Q4_K_S", "Q4_K_M", "Q5_0",
                               "Q5_1", "Q5_K_S", "Q5_K_M", "Q6_K", "Q8_0", "IQ4_NL", "IQ4_XS", "F16", "BF16", "F32")
# Types llama.cpp's converter writes itself (gguf-py's numpy quantizer for Q8_0): the fallback when
# llama-cpp-python (llama.cpp's quantizer) is not installed.
GGUF_CONVERTER_TYPES = ("F32", "F16", "BF16", "Q8_0")


def gguf_weight_bits(gguf_type: str) -> int:
    """The headline bits of a GGUF type as people name it (Q4_K_M -> 4, F16 -> 16)."""
    name = gguf_type.upper()
    if name.startswith(("F", "BF")):
        return int(name.lstrip("BF"))
    digits = "".join(ch for ch in name.split("_")[0] if ch.isdigit())
    return int(digits)


def describe_format(method: str, gguf_type: str | None = None) -> dict[str, object]:
    """Manifest block ``format``: what is quantized and which runtime the numbers stand for."""
    if method == "gguf":
        assert gguf_type is not None
        return {"weights": f"GGUF {gguf_type} (llama.cpp block quantization)", "activations": "compute dtype of "
                "llama.cpp (Q8_K/Q8_0-quantized inside its integer dot products on CPU)",
                "weight_bits": gguf_weight_bits(gguf_type), "activation_bits": None, "runtime": GGUF_RUNTIME,
                "fidelity": "evaluated with llama.cpp's own kernels (--backend llamacpp): the numbers are the "
                            "runtime's; --backend hf evaluates transformers' dequantized copy instead"}
    fmt = ACTIVATION_FORMATS[method]
    return {"weights": fmt.weights, "activations": fmt.activations, "weight_bits": fmt.weight_bits,
            "activation_bits": fmt.activation_bits, "runtime": fmt.runtime, "fidelity": fmt.fidelity,
            "scheme": fmt.scheme}


# Options each format accepts besides calibration (--calib-*, --seed) where it is calibrated.
_OPTIONS = {"fp8": set(), "w8a8": {"smoothing", "damp"}, "nvfp4": set(), "gguf": {"gguf_type"}}
_PAPER_OPTIONS = ("group_size", "symmetric", "act_order", "sparsity", "pattern")


def make_format_config(method: str, params: dict[str, Any]) -> CompressionConfig:
    """Validate the options of ``fp8``/``w8a8``/``nvfp4``/``gguf``; one-line errors for the rest."""
    from comptrust.compression.base import CompressionConfig, calib_config, damp_fraction

    params = dict(params)
    allowed = _OPTIONS[method]
    fixed = _fixed_bits(method, params)
    for name in _PAPER_OPTIONS + ("smoothing", "damp", "gguf_type"):
        if name in params and name not in allowed:
            flag = "type" if name == "gguf_type" else name.replace("_", "-")
            raise ConfigError(f"--{flag} does not apply to {method}, whose format is fixed ({_summary(method)})",
                              f"drop --{flag}")
    calibrated = method in ACTIVATION_FORMATS and ACTIVATION_FORMATS[method].calibrated
    stray = sorted(k for k in params if k.startswith("calib_"))
    if not calibrated and stray:
        raise ConfigError(f"{method} uses no calibration data, so --{stray[0].replace('_', '-')} has no effect",
                          "drop it (w8a8 and nvfp4 are the calibrated formats)")
    seed = int(params.pop("seed", 0)) if calibrated else 0  # nothing random happens without calibration
    calib = calib_config(method, params) if calibrated else None
    if method == "gguf":
        return CompressionConfig(method="gguf", bits=fixed, gguf_type=_gguf_type(params.get("gguf_type")))
    fmt = ACTIVATION_FORMATS[method]
    smoothing = None
    if method == "w8a8":
        smoothing = float(params.get("smoothing", 0.8))
        if not 0.0 <= smoothing <= 1.0:
            raise ConfigError(f"SmoothQuant strength {smoothing} is outside [0, 1]",
                              "pass e.g. --smoothing 0.8 (llm-compressor's default; 0 disables smoothing)")
    return CompressionConfig(method=method, bits=fixed, scheme=fmt.scheme, smoothing=smoothing,
                             damp=damp_fraction(params.get("damp", 0.01)) if method == "w8a8" else None,
                             calib=calib, seed=seed)


def _summary(method: str) -> str:
    if method == "gguf":
        return "llama.cpp types, chosen with --type"
    fmt = ACTIVATION_FORMATS[method]
    return f"{fmt.weight_bits:g}-bit weights, {fmt.activation_bits}-bit activations"


def _fixed_bits(method: str, params: dict[str, Any]) -> int:
    """The weight bits the format implies; a ``--bits`` that disagrees is an error."""
    if method == "gguf":
        bits = gguf_weight_bits(_gguf_type(params.get("gguf_type")))
    else:
        bits = int(ACTIVATION_FORMATS[method].weight_bits)
    given = params.pop("bits", None)
    if given is not None and int(given) != bits:
        hint = "choose the bits with --type (e.g. Q4_K_M, Q8_0)" if method == "gguf" else "drop --bits"
        raise ConfigError(f"{method} stores {bits}-bit weights, not {given}", hint)
    return bits


def _gguf_type(value: Any) -> str:
    if value is None:
        raise ConfigError("--method gguf needs --type", f"pass one of: {', '.join(GGUF_TYPES)}")
    name = str(value).upper()
    if name not in GGUF_TYPES:
        raise ConfigError(f"unknown GGUF type {value!r}",
                          f"choose from: {', '.join(GGUF_TYPES)} (IQ1/IQ2/IQ3 types need an importance matrix)")
    return name
