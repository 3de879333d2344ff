"""FP8: E4M3 weights (one scale per output channel) and E4M3 activations (dynamic scale per token).

What vLLM serves on Hopper/Ada as "FP8 dynamic": no calibration data, since the
activation scale of every token is computed on the fly.  Evaluation keeps the
activation quantization: compressed-tensors' quantized forward rounds each
Linear layer's input to FP8 per token (tests/test_activation_quant.py checks it
against an independent computation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from comptrust.compression.base import CompressionConfig
from comptrust.compression.engine import ignore_list, run_oneshot

if TYPE_CHECKING:
    import torch

    from comptrust.compression.calibration import Calibration


class FP8Compressor:
    name = "fp8"
    kind = "quantization"
    needs_calibration = False
    saves_compressed = True

    def compress(self, model: torch.nn.Module, config: CompressionConfig,
                 calibration: Calibration | None) -> dict[str, Any]:
        from llmcompressor.modifiers.quantization import QuantizationModifier

        modifier = QuantizationModifier(targets=["Linear"], scheme=config.scheme, ignore=ignore_list())
        run_oneshot(model, [modifier], None)
        return {"engine": "llmcompressor.QuantizationModifier", "scheme": config.scheme}
