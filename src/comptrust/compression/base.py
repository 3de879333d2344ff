"""What a compression is: its validated config, the Compressor protocol, and the manifest.

A config is normalised to the fields that change the weights (RTN has no
calibration, pruning has no bits), so two requests that would produce the same
artifact hash to the same key and are compressed only once.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from comptrust.errors import ConfigError, DataError
from comptrust.types import stable_hash

if TYPE_CHECKING:
    import torch

    from comptrust.compression.calibration import Calibration

MANIFEST_NAME = "comptrust.json"
MANIFEST_VERSION = 1
QUANT_METHODS = ("rtn", "gptq", "awq")  # weight-only integers with --bits / --group-size (the paper's)
PRUNE_METHODS = ("magnitude", "sparsegpt", "wanda")
ACTIVATION_METHODS = ("fp8", "w8a8", "nvfp4")  # weights and activations, fixed formats (compression/formats.py)
FILE_METHODS = ("gguf",)  # writes a llama.cpp file, not a Hugging Face folder
METHODS = QUANT_METHODS + PRUNE_METHODS + ACTIVATION_METHODS + FILE_METHODS
CALIBRATED = ("gptq", "awq", "sparsegpt", "wanda", "w8a8", "nvfp4")
BITS = (3, 4, 8)
PATTERNS = ("unstructured", "1:2", "2:4", "4:8")
CALIB_SOURCES = ("builtin", "file", "c4", "wikitext")
AUTO_GROUP_SIZES = (128, 64, 32)  # powers of two that vLLM's kernels accept, largest first
# Never compressed: lm_head shares its matrix with the embeddings in tied models.  A regex,
# because a plain "lm_head" does not match inside llm-compressor's pruning modifiers.
IGNORE = ["re:.*lm_head"]


@dataclass(frozen=True)
class CalibConfig:
    """Where calibration text comes from and how it is cut into samples."""

    source: str = "builtin"
    file: str | None = None
    samples: int = 128
    seqlen: int = 512
    chat_template: bool = False


@dataclass(frozen=True)
class CompressionConfig:
    """Every parameter that changes a compressed model's weights.

    ``group_size`` is an int (input columns per quantization group), ``"channel"``
    (one scale per output row) or ``"auto"`` (largest of 128/64/32 dividing every
    layer's input width, resolved against the model before compression).
    """

    method: str
    bits: int | None = None
    group_size: int | str | None = None
    symmetric: bool | None = None
    act_order: bool | None = None
    damp: float | None = None
    sparsity: float | None = None
    pattern: str | None = None
    calib: CalibConfig | None = None
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    scheme: str | None = None  # compressed-tensors preset of an activation format (FP8_DYNAMIC, W8A8, NVFP4)
    smoothing: float | None = None  # w8a8: SmoothQuant migration strength
    gguf_type: str | None = None  # gguf: llama.cpp quantization type (Q4_K_M, Q8_0, ...)

    @property
    def kind(self) -> str:
        return "pruning" if self.method in PRUNE_METHODS else "quantization"

    @property
    def nm(self) -> tuple[int, int] | None:
        """(N, M) of an N:M pattern, or None for unstructured sparsity."""
        return nm_split(self.pattern) if self.pattern and self.pattern != "unstructured" else None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        return {k: v for k, v in data.items() if v is not None and v != {}}

    def key(self) -> str:
        return stable_hash(self.to_json())


def nm_split(pattern: str) -> tuple[int, int]:
    """'2:4' -> (2, 4).

    As in the Wanda paper, N:M means at most N nonzeros in every M consecutive
    weights along the input dimension.  Every pattern offered has N = M/2, so
    that is also exactly N zeros per block, llm-compressor's reading.
    """
    n, m = (int(x) for x in pattern.split(":"))
    return n, m


def make_config(method: str, **params: Any) -> CompressionConfig:
    """Validate user parameters for ``method`` and fill the defaults; one-line errors."""
    if method not in METHODS:
        raise ConfigError(f"unknown compression method {method!r}", f"choose from: {', '.join(METHODS)}")
    params = {k: v for k, v in params.items() if v is not None}
    if method in ACTIVATION_METHODS + FILE_METHODS:
        from comptrust.compression.formats import make_format_config

        return make_format_config(method, params)
    for name in ("smoothing", "gguf_type"):
        if name in params:
            raise ConfigError(f"--{_flag(name)} applies to {'w8a8' if name == 'smoothing' else 'gguf'} only, "
                              f"not to {method}", f"drop --{_flag(name)}")
    quant_only = ("bits", "group_size", "symmetric")
    prune_only = ("sparsity", "pattern")
    given = set(params)
    if method in QUANT_METHODS:
        wrong = sorted(given & set(prune_only))
        if wrong:
            raise ConfigError(f"--{wrong[0].replace('_', '-')} applies to pruning, not to {method}",
                              f"drop it, or use a pruning method ({', '.join(PRUNE_METHODS)})")
    else:
        wrong = sorted(given & set(quant_only + ("act_order",)))
        if wrong:
            raise ConfigError(f"--{wrong[0].replace('_', '-')} applies to quantization, not to {method}",
                              f"drop it, or use a quantization method ({', '.join(QUANT_METHODS)})")
    if "act_order" in given and method != "gptq":
        raise ConfigError(f"--act-order applies to gptq only, not to {method}", "drop --act-order")
    if "damp" in given and method not in ("gptq", "sparsegpt"):
        raise ConfigError(f"--damp applies to gptq and sparsegpt only, not to {method}", "drop --damp")
    seed = int(params.pop("seed", 0))
    calib = calib_config(method, params) if method in CALIBRATED else None
    if method not in CALIBRATED:
        stray = sorted(k for k in params if k.startswith("calib_"))
        if stray:
            raise ConfigError(f"{method} uses no calibration data, so --{stray[0].replace('_', '-')} has no effect",
                              f"drop it, or use a calibrated method ({', '.join(CALIBRATED)})")
        seed = 0  # nothing random happens: every seed gives the same artifact
    unknown = sorted(set(params) - set(quant_only + prune_only + ("act_order", "damp"))
                     - {k for k in params if k.startswith("calib_")})
    if unknown:
        raise ConfigError(f"unknown compression parameter {unknown[0]!r}",
                          "see 'comptrust compress --help' for the parameters")
    if method in QUANT_METHODS:
        bits = int(params.get("bits", 4))
        if bits not in BITS:
            raise ConfigError(f"{bits}-bit weights are not supported",
                              f"choose --bits from {', '.join(map(str, BITS))}")
        return CompressionConfig(
            method=method, bits=bits, group_size=parse_group_size(params.get("group_size", 128)),
            symmetric=bool(params.get("symmetric", True)),
            act_order=bool(params.get("act_order", False)) if method == "gptq" else None,
            damp=damp_fraction(params.get("damp", 0.01)) if method == "gptq" else None,
            calib=calib, seed=seed)
    sparsity = float(params.get("sparsity", 0.5))
    if not 0.0 < sparsity < 1.0:
        raise ConfigError(f"sparsity {sparsity} is outside (0, 1)", "pass a fraction such as --sparsity 0.5")
    pattern = str(params.get("pattern", "unstructured"))
    if pattern not in PATTERNS:
        raise ConfigError(f"unknown sparsity pattern {pattern!r}", f"choose from: {', '.join(PATTERNS)}")
    if pattern != "unstructured":
        n, m = nm_split(pattern)
        implied = (m - n) / m
        if not math.isclose(sparsity, implied):
            raise ConfigError(f"pattern {pattern} means {implied:.0%} sparsity, not {sparsity:g}",
                              f"pass --sparsity {implied:g} or --pattern unstructured")
    return CompressionConfig(method=method, sparsity=sparsity, pattern=pattern,
                             damp=damp_fraction(params.get("damp", 0.01)) if method == "sparsegpt" else None,
                             calib=calib, seed=seed)


def _flag(name: str) -> str:
    return "type" if name == "gguf_type" else name.replace("_", "-")


def damp_fraction(value: Any) -> float:
    damp = float(value)
    if not 0.0 < damp < 1.0:
        raise ConfigError(f"damping {damp} is outside (0, 1)", "pass a small fraction such as --damp 0.01")
    return damp


def parse_group_size(value: Any) -> int | str:
    """An int > 0, 'channel' (also -1 or 0) or 'auto'."""
    if isinstance(value, str) and value.lower() in ("auto", "channel"):
        return value.lower()
    try:
        size = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"group size {value!r} is not a number",
                          "pass an integer such as 128, 'channel' or 'auto'") from None
    if size in (-1, 0):
        return "channel"
    if size < 0:
        raise ConfigError(f"group size {size} is negative", "pass 128, 64, 'channel' or 'auto'")
    return size


def calib_config(method: str, params: dict[str, Any]) -> CalibConfig:
    source = str(params.get("calib_source", "builtin"))
    file = params.get("calib_file")
    if file is not None and "calib_source" not in params:
        source = "file"
    if source not in CALIB_SOURCES:
        raise ConfigError(f"unknown calibration source {source!r}", f"choose from: {', '.join(CALIB_SOURCES)}")
    if source == "file":
        if not file:
            raise ConfigError("--calib-source file needs --calib-file PATH", "pass a UTF-8 text or .jsonl file")
        path = Path(file).expanduser()
        if not path.is_file():
            raise DataError(f"calibration file {path} does not exist", "pass an existing UTF-8 text file")
        file = str(path.resolve())
    elif file is not None:
        raise ConfigError(f"--calib-file is only used with --calib-source file, not {source}",
                          "drop --calib-file or pass --calib-source file")
    samples = int(params.get("calib_samples", 128))
    seqlen = int(params.get("calib_seqlen", 512))
    if samples < 1 or seqlen < 8:
        raise ConfigError(f"calibration needs >= 1 sample of >= 8 tokens (got {samples} x {seqlen})",
                          "pass e.g. --calib-samples 128 --calib-seqlen 512")
    return CalibConfig(source=source, file=file, samples=samples, seqlen=seqlen,
                       chat_template=bool(params.get("calib_chat_template", False)))


class Compressor(Protocol):
    """One compression method: changes a loaded model's weights in place.

    ``saves_compressed`` tells the pipeline to write compressed-tensors (packed
    integer) weights; pruned models are saved dense so every loader reads them.
    """

    name: str
    kind: str
    needs_calibration: bool
    saves_compressed: bool

    def compress(self, model: torch.nn.Module, config: CompressionConfig,
                 calibration: Calibration | None) -> dict[str, Any]:
        """Compress ``model``; return method-specific facts for the manifest."""
        ...


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
    if method in CALIBRATED:
        wanted.append("calibration")
    if method in PRUNE_METHODS:
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
