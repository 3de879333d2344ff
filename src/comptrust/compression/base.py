"""What a compression method is (the Compressor protocol) and what it leaves behind (the manifest).

The validated config a method is given lives in ``config.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from comptrust.compression.methods import methods
from comptrust.errors import DataError

if TYPE_CHECKING:
    import torch

    from comptrust.compression.calibration import Calibration
    from comptrust.compression.config import CompressionConfig
    from comptrust.compression.formats import Format

MANIFEST_NAME = "comptrust.json"
MANIFEST_VERSION = 1
# Never compressed: lm_head shares its matrix with the embeddings in tied models.  A regex,
# because a plain "lm_head" does not match inside llm-compressor's pruning modifiers.
IGNORE = ["re:.*lm_head"]


class Compressor:
    """One compression method: changes a loaded model's weights in place.

    A subclass is the whole method: ``compression/methods.py`` reads every list of
    methods from these attributes and ``registry.COMPRESSORS``.  ``family`` is one of
    ``methods.FAMILIES``; ``label`` is how reports name it; ``options`` are the
    method-specific parameters it accepts beyond its family's (``act_order``,
    ``damp``, ``smoothing``, ``gguf_type``); ``format`` describes a ``format``-family
    method's fixed format.  ``saves_compressed`` tells the pipeline to write
    compressed-tensors (packed integer) weights; pruned models are saved dense so
    every loader reads them.
    """

    name: ClassVar[str]
    label: ClassVar[str]
    family: ClassVar[str]
    needs_calibration: ClassVar[bool]
    saves_compressed: ClassVar[bool]
    options: ClassVar[frozenset[str]] = frozenset()
    format: ClassVar[Format | None] = None
    uses_llmcompressor: ClassVar[bool] = True  # False: comptrust's own code (or llama.cpp) compresses

    def compress(self, model: torch.nn.Module, config: CompressionConfig,
                 calibration: Calibration | None) -> dict[str, Any]:
        """Compress ``model``; return method-specific facts for the manifest."""
        raise NotImplementedError(f"{self.name} writes a file: the pipeline calls its write()")


def write_manifest(out_dir: Path, manifest: dict[str, Any]) -> Path:
    """Write ``comptrust.json`` atomically (temp file + rename)."""
    path = out_dir / MANIFEST_NAME
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """A folder's ``comptrust.json`` as a dict, complete or not; DataError when absent or not a JSON object."""
    path = Path(directory).expanduser() / MANIFEST_NAME
    if not path.is_file():
        raise DataError(f"{path.parent} is not a comptrust artifact (no {MANIFEST_NAME})",
                        "pass a folder written by 'comptrust compress'")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text", "delete the folder and compress again") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno} is not valid JSON", "delete the folder and compress again") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} is not a JSON object", "delete the folder and compress again")
    return data


def load_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest of a compressed artifact; DataError when the folder is not one."""
    data = read_manifest(directory)
    if "method" not in data:
        raise DataError(f"{Path(directory).expanduser() / MANIFEST_NAME} has no 'method' field",
                        "delete the folder and compress again")
    return data


# Every field 'comptrust compress' writes (dotted: nested), so 'inspect' can name what an incomplete one lacks.
MANIFEST_FIELDS = ("format", "manifest_version", "key", "method", "kind", "config", "params", "seed",
                   "base_model.name", "base_model.architecture", "base_model.weights_sha256",
                   "base_model.size_bytes", "storage.effective_bits_per_weight", "storage.compressed_layers",
                   "storage.bits_per_parameter", "size_bytes", "weights_size_bytes", "compression_ratio", "dtype",
                   "device", "wall_time_s", "peak_memory", "library_versions", "created_utc")


def manifest_value(manifest: dict[str, Any], dotted: str) -> Any:
    """``manifest["a"]["b"]`` for ``"a.b"``; None where any level is absent."""
    value: Any = manifest
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def missing_manifest_fields(manifest: dict[str, Any]) -> list[str]:
    """The fields of a complete manifest that this one lacks (or holds as null)."""
    wanted = list(MANIFEST_FIELDS)
    method = manifest.get("method")
    if method in methods(calibrated=True):
        wanted.append("calibration")
    if method in methods("pruning"):
        wanted.append("sparsity")
    return [f for f in wanted if manifest_value(manifest, f) is None]


def file_records(folder: Path) -> dict[str, dict[str, Any]]:
    """Size and SHA-256 of every file of an artifact but its manifest, for ``files`` in the manifest."""
    records: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST_NAME):
        records[path.relative_to(folder).as_posix()] = {"bytes": path.stat().st_size, "sha256": _sha256(path)}
    return records


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def artifact_files_problem(folder: Path, manifest: dict[str, Any], hashes: bool = False) -> str | None:
    """What is wrong with an artifact's files against its manifest's ``files`` record, or None.

    Sizes are always compared (cheap: catches a cut copy or a half-deleted folder);
    ``hashes`` also re-reads every byte.  Manifests written before the record existed pass.
    """
    records = manifest.get("files")
    if not isinstance(records, dict):
        return None
    for name, record in sorted(records.items()):
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        expected = record.get("bytes") if isinstance(record, dict) else None
        size = path.stat().st_size
        if size != expected:
            return f"{name} has {size:,} bytes, not the {expected!r} recorded when it was written"
        if hashes and _sha256(path) != record.get("sha256"):
            return f"{name} differs from the SHA-256 recorded when it was written (changed or damaged on disk)"
    return None
