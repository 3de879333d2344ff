"""Keep activation quantization in the forward pass of a loaded compressed-tensors model.

transformers loads a compressed-tensors artifact with compressed-tensors'
quantized forward on every quantized Linear: the layer's input is rounded to
the scheme's activation format (FP8 / INT8 per token, FP4 per group of 16) on
every call, which is what vLLM's kernels compute.  Weights are decompressed
lazily on the first forward pass; some formats (NVFP4) decompress to bfloat16
whatever the compute dtype, which then fails in a float32 matmul.  So we
decompress right after loading and give the weights the compute dtype, leaving
the quantization scales and the activation quantization untouched.
"""

from __future__ import annotations

from typing import Any


def quantized_layers(model: Any) -> list[tuple[str, Any]]:
    """(name, module) of every layer carrying a compressed-tensors quantization scheme."""
    return [(name, m) for name, m in model.named_modules() if getattr(m, "quantization_scheme", None) is not None]


def describe_activation_quantization(model: Any) -> dict[str, Any] | None:
    """What the forward pass does to activations (None when no layer quantizes its input)."""
    layers = [(n, m) for n, m in quantized_layers(model) if m.quantization_scheme.input_activations is not None]
    if not layers:
        return None
    args = layers[0][1].quantization_scheme.input_activations
    return {"layers": len(layers), "type": str(args.type), "num_bits": args.num_bits, "strategy": str(args.strategy),
            "dynamic": str(args.dynamic), "group_size": args.group_size,
            "enabled": all(getattr(m, "quantization_enabled", True) for _, m in layers)}


def prepare_quantized_forward(model: Any, dtype: Any) -> dict[str, Any] | None:
    """Decompress a compressed-tensors model now and cast its weights to ``dtype``; describe activations.

    A model without compressed-tensors quantization is returned untouched (None).
    """
    quantizer = getattr(model, "hf_quantizer", None)
    compressor = getattr(quantizer, "compressor", None)
    if compressor is None or not quantized_layers(model):
        return None
    if hasattr(model, "ct_decompress_hook"):
        compressor.decompress_model(model)  # removes the lazy first-forward hook
    for _name, module in quantized_layers(model):
        weight = getattr(module, "weight", None)
        if weight is not None and weight.dtype != dtype and weight.dtype.is_floating_point:
            weight.data = weight.data.to(dtype)
    return describe_activation_quantization(model)
