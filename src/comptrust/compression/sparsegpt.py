"""SparseGPT: prune with second-order (Hessian) error compensation on calibration data.

llm-compressor's ``SparseGPTModifier`` (Frantar & Alistarh 2023); ``mask_structure``
takes our N:M pattern directly ("0:0" = unstructured).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from comptrust.compression.base import Compressor
from comptrust.compression.config import CompressionConfig
from comptrust.compression.engine import ignore_list, run_oneshot

if TYPE_CHECKING:
    import torch

    from comptrust.compression.calibration import Calibration


def mask_structure(config: CompressionConfig) -> str:
    """Our pattern in llm-compressor's spelling."""
    return "0:0" if config.pattern in (None, "unstructured") else str(config.pattern)


class SparseGPTCompressor(Compressor):
    name = "sparsegpt"
    label = "SparseGPT"
    family = "pruning"
    needs_calibration = True
    saves_compressed = False
    options = frozenset({"damp"})

    def compress(self, model: torch.nn.Module, config: CompressionConfig,
                 calibration: Calibration | None) -> dict[str, Any]:
        from llmcompressor.modifiers.pruning import SparseGPTModifier

        assert calibration is not None
        modifier = SparseGPTModifier(sparsity=config.sparsity, mask_structure=mask_structure(config),
                                     dampening_frac=config.damp, ignore=ignore_list())
        run_oneshot(model, [modifier], calibration)
        return {"engine": "llmcompressor.SparseGPTModifier", "block_size": modifier.block_size}
