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

A 13B checkpoint is 26 GB of float16, more than a laptop's RAM: the conversion streams, one input
shard read at a time, one layer dequantized at a time, one bounded output shard held at a time.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comptrust.errors import ModelError

AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)  # nibble i of a packed word holds output column AWQ_ORDER[i]
PACKED_SUFFIXES = (".qweight", ".qzeros", ".scales", ".g_idx")
MAX_SHARD_BYTES = 2_000_000_000  # an output shard ("2GB" as transformers counts): the converter's RAM, about
BLOCK_ELEMENTS = 1 << 23  # weights of a Linear dequantized at once (its int64 temporaries: ~8 bytes each, a few)


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


@dataclass(frozen=True)
class Header:
    """One input tensor as its shard's header describes it (nothing read but the header)."""

    shard: str
    shape: tuple[int, ...]
    dtype: str  # safetensors' name: F16, BF16, F32, I32, ...


@dataclass(frozen=True)
class Item:
    """One output tensor: a dequantized Linear (``layer`` its prefix) or an input tensor cast through."""

    name: str
    layer: str | None
    nbytes: int  # in the output file


def _damaged(path: Path, exc: Exception) -> ModelError:
    return ModelError(f"{path} is not a readable safetensors file ({str(exc).splitlines()[0] if str(exc) else exc!r})",
                      "download the checkpoint again")


def read_headers(folder: Path) -> dict[str, Header]:
    """Every input tensor's shard, shape and dtype: the shards ``model.safetensors.index.json`` names
    (each tensor where its weight_map says), else every ``*.safetensors`` of the folder."""
    import json

    from safetensors import SafetensorError, safe_open

    index = folder / "model.safetensors.index.json"
    weight_map: dict[str, str] | None = None
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map")
        except (ValueError, AttributeError, UnicodeDecodeError):
            weight_map = None
        if not isinstance(weight_map, dict):
            raise ModelError(f"{index} is not a safetensors index (no weight_map)", "download the checkpoint again")
        shards = sorted({str(s) for s in weight_map.values()})
    else:
        shards = sorted(p.name for p in folder.glob("*.safetensors"))
    headers: dict[str, Header] = {}
    for shard in shards:
        path = folder / shard
        if not path.is_file():
            raise ModelError(f"{index} names shard {shard}, which is missing", "download the checkpoint again")
        try:
            with safe_open(str(path), framework="pt") as handle:
                for name in handle.keys():
                    if weight_map is not None and weight_map.get(name) != shard:
                        continue  # the index says where each tensor is read from
                    if name in headers:
                        raise ModelError(f"tensor {name} is in both {headers[name].shard} and {shard} of {folder}",
                                         "remove the stray .safetensors file (or give the folder its "
                                         "model.safetensors.index.json)")
                    view = handle.get_slice(name)
                    headers[name] = Header(shard, tuple(view.get_shape()), view.get_dtype())
        except SafetensorError as exc:
            raise _damaged(path, exc) from None
    if weight_map is not None and (absent := sorted(set(weight_map) - set(headers))):
        raise ModelError(f"{index} maps {absent[0]} to {weight_map[absent[0]]}, which does not hold it",
                         "download the checkpoint again")
    return headers


def layer_dims(prefix: str, headers: dict[str, Header], method: str, bits: int) -> tuple[int, int]:
    """(out, in) of one packed Linear, checked against its qweight/qzeros/scales/g_idx shapes."""
    try:
        qweight, qzeros, scales = (headers[f"{prefix}.{k}"].shape for k in ("qweight", "qzeros", "scales"))
    except KeyError as exc:
        raise ModelError(f"packed layer {prefix} lacks {exc.args[0]}", "download the checkpoint again") from None
    if method == "gptq":
        out_features, in_features = scales[-1], qweight[0] * 32 // bits
        fits = qweight[-1] == out_features and qzeros[-1] * 32 // bits >= out_features
        g_idx = headers.get(f"{prefix}.g_idx")
        fits = fits and (g_idx is None or g_idx.shape == (in_features,))
    else:
        out_features, in_features = scales[-1], qweight[0]
        fits = qweight[-1] * 8 >= out_features and qzeros[-1] * 8 >= out_features
    if not (fits and len(qweight) == len(qzeros) == len(scales) == 2 and qzeros[0] == scales[0]):
        raise ModelError(f"packed layer {prefix}'s tensors disagree in shape (qweight {list(qweight)}, "
                         f"qzeros {list(qzeros)}, scales {list(scales)}) for {bits}-bit {method}",
                         "check the checkpoint's quantization_config (bits) or download it again")
    return out_features, in_features


# bytes per element of safetensors' dtypes, and which of them are floats (cast to float16 on the way)
DTYPE_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "I32": 4,
               "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1}
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2")


def natural_key(name: str) -> tuple:
    """``layers.2`` before ``layers.10``: each output shard then holds whole consecutive layers."""
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name))


def plan_items(headers: dict[str, Header], method: str, bits: int) -> list[Item]:
    """Every output tensor with its size, in input-shard order, so each input shard is read once in turn."""
    layers = packed_layers(list(headers))
    packed = {f"{p}{s}" for p in layers for s in PACKED_SUFFIXES}
    items: list[tuple[tuple, Item]] = []
    for prefix in layers:
        out_features, in_features = layer_dims(prefix, headers, method, bits)
        key = (headers[f"{prefix}.qweight"].shard, natural_key(prefix))
        items.append((key, Item(f"{prefix}.weight", prefix, 2 * out_features * in_features)))
    for name, header in headers.items():
        if name in packed:
            continue
        if header.dtype not in DTYPE_SIZES:
            raise ModelError(f"tensor {name} has dtype {header.dtype}, which comptrust's dequantizer does not copy",
                             "install gptqmodel (pip install gptqmodel) to load the checkpoint with its own kernels")
        size = 2 if header.dtype in FLOAT_DTYPES else DTYPE_SIZES[header.dtype]
        items.append(((header.shard, natural_key(name)), Item(name, None, size * math.prod(header.shape))))
    return [item for _, item in sorted(items, key=lambda pair: pair[0])]


def split_shards(items: list[Item], max_bytes: int) -> list[list[Item]]:
    """Output shards as transformers' save_pretrained cuts them (huggingface_hub's rule): in order, a new
    shard when the next tensor would pass ``max_bytes``; a tensor larger than that alone in its own."""
    shards: list[list[Item]] = []
    current: list[Item] = []
    size = 0
    for item in items:
        if item.nbytes > max_bytes:
            shards.append([item])
            continue
        if current and size + item.nbytes > max_bytes:
            shards.append(current)
            current, size = [], 0
        current.append(item)
        size += item.nbytes
    return shards + [current] if current else shards


class ShardReader:
    """Tensors read from one input shard at a time (``safe_open``): only the tensors asked for are copied
    into memory, and the previous shard's mapping is dropped when a tensor of another is asked for."""

    def __init__(self, folder: Path, headers: dict[str, Header]) -> None:
        self.folder, self.headers = folder, headers
        self.shard: str | None = None
        self.handle: Any = None

    def get(self, name: str) -> Any:
        from safetensors import SafetensorError, safe_open

        shard = self.headers[name].shard
        path = self.folder / shard
        try:
            if shard != self.shard:
                self.handle, self.shard = None, None  # unmaps the previous shard
                self.handle, self.shard = safe_open(str(path), framework="pt"), shard
            return self.handle.get_tensor(name)
        except SafetensorError as exc:
            raise _damaged(path, exc) from None

    def close(self) -> None:
        self.handle, self.shard = None, None


def layer_weight(read: ShardReader, prefix: str, method: str, bits: int, v1: bool, dtype: Any) -> Any:
    """One packed Linear's [out, in] weight in ``dtype``, dequantized a block of output columns at a time.

    Every value depends only on its own column's integers, zero and scale, so the blocks give exactly
    the whole-matrix result, while the int64 temporaries stay within ``BLOCK_ELEMENTS`` weights.
    """
    import torch

    qweight, qzeros, scales = (read.get(f"{prefix}.{k}") for k in ("qweight", "qzeros", "scales"))
    g_idx = read.get(f"{prefix}.g_idx") if f"{prefix}.g_idx" in read.headers else None
    out_features = scales.shape[1]
    in_features = qweight.shape[0] * 32 // bits if method == "gptq" else qweight.shape[0]
    width = max(32, BLOCK_ELEMENTS // max(1, in_features) // 32 * 32)  # 32 columns fill whole int32 words
    weight = torch.empty(out_features, in_features, dtype=dtype)
    for c0 in range(0, out_features, width):
        c1 = min(c0 + width, out_features)
        if method == "gptq":
            words = slice(c0 * bits // 32, -(-c1 * bits // 32))
            block = gptq_weight(qweight[:, c0:c1], qzeros[:, words], scales[:, c0:c1], g_idx, bits, v1)
        else:
            words = slice(c0 // 8, -(-c1 // 8))
            block = awq_weight(qweight[:, words], qzeros[:, words], scales[:, c0:c1], bits)
        weight[c0:c1] = block.to(dtype)
    return weight


def dequantize_checkpoint(folder: Path, target: Path, qc: dict[str, Any], max_shard_bytes: int | None = None) -> int:
    """Write ``target`` (config without quantization_config, float16 safetensors, tokenizer files).

    Layer by layer: the memory it needs is about one output shard (``max_shard_bytes``, default
    ``MAX_SHARD_BYTES``) plus one layer, not the model.  Shards are named and indexed as transformers'
    ``save_pretrained`` names them (one shard: a plain ``model.safetensors``).  Returns the number of
    layers dequantized.  ``target`` is a staging folder the caller publishes whole.
    """
    import json
    import shutil

    import torch
    from safetensors.torch import save_file

    method = str(qc.get("quant_method")).lower()
    bits = int(qc.get("bits") or qc.get("w_bit") or 4)
    if method == "awq" and str(qc.get("version") or "gemm").lower() != "gemm":
        raise ModelError(f"AWQ version {qc.get('version')!r} packing is not supported by comptrust's dequantizer",
                         "install gptqmodel (pip install gptqmodel) to load it with its own kernels")
    v1 = method == "gptq" and str(qc.get("checkpoint_format") or "gptq") == "gptq"
    headers = read_headers(folder)
    layers = packed_layers(list(headers))
    if not layers:
        raise ModelError(f"{folder} says it is {qc.get('quant_method')}-quantized but has no packed qweight tensors",
                         "download the checkpoint again")
    shards = split_shards(plan_items(headers, method, bits), max_shard_bytes or MAX_SHARD_BYTES)
    names = ["model.safetensors"] if len(shards) == 1 else \
        [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    read = ShardReader(folder, headers)
    weight_map: dict[str, str] = {}
    for name, shard in zip(names, shards, strict=True):
        state: dict[str, Any] = {}
        for item in shard:
            if item.layer is not None:
                state[item.name] = layer_weight(read, item.layer, method, bits, v1, torch.float16)
            else:
                tensor = read.get(item.name)
                state[item.name] = tensor.to(torch.float16) if tensor.is_floating_point() else tensor
            weight_map[item.name] = name
        save_file(state, str(target / name), metadata={"format": "pt"})
        del state  # the next shard starts empty
    read.close()
    if len(shards) > 1:
        index = {"metadata": {"total_size": sum(i.nbytes for s in shards for i in s)},
                 "weight_map": dict(sorted(weight_map.items()))}
        (target / "model.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n",
                                                            encoding="utf-8")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config.pop("quantization_config", None)
    config["torch_dtype"] = config["dtype"] = "float16"
    (target / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    for path in folder.iterdir():
        if (path.is_file() and path.suffix not in (".safetensors", ".bin", ".pt", ".pth")
                and path.name != "config.json" and not path.name.endswith(".index.json")):
            shutil.copy2(path, target / path.name)
    return len(layers)
