"""INT8 W8A8: SmoothQuant, then GPTQ to INT8 weights (per channel); INT8 activations per token.

llm-compressor's recipe for vLLM's INT8 kernels.  SmoothQuant (Xiao et al. 2023)
migrates activation outliers into the weights with per-channel scales
(``smoothing`` = its alpha), which is what makes 8-bit activations usable;
GPTQ then rounds the smoothed weights.  Activations are quantized on the fly
per token at evaluation (compressed-tensors' quantized forward).
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


class W8A8Compressor(Compressor):
    name = "w8a8"
    label = "INT8 W8A8"
    family = "format"
    needs_calibration = True
    saves_compressed = True
    options = frozenset({"smoothing", "damp"})
    format = Format(
        "INT8 symmetric, one scale per output channel (SmoothQuant + GPTQ)",
        "INT8 symmetric, dynamic scale per token", 8, 8,
        "vLLM INT8 (W8A8) kernels (CUTLASS on Ampere+ GPUs; also CPU builds)",
        "fake quantization in the forward pass (compressed-tensors): activations are rounded to INT8 per token "
        "before every Linear; vLLM's INT8 GEMMs accumulate in int32, so expect small numeric differences",
        scheme="W8A8", number="INT8")

    def compress(self, model: torch.nn.Module, config: CompressionConfig,
                 calibration: Calibration | None) -> dict[str, Any]:
        from llmcompressor.modifiers.quantization import GPTQModifier
        from llmcompressor.modifiers.transform.smoothquant import SmoothQuantModifier

        assert calibration is not None and config.smoothing is not None
        recipe: list[Any] = []
        if config.smoothing > 0:
            recipe.append(SmoothQuantModifier(smoothing_strength=config.smoothing))
        recipe.append(GPTQModifier(targets=["Linear"], scheme=config.scheme, ignore=ignore_list(),
                                   dampening_frac=config.damp))
        run_oneshot(model, recipe, calibration)
        return {"engine": "+".join(f"llmcompressor.{type(m).__name__}" for m in recipe),
                "smoothing_strength": config.smoothing, "scheme": config.scheme}
