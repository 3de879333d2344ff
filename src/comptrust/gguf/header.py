"""What a GGUF file is: its llama.cpp type (Q4_K_M, ...), tensor types and measured bits per weight.

Read with gguf-py's reader (header and tensor table only; the weights are
memory-mapped, never loaded), so it works for any user-supplied GGUF and is
how reports label one by its type.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from comptrust.errors import ModelError

# Tensors llama.cpp names for the decoder's Linear layers (what the HF methods call "compressed layers").
LINEAR_SUFFIXES = ("attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight", "attn_qkv.weight",
                   "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight")


def _reader(path: Path) -> Any:
    from gguf import GGUFReader

    try:
        return GGUFReader(str(path))
    except Exception as exc:  # truncated or not a GGUF at all: the reader raises assorted errors
        raise ModelError(f"{path} is not a readable GGUF file ({type(exc).__name__}: {str(exc)[:120]})",
                         "pass a complete .gguf file written by llama.cpp or 'comptrust compress --method gguf'"
                         ) from None


def _field(reader: Any, key: str) -> Any:
    field = reader.fields.get(key)
    if field is None or not field.data:
        return None
    value = field.parts[field.data[0]]
    if getattr(value, "dtype", None) is not None and value.dtype.kind == "u" and value.dtype.itemsize == 1:
        return bytes(value).decode("utf-8", errors="replace")
    return value.tolist()[0] if hasattr(value, "tolist") else value


def file_type_name(value: int | None) -> str | None:
    """llama.cpp's ``general.file_type`` number -> ``Q4_K_M``, ``F16``, ``BF16``, ``F32``."""
    if value is None:
        return None
    from gguf import LlamaFileType

    try:
        name = LlamaFileType(int(value)).name
    except ValueError:
        return f"type-{value}"
    return "F32" if name == "ALL_F32" else name.removeprefix("MOSTLY_")


def describe_gguf(path: str | Path) -> dict[str, Any]:
    """Type, architecture, tensor types and measured bits per weight of a GGUF file."""
    path = Path(path)
    reader = _reader(path)
    tensor_types: Counter[str] = Counter()
    linear_bytes = linear_weights = total_bytes = total_params = 0
    for tensor in reader.tensors:
        tensor_types[tensor.tensor_type.name] += 1
        total_bytes += int(tensor.n_bytes)
        total_params += int(tensor.n_elements)
        if tensor.name.startswith("blk.") and tensor.name.endswith(LINEAR_SUFFIXES):
            linear_bytes += int(tensor.n_bytes)
            linear_weights += int(tensor.n_elements)
    return {
        "file": path.name, "file_size_bytes": path.stat().st_size,
        "gguf_type": file_type_name(_field(reader, "general.file_type")),
        "architecture": _field(reader, "general.architecture"), "name": _field(reader, "general.name"),
        "metadata": {key: _field(reader, key) for key in reader.fields if key.startswith("general.base_model.")},
        "tensor_types": dict(sorted(tensor_types.items())),
        "storage": {
            "effective_bits_per_weight": round(8 * linear_bytes / linear_weights, 4) if linear_weights else None,
            "bits_per_parameter": round(8 * total_bytes / total_params, 4) if total_params else None,
            "compressed_layers": sum(1 for t in reader.tensors if t.name.startswith("blk.")
                                     and t.name.endswith(LINEAR_SUFFIXES)),
            "compressed_weights": linear_weights,
        },
    }


def gguf_in(folder: Path) -> Path | None:
    """The single .gguf file of a comptrust GGUF artifact folder (None when there is none)."""
    files = sorted(folder.glob("*.gguf"))
    return files[0] if len(files) == 1 else None


def gguf_chat_template(gguf: Path) -> str | None:
    """The chat template in a GGUF's metadata (``tokenizer.chat_template``), or None."""
    from gguf import GGUFReader

    field = GGUFReader(str(gguf)).fields.get("tokenizer.chat_template")
    if field is None or not field.data:
        return None
    return bytes(field.parts[field.data[0]]).decode("utf-8")
