"""What a GGUF says of itself, as a compression record: comptrust's manifest beside its own GGUF files,
else the header of a downloaded one (type, bits, storage, base model)."""

from __future__ import annotations

import json
from pathlib import Path

from comptrust.compression.base import MANIFEST_NAME
from comptrust.compression.checkpoint import RECORD_FORMAT, THIRD_PARTY, gguf_base_model, identify_checkpoint
from comptrust.compression.formats import gguf_weight_bits
from comptrust.gguf.header import describe_gguf
from comptrust.gguf.to_hf import gguf_artifact_file


def gguf_manifest(gguf: Path) -> dict | None:
    """The compression manifest beside a comptrust GGUF; for any other GGUF, what its header says."""
    beside = gguf.parent / MANIFEST_NAME
    if beside.is_file() and gguf_artifact_file(gguf.parent) == gguf:
        return json.loads(beside.read_text(encoding="utf-8"))
    info = describe_gguf(gguf)
    if info["gguf_type"] in (None, "F32", "F16", "BF16"):
        return None  # an unquantized GGUF is the dense model
    record = {"format": RECORD_FORMAT, "produced_by": THIRD_PARTY, "read_from": "GGUF header",
              "method": "gguf", "kind": "quantization", "params": {"gguf_type": info["gguf_type"],
              "bits": _gguf_bits(info["gguf_type"])}, "storage": info["storage"],
              "weights_size_bytes": info["file_size_bytes"], "source": "user-supplied GGUF (header)",
              "base_model": gguf_base_model(info["metadata"]),
              "gguf": {k: info[k] for k in ("file", "architecture", "name", "tensor_types")}}
    identify_checkpoint(record, gguf)
    return record


def _gguf_bits(gguf_type: str) -> int | None:
    return gguf_weight_bits(gguf_type) if not gguf_type.startswith("type-") else None
