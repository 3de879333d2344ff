"""FP8: E4M3 weights (one scale per output channel) and E4M3 activations (dynamic scale per token).

What vLLM serves on Hopper/Ada as "FP8 dynamic": no calibration data, since the
activation scale of every token is computed on the fly.  Evaluation keeps the
activation quantization: compressed-tensors' quantized forward rounds each
Linear layer's input to FP8 per token (tests/test_activation_quant.py checks it
against an independent computation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from comptrust.compression.base import Compressor
from comptrust.compression.config import CompressionConfig
from comptrust.compression.engine import ignore_list, run_oneshot
from comptrust.compression.formats import Format

if TYPE_CHECKING:
    import torch

    from comptrust.compression.calibration import Calibration


class FP8Compressor(Compressor):
    name = "fp8"
    label = "FP8"
    family = "format"
    needs_calibration = False
    saves_compressed = True
    format = Format(
        "FP8 E4M3, one scale per output channel", "FP8 E4M3, dynamic scale per token", 8, 8,
        "vLLM / TensorRT-LLM FP8 (W8A8) kernels on Ada/Hopper/Blackwell GPUs",
        "fake quantization in the forward pass (compressed-tensors): activations are rounded to FP8 per token "
        "before every Linear, then multiplied in the compute dtype; vLLM's FP8 GEMMs accumulate differently, so "
        "expect small numeric differences", scheme="FP8_DYNAMIC", number="FP8")

    def compress(self, model: torch.nn.Module, config: CompressionConfig,
                 calibration: Calibration | None) -> dict[str, Any]:
        from llmcompressor.modifiers.quantization import QuantizationModifier

        modifier = QuantizationModifier(targets=["Linear"], scheme=config.scheme, ignore=ignore_list())
        run_oneshot(model, [modifier], None)
        return {"engine": "llmcompressor.QuantizationModifier", "scheme": config.scheme}
