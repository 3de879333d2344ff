"""Mixture-of-experts models: routers stay dense, experts are saved under their checkpoint's own names.

Routers: llm-compressor's MoE examples leave every router (``mlp.gate``, Mixtral's
``block_sparse_moe.gate``) dense: it is a tiny Linear whose rounding changes which
experts a token reaches.  :data:`ROUTER_IGNORE` is added to every modifier's ignore list
(``engine.ignore_list``) and to what ``measure.target_linears`` leaves out, so the
manifest's compressed layers are the ones compressed.

Experts: transformers 5 keeps a layer's experts fused (3-D ``experts.gate_up_proj`` /
``experts.down_proj``); llm-compressor's ``oneshot`` linearizes them into one Linear per
expert (``experts.N.gate_proj``) to calibrate and quantize each.  ``save_pretrained`` then
writes those per-expert tensors, and transformers fuses them again on load only if they
carry the names of the family's original checkpoints.  Qwen2/Qwen3-MoE checkpoints use
``gate_proj``/``up_proj``/``down_proj``, the linearized names, so they reload; Mixtral's use
``w1``/``w3``/``w2``, so a Mixtral artifact had no tensors its loader recognised and its
experts came up missing.  :func:`expert_save_names` renames them on save (the same
mechanism llm-compressor uses for the families it maps itself), giving the layout of the
original checkpoints, which transformers and vLLM both read.
"""

from __future__ import annotations

from typing import Any

# llm-compressor's own MoE examples ignore these (Mixtral, Qwen-MoE, OLMoE, DeepSeek, ...).
ROUTER_IGNORE = ["re:.*block_sparse_moe\\.gate$", "re:.*mlp\\.gate$", "re:.*mlp\\.router$",
                 "re:.*shared_expert_gate$"]
# Checkpoint names of a linearized expert's Linear layers, per transformers conversion pattern.
EXPERT_NAMES = {"mixtral": {"gate_proj": "w1", "down_proj": "w2", "up_proj": "w3"}}


def conversion_pattern(model_type: str) -> str:
    """The family whose weight-conversion mapping transformers applies (``minimax`` -> ``mixtral``)."""
    try:
        from transformers.conversion_mapping import _MODEL_TO_CONVERSION_PATTERN
    except ImportError:  # older transformers: no fused experts, nothing to convert
        return model_type
    return _MODEL_TO_CONVERSION_PATTERN.get(model_type, model_type)


def expert_save_names(model: Any) -> bool:
    """Make ``save_pretrained`` write linearized experts under the family's checkpoint names.

    Returns whether anything was renamed.  The renamings are set as the model's weight
    conversions, which transformers reverts on save (``revert_weight_conversion``).
    """
    names = EXPERT_NAMES.get(conversion_pattern(getattr(model.config, "model_type", "")))
    if not names or not any(f".experts.0.{linear}" in name for name, _ in model.named_modules()
                            for linear in names):
        return False
    from transformers.conversion_mapping import get_checkpoint_conversion_mapping
    from transformers.core_model_loading import WeightRenaming

    # Keep the family's plain renamings (Mixtral: block_sparse_moe <-> mlp); drop its fusing converters,
    # which have no fused tensor to act on.
    mapping = [m for m in get_checkpoint_conversion_mapping(model.config.model_type) or []
               if isinstance(m, WeightRenaming)]
    mapping += [WeightRenaming(source_patterns=rf"\.experts\.(\d+)\.{ckpt}\.",
                               target_patterns=rf".experts.\1.{linear}.") for linear, ckpt in names.items()]
    model._weight_conversions = mapping
    return True
