"""RTN: round-to-nearest weight quantization, no calibration data.

The baseline every other quantizer must beat; llm-compressor's
``QuantizationModifier`` with min-max scales per group (or per channel).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from comptrust.compression.base import Compressor
from comptrust.compression.config import CompressionConfig
from comptrust.compression.engine import ignore_list, run_oneshot, weight_scheme

if TYPE_CHECKING:
    import torch

    from comptrust.compression.calibration import Calibration


class RTNCompressor(Compressor):
    name = "rtn"
    label = "RTN"
    family = "quantization"
    needs_calibration = False
    saves_compressed = True

    def compress(self, model: torch.nn.Module, config: CompressionConfig,
                 calibration: Calibration | None) -> dict[str, Any]:
        from llmcompressor.modifiers.quantization import QuantizationModifier

        assert config.group_size is not None
        modifier = QuantizationModifier(config_groups={"group_0": weight_scheme(config, config.group_size)},
                                        ignore=ignore_list())
        run_oneshot(model, [modifier], None)
        return {"engine": "llmcompressor.QuantizationModifier"}
