"""Dequantize a GPTQ- or AWQ-packed checkpoint into a plain float16 Hugging Face folder.

transformers loads these formats only through ``gptqmodel`` (a compiled package whose kernels
target GPUs).  Without it, comptrust evaluates the checkpoint's own quantized weights: each packed
integer times its group's scale, minus its zero point, stored in float16 — what the GPU kernels
dequantize to before their matmuls — so the numbers are the checkpoint's rounding, not the
kernels' accumulation order.  The run's compression record says which of the two ran.

Packing (AutoGPTQ / GPTQModel ``gptq`` and ``gptq_v2``; AutoAWQ ``gemm``):

- GPTQ: ``qweight`` int32 [in / (32 / bits), out], values packed along the input dimension as one
  little-endian bit stream (so 3-bit values cross word boundaries); ``qzeros`` int32
  [groups, out / (32 / bits)] packed along the output dimension; ``scales`` [groups, out];
  ``g_idx`` [in] maps each input row to its group (act-order).  ``gptq`` (v1) stores zero - 1.
- AWQ gemm: ``qweight`` int32 [in, out / 8] and ``qzeros`` int32 [groups, out / 8], packed along
  the output dimension in the interleaved order 0, 2, 4, 6, 1, 3, 5, 7; ``scales`` [groups, out].
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from comptrust.errors import ModelError

AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)  # nibble i of a packed word holds output column AWQ_ORDER[i]
PACKED_SUFFIXES = (".qweight", ".qzeros", ".scales", ".g_idx")


def unpack_stream(packed: Any, bits: int, count: int, dim: int) -> Any:
    """Unpack ``count`` ``bits``-wide values per column (dim 0) or row (dim 1) from int32 words.

    The words along ``dim`` form one little-endian bit stream: value k occupies bits
    [k * bits, (k + 1) * bits) of it.
    """
    import torch

    words = packed.to(torch.int64) & 0xFFFFFFFF
    if dim == 1:
        words = words.t()
    positions = torch.arange(count, dtype=torch.int64) * bits
    word, shift = positions // 32, positions % 32
    low = words[word] >> shift.unsqueeze(1)
    spill = (shift + bits > 32) & (word + 1 < words.shape[0])
    if bool(spill.any()):
        nxt = words[torch.clamp(word + 1, max=words.shape[0] - 1)] << (32 - shift).unsqueeze(1)
        low = torch.where(spill.unsqueeze(1), low | nxt, low)
    values = low & ((1 << bits) - 1)
    return values.t() if dim == 1 else values


def gptq_weight(qweight: Any, qzeros: Any, scales: Any, g_idx: Any | None, bits: int, v1: bool) -> Any:
    """The [out, in] float weight of one GPTQ-packed Linear."""
    import torch

    out_features = scales.shape[1]
    in_features = qweight.shape[0] * 32 // bits
    q = unpack_stream(qweight, bits, in_features, dim=0)  # [in, out]
    z = unpack_stream(qzeros, bits, out_features, dim=1)  # [groups, out]
    if v1:
        z = (z + 1) & ((1 << bits) - 1)
    if g_idx is None:
        group = in_features // scales.shape[0]
        g_idx = torch.arange(in_features) // group
    g = g_idx.to(torch.int64)
    weight = (q - z[g]).to(torch.float32) * scales[g].to(torch.float32)
    return weight.t().contiguous()


def awq_weight(qweight: Any, qzeros: Any, scales: Any, bits: int) -> Any:
    """The [out, in] float weight of one AWQ gemm-packed Linear."""
    import torch

    if bits != 4:
        raise ModelError(f"AWQ gemm packing is 4-bit, and this checkpoint says {bits}-bit",
                         "check the checkpoint's quantization_config")
    in_features, out_features = qweight.shape[0], scales.shape[1]
    reverse = torch.tensor([AWQ_ORDER.index(i) for i in range(8)])

    def columns(packed: Any) -> Any:
        raw = unpack_stream(packed, 4, packed.shape[1] * 8, dim=1)  # stream order within each word
        blocks = raw.view(raw.shape[0], -1, 8)
        return blocks[:, :, reverse].reshape(raw.shape[0], -1)  # column c = nibble AWQ_ORDER.index(c % 8)

    q, z = columns(qweight), columns(qzeros)
    group = in_features // scales.shape[0]
    g = torch.arange(in_features) // group
    weight = (q - z[g]).to(torch.float32) * scales[g].to(torch.float32)
    return weight[:, :out_features].t().contiguous()


def packed_layers(names: list[str]) -> list[str]:
    """Prefixes of every packed Linear (``model.layers.0.self_attn.q_proj``) among tensor names."""
    return sorted(n.removesuffix(".qweight") for n in names if n.endswith(".qweight"))


def dequantize_state(tensors: dict[str, Any], qc: dict[str, Any], dtype: Any) -> dict[str, Any]:
    """Replace every packed Linear's tensors by its dequantized ``weight`` (others kept, cast to dtype)."""
    method = str(qc.get("quant_method")).lower()
    bits = int(qc.get("bits") or qc.get("w_bit") or 4)
    if method == "awq" and str(qc.get("version") or "gemm").lower() != "gemm":
        raise ModelError(f"AWQ version {qc.get('version')!r} packing is not supported by comptrust's dequantizer",
                         "install gptqmodel (pip install gptqmodel) to load it with its own kernels")
    v1 = method == "gptq" and str(qc.get("checkpoint_format") or "gptq") == "gptq"
    out: dict[str, Any] = {}
    layers = packed_layers(list(tensors))
    for prefix in layers:
        try:
            qweight, qzeros, scales = (tensors[f"{prefix}.{k}"] for k in ("qweight", "qzeros", "scales"))
        except KeyError as exc:
            raise ModelError(f"packed layer {prefix} lacks {exc.args[0]}", "download the checkpoint again") from None
        if method == "gptq":
            weight = gptq_weight(qweight, qzeros, scales, tensors.get(f"{prefix}.g_idx"), bits, v1)
        else:
            weight = awq_weight(qweight, qzeros, scales, bits)
        out[f"{prefix}.weight"] = weight.to(dtype)
    packed = {f"{p}{s}" for p in layers for s in PACKED_SUFFIXES}
    for name, tensor in tensors.items():
        if name not in packed:
            out[name] = tensor.to(dtype) if tensor.is_floating_point() else tensor
    return out


def dequantize_checkpoint(folder: Path, target: Path, qc: dict[str, Any]) -> int:
    """Write ``target`` (config without quantization_config, float16 safetensors, tokenizer files).

    Returns the number of layers dequantized.  ``target`` is a staging folder the caller publishes.
    """
    import json
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    tensors: dict[str, Any] = {}
    for path in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(str(path)))
    if not packed_layers(list(tensors)):
        raise ModelError(f"{folder} says it is {qc.get('quant_method')}-quantized but has no packed qweight tensors",
                         "download the checkpoint again")
    state = dequantize_state(tensors, qc, torch.float16)
    save_file(state, str(target / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config.pop("quantization_config", None)
    config["torch_dtype"] = config["dtype"] = "float16"
    (target / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    for path in folder.iterdir():
        if (path.is_file() and path.suffix not in (".safetensors", ".bin", ".pt", ".pth")
                and path.name != "config.json" and not path.name.endswith(".index.json")):
            shutil.copy2(path, target / path.name)
    return len(packed_layers(list(tensors)))
