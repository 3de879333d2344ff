"""The deployed formats beyond the paper: what each quantizes, its bits, and which runtime it stands for.

The paper's methods (rtn, gptq, awq) quantize weights only and take ``--bits``
and ``--group-size``.  The formats here are fixed by the runtime that serves
them: FP8 and INT8 W8A8 quantize weights *and* the activations entering every
Linear layer (vLLM / TensorRT-LLM kernels), NVFP4 is Blackwell's 4-bit float
with FP8 block scales, and GGUF types are llama.cpp's own.  Each activation format's
facts sit on its compressor class (``fp8.py``, ``w8a8.py``, ``nvfp4.py``); the GGUF
types are here, with what the manifest records of either.
"""

from __future__ import annotations

from dataclasses import dataclass

from comptrust.compression.methods import format_of


@dataclass(frozen=True)
class Format:
    """One deployable format: what is quantized, to how many bits, and where it runs.

    Each ``format``-family compressor carries its own (``Compressor.format``), so a new
    format is one file; ``group`` and ``scale_bits`` give its storage (sweep size estimates).
    """

    weights: str
    activations: str
    weight_bits: float
    activation_bits: int | None  # None: activations stay in the compute dtype (16/32-bit)
    runtime: str
    fidelity: str  # how comptrust's evaluation relates to that runtime's numbers
    scheme: str | None = None  # compressed-tensors preset
    number: str = ""  # the number format of the weights, as a format string names it: FP8, INT8, FP4
    group: int | None = None  # weights per scale; None: one scale per output channel
    scale_bits: int = 16  # bits of each stored scale


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
    fmt = format_of(method)
    return {"weights": fmt.weights, "activations": fmt.activations, "weight_bits": fmt.weight_bits,
            "activation_bits": fmt.activation_bits, "runtime": fmt.runtime, "fidelity": fmt.fidelity,
            "scheme": fmt.scheme}
