"""AWQ: scale salient input channels before rounding, chosen by a grid search on activations.

llm-compressor 0.14 splits AWQ into a smoothing transform (``AWQModifier``) and
the quantizer (``QuantizationModifier``) that must follow it with the same
scheme.  On CPU the smoothing step needs the pin_memory workaround in
``engine._awq_cpu_without_pinning``.

Layer mappings (which layer's output channels are scaled, which layers absorb the inverse)
come from llm-compressor's ``AWQ_MAPPING_REGISTRY``; :data:`OWN_MAPPINGS` adds two families
it lacks, written in its own format and passed to ``AWQModifier(mappings=...)``:

- Mixtral: llm-compressor's MoE mapping (Qwen-MoE's), since transformers 5 names Mixtral's
  block ``mlp`` with ``mlp.gate`` (router) and linearized ``mlp.experts.N.{gate,up,down}_proj``.
- OPT: the original AWQ's (llm-awq ``auto_scale``): ``self_attn_layer_norm`` -> q/k/v,
  ``v_proj`` -> ``out_proj``, each layer's ``final_layer_norm`` -> ``fc1``, ``fc1`` -> ``fc2`` (ReLU between
  them commutes with positive per-channel scales).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from comptrust.compression.base import Compressor
from comptrust.compression.config import CompressionConfig
from comptrust.compression.engine import _quiet_env, ignore_list, run_oneshot, weight_scheme

if TYPE_CHECKING:
    import torch

    from comptrust.compression.calibration import Calibration


def _own_mappings() -> dict[str, list[Any]]:
    from llmcompressor.modifiers.transform.awq.mappings import AWQ_MAPPING_REGISTRY, AWQMapping

    return {
        "MixtralForCausalLM": AWQ_MAPPING_REGISTRY["Qwen3MoeForCausalLM"],
        "OPTForCausalLM": [
            AWQMapping("re:.*self_attn_layer_norm$", ["re:.*q_proj$", "re:.*k_proj$", "re:.*v_proj$"]),
            AWQMapping("re:.*v_proj$", ["re:.*out_proj$"]),
            AWQMapping(r"re:.*layers\.\d+\.final_layer_norm$", ["re:.*fc1$"]),  # not the decoder's last norm
            AWQMapping("re:.*fc1$", ["re:.*fc2$"]),
        ],
    }


def awq_mappings(architecture: str) -> list[Any] | None:
    """AWQ's layer mappings for ``architecture``: llm-compressor's own, else comptrust's, else None."""
    _quiet_env()
    from llmcompressor.modifiers.transform.awq import AWQ_MAPPING_REGISTRY

    if architecture in AWQ_MAPPING_REGISTRY:
        return AWQ_MAPPING_REGISTRY[architecture]
    return _own_mappings().get(architecture)


class AWQCompressor(Compressor):
    name = "awq"
    label = "AWQ"
    family = "quantization"
    needs_calibration = True
    saves_compressed = True

    def compress(self, model: torch.nn.Module, config: CompressionConfig,
                 calibration: Calibration | None) -> dict[str, Any]:
        from llmcompressor.modifiers.quantization import QuantizationModifier
        from llmcompressor.modifiers.transform.awq import AWQModifier

        assert config.group_size is not None and calibration is not None
        arch = type(model).__name__
        own = arch not in _registry() and awq_mappings(arch) is not None
        smoothing = AWQModifier(duo_scaling=True, mappings=awq_mappings(arch) if own else None)
        quantizer = QuantizationModifier(config_groups={"group_0": weight_scheme(config, config.group_size)},
                                         ignore=ignore_list())
        run_oneshot(model, [smoothing, quantizer], calibration)
        return {"engine": "llmcompressor.AWQModifier+QuantizationModifier", "duo_scaling": True,
                "n_grid": smoothing.n_grid, "mappings": "comptrust" if own else "llm-compressor"}


def _registry() -> dict[str, Any]:
    from llmcompressor.modifiers.transform.awq import AWQ_MAPPING_REGISTRY

    return AWQ_MAPPING_REGISTRY
