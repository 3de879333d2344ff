"""NVFP4: FP4 (E2M1) weights and activations in groups of 16, FP8 group scales under a global scale.

The 4-bit float format of NVIDIA Blackwell GPUs, through llm-compressor 0.14,
which runs it on a CPU too.  The activations' per-tensor global scale is
observed on calibration data (hence calibrated); the local scale of every group
of 16 inputs is computed on the fly.  Evaluation keeps the activation
quantization (compressed-tensors' quantized forward).
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


class NVFP4Compressor(Compressor):
    name = "nvfp4"
    label = "NVFP4"
    family = "format"
    needs_calibration = True
    saves_compressed = True
    format = Format(
        "FP4 E2M1, groups of 16 with an FP8 scale and one global scale",
        "FP4 E2M1, groups of 16, dynamic local scales under a calibrated global scale", 4, 4,
        "vLLM / TensorRT-LLM NVFP4 kernels on Blackwell GPUs (B200, RTX 50xx)",
        "fake quantization in the forward pass (compressed-tensors): activations are rounded to FP4 per group of "
        "16 before every Linear; Blackwell FP4 tensor cores accumulate differently, so expect small numeric "
        "differences", scheme="NVFP4", number="FP4", group=16, scale_bits=8)

    def compress(self, model: torch.nn.Module, config: CompressionConfig,
                 calibration: Calibration | None) -> dict[str, Any]:
        from llmcompressor.modifiers.quantization import QuantizationModifier

        assert calibration is not None
        modifier = QuantizationModifier(targets=["Linear"], scheme=config.scheme, ignore=ignore_list())
        run_oneshot(model, [modifier], calibration)
        return {"engine": "llmcompressor.QuantizationModifier", "scheme": config.scheme}
