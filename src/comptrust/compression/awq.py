"""AWQ: scale salient input channels before rounding, chosen by a grid search on activations.

llm-compressor 0.14 splits AWQ into a smoothing transform (``AWQModifier``) and
the quantizer (``QuantizationModifier``) that must follow it with the same
scheme.  On CPU the smoothing step needs the pin_memory workaround in
``engine._awq_cpu_without_pinning``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from comptrust.compression.base import CompressionConfig
from comptrust.compression.engine import ignore_list, run_oneshot, weight_scheme

if TYPE_CHECKING:
    import torch

    from comptrust.compression.calibration import Calibration


class AWQCompressor:
    name = "awq"
    kind = "quantization"
    needs_calibration = True
    saves_compressed = True

    def compress(self, model: torch.nn.Module, config: CompressionConfig,
                 calibration: Calibration | None) -> dict[str, Any]:
        from llmcompressor.modifiers.quantization import QuantizationModifier
        from llmcompressor.modifiers.transform.awq import AWQModifier

        assert config.group_size is not None and calibration is not None
        smoothing = AWQModifier(duo_scaling=True)
        quantizer = QuantizationModifier(config_groups={"group_0": weight_scheme(config, config.group_size)},
                                         ignore=ignore_list())
        run_oneshot(model, [smoothing, quantizer], calibration)
        return {"engine": "llmcompressor.AWQModifier+QuantizationModifier", "duo_scaling": True,
                "n_grid": smoothing.n_grid}
