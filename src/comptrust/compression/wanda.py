"""Wanda: prune the weights with the smallest |weight| x input-activation norm, per output row.

llm-compressor's ``WandaPruningModifier`` (Sun et al. 2024); no weight update,
so it needs only one pass over the calibration data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from comptrust.compression.base import Compressor
from comptrust.compression.config import CompressionConfig
from comptrust.compression.engine import ignore_list, run_oneshot
from comptrust.compression.sparsegpt import mask_structure

if TYPE_CHECKING:
    import torch

    from comptrust.compression.calibration import Calibration


class WandaCompressor(Compressor):
    name = "wanda"
    label = "Wanda"
    family = "pruning"
    needs_calibration = True
    saves_compressed = False

    def compress(self, model: torch.nn.Module, config: CompressionConfig,
                 calibration: Calibration | None) -> dict[str, Any]:
        from llmcompressor.modifiers.pruning import WandaPruningModifier

        assert calibration is not None
        modifier = WandaPruningModifier(sparsity=config.sparsity, mask_structure=mask_structure(config),
                                        ignore=ignore_list())
        run_oneshot(model, [modifier], calibration)
        return {"engine": "llmcompressor.WandaPruningModifier"}
