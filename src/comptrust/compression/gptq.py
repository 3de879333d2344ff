"""GPTQ: quantize column by column, correcting the rest of the row with the Hessian.

llm-compressor's ``GPTQModifier`` (Frantar et al. 2023).  ``damp`` is the
fraction of the mean Hessian diagonal added for stability; ``act_order``
processes columns by decreasing activation size ("weight"/static ordering,
which keeps the standard storage format so vLLM kernels still apply).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from comptrust.compression.base import Compressor
from comptrust.compression.config import CompressionConfig
from comptrust.compression.engine import ignore_list, run_oneshot, weight_scheme

if TYPE_CHECKING:
    import torch

    from comptrust.compression.calibration import Calibration


class GPTQCompressor(Compressor):
    name = "gptq"
    label = "GPTQ"
    family = "quantization"
    needs_calibration = True
    saves_compressed = True
    options = frozenset({"act_order", "damp"})

    def compress(self, model: torch.nn.Module, config: CompressionConfig,
                 calibration: Calibration | None) -> dict[str, Any]:
        from llmcompressor.modifiers.quantization import GPTQModifier

        assert config.group_size is not None and calibration is not None
        modifier = GPTQModifier(config_groups={"group_0": weight_scheme(config, config.group_size)},
                                ignore=ignore_list(), dampening_frac=config.damp,
                                actorder="weight" if config.act_order else None)
        run_oneshot(model, [modifier], calibration)
        return {"engine": "llmcompressor.GPTQModifier", "block_size": modifier.block_size}
