"""A compression method written the way a contributor adds one: this file and one registry line.

``test_seams.py`` registers it (``registry.COMPRESSORS["dummy"] = "dummy_method:DummyCompressor"``)
and checks that every list of methods (CLI help, config validation, report label, sweep size)
picks it up with no other edit.  It rounds each weight group to ``bits``-bit symmetric integers
in place (real round-to-nearest, kept in the float dtype), so the artifact can be checked.
"""

from __future__ import annotations

from typing import Any

from comptrust.compression.base import Compressor
from comptrust.compression.config import CompressionConfig


class DummyCompressor(Compressor):
    name = "dummy"
    label = "Dummy RTN"
    family = "quantization"
    needs_calibration = False
    saves_compressed = False  # fake-quantized float weights, saved dense
    uses_llmcompressor = False

    def compress(self, model: Any, config: CompressionConfig, calibration: Any) -> dict[str, Any]:
        import torch

        from comptrust.compression.measure import target_linears

        assert config.bits is not None and isinstance(config.group_size, int)
        top = 2 ** (config.bits - 1) - 1
        with torch.no_grad():
            for layer in target_linears(model).values():
                groups = layer.weight.reshape(layer.weight.shape[0], -1, config.group_size)
                scale = groups.abs().amax(dim=-1, keepdim=True).clamp_min(1e-8) / top
                layer.weight.copy_((torch.round(groups / scale).clamp(-top - 1, top) * scale).reshape_as(layer.weight))
        return {"engine": "tests/dummy_method.py"}
