"""NVFP4: FP4 (E2M1) weights and activations in groups of 16, FP8 group scales under a global scale.

The 4-bit float format of NVIDIA Blackwell GPUs, through llm-compressor 0.14,
which runs it on a CPU too.  The activations' per-tensor global scale is
observed on calibration data (hence calibrated); the local scale of every group
of 16 inputs is computed on the fly.  Evaluation keeps the activation
quantization (compressed-tensors' quantized forward).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from comptrust.compression.base import CompressionConfig
from comptrust.compression.engine import ignore_list, run_oneshot

if TYPE_CHECKING:
    import torch

    from comptrust.compression.calibration import Calibration


class NVFP4Compressor:
    name = "nvfp4"
    kind = "quantization"
    needs_calibration = True
    saves_compressed = True

    def compress(self, model: torch.nn.Module, config: CompressionConfig,
                 calibration: Calibration | None) -> dict[str, Any]:
        from llmcompressor.modifiers.quantization import QuantizationModifier

        assert calibration is not None
        modifier = QuantizationModifier(targets=["Linear"], scheme=config.scheme, ignore=ignore_list())
        run_oneshot(model, [modifier], calibration)
        return {"engine": "llmcompressor.QuantizationModifier", "scheme": config.scheme}
