"""Measure what a compression did: which layers, sparsity, N:M validity, bits, size.

The manifest reports *measured* numbers (zeros counted in the weights, bytes
read from the saved safetensors headers), never the requested ones, so a
library that silently skips a layer shows up in ``comptrust inspect``.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import re
import resource
import sys
from pathlib import Path
from typing import Any

import torch

from comptrust.compression.base import IGNORE
from comptrust.compression.config import AUTO_GROUP_SIZES
from comptrust.compression.moe import ROUTER_IGNORE
from comptrust.errors import ConfigError

_IGNORE_RE = [re.compile(p[3:]) for p in IGNORE + ROUTER_IGNORE if p.startswith("re:")]
LIBRARIES = ("comptrust", "torch", "transformers", "llmcompressor", "compressed-tensors", "safetensors", "gguf",
             "llama-cpp-python")


def target_linears(model: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    """Every Linear layer that compression touches (all but lm_head), by module name."""
    return {name: module for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and not any(r.fullmatch(name) for r in _IGNORE_RE)}


def dense_modules(model: torch.nn.Module) -> dict[str, Any]:
    """The ignore patterns and the modules they kept dense (lm_head, MoE routers), for the manifest.

    Routers are counted whether or not they are ``Linear`` (transformers 5's ``TopKRouter`` is not,
    and so is never a compression target anyway).
    """
    kept: dict[str, list[str]] = {}
    for pattern in IGNORE + ROUTER_IGNORE:
        regex = re.compile(pattern[3:])
        names = [name for name, module in model.named_modules() if name and regex.fullmatch(name)
                 and getattr(module, "weight", None) is not None]
        if names:
            kept[pattern] = names
    return {"patterns": list(IGNORE + ROUTER_IGNORE), "modules": kept,
            "count": sum(len(v) for v in kept.values())}


def resolve_group_size(model: torch.nn.Module, requested: int | str) -> int | str:
    """Check that ``requested`` divides every layer's input width; resolve 'auto'.

    compressed-tensors stores whole groups only, so a width that a group size does
    not divide cannot be saved.  We fail early, naming the layers, rather than
    silently changing the user's group size; 'auto' picks the largest of 128/64/32
    that fits every layer, else one scale per output channel.
    """
    if requested == "channel":
        return "channel"
    widths = {name: module.in_features for name, module in target_linears(model).items()}
    if requested == "auto":
        for size in AUTO_GROUP_SIZES:
            if all(w % size == 0 for w in widths.values()):
                return size
        return "channel"
    assert isinstance(requested, int)
    bad = indivisible_layers(model, requested)
    if bad:
        raise ConfigError(f"group size {requested} does not divide the input width of {bad}",
                          "pass --group-size auto (largest of 128/64/32 that fits), a divisor "
                          "of every width, or --group-size channel")
    return requested


def indivisible_layers(model: torch.nn.Module, group: int) -> str | None:
    """``"N layer(s): name (width), ..."`` for the layers whose input width ``group`` does not divide."""
    bad = [f"{name} ({m.in_features})" for name, m in target_linears(model).items() if m.in_features % group]
    if not bad:
        return None
    return f"{len(bad)} layer(s): " + ", ".join(bad[:4]) + (f" and {len(bad) - 4} more" if len(bad) > 4 else "")


def nm_valid(weight: torch.Tensor, n: int, m: int) -> bool:
    """True when every block of ``m`` consecutive input weights has at most ``n`` nonzeros."""
    rows, cols = weight.shape
    if cols % m:
        return False
    nonzero = (weight.reshape(rows, cols // m, m) != 0).sum(dim=-1)
    return bool((nonzero <= n).all())


def sparsity_report(model: torch.nn.Module, nm: tuple[int, int] | None) -> dict[str, Any]:
    """Fraction of zero weights per compressed layer and overall (and N:M validity)."""
    layers: dict[str, float] = {}
    zeros = total = 0
    valid = True
    for name, module in target_linears(model).items():
        weight = module.weight.detach()
        z = int((weight == 0).sum())
        layers[name] = round(z / weight.numel(), 6)
        zeros += z
        total += weight.numel()
        if nm is not None:
            valid = valid and nm_valid(weight, *nm)
    report: dict[str, Any] = {"overall": round(zeros / total, 6) if total else 0.0, "per_layer": layers}
    if nm is not None:
        report["nm_valid"] = valid
    return report


def layer_sizes(model: torch.nn.Module) -> tuple[dict[str, int], int]:
    """Weights per compressed layer and floating-point parameters in all (before saving,
    since saving compressed replaces each ``weight`` with packed integers)."""
    layers = {name: module.weight.numel() for name, module in target_linears(model).items()}
    params = sum(p.numel() for p in model.parameters() if p.dtype.is_floating_point)
    return layers, params


def storage_report(out_dir: Path, layers: dict[str, int], params: int) -> dict[str, Any]:
    """Bits per weight as stored: compressed layers alone, and the whole model.

    Read from the safetensors headers, so packing, scales, zero points and
    group indices all count.  Pruned models are stored dense (zeros included).
    """
    from safetensors import safe_open

    sizes: dict[str, int] = {}
    for file in sorted(out_dir.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as fh:
            for key in fh.keys():
                piece = fh.get_slice(key)
                numel = 1
                for dim in piece.get_shape():
                    numel *= dim
                sizes[key] = numel * _dtype_bytes(piece.get_dtype())
    layer_weights = sum(layers.values())
    layer_bytes = sum(size for key, size in sizes.items()
                      if key.rsplit(".", 1)[0] in layers and not key.endswith(".bias"))
    return {
        "effective_bits_per_weight": round(8 * layer_bytes / layer_weights, 4) if layer_weights else None,
        "bits_per_parameter": round(8 * sum(sizes.values()) / params, 4) if params else None,
        "compressed_layers": len(layers),
        "compressed_weights": layer_weights,
    }


_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def _dtype_bytes(dtype: str) -> int:
    return _DTYPE_BYTES.get(dtype.upper(), 4)


def dir_size(path: Path) -> int:
    """Bytes of the files in an artifact folder (what a user downloads)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def weights_size(path: Path) -> int:
    """Bytes of the weight files alone."""
    return sum(p.stat().st_size for p in path.glob("*.safetensors"))


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def peak_memory() -> dict[str, float]:
    """Peak resident memory of this process (MiB) and, on GPU, peak allocated GPU memory."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_mib = rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024
    out = {"process_peak_rss_mib": round(rss_mib, 1)}
    if torch.cuda.is_available():
        out["gpu_peak_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def describe_base(path: Path, fingerprint: str) -> dict[str, Any]:
    """Name, architecture and hash of the dense model an artifact was made from."""
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    return {"path": str(path), "name": path.name, "weights_sha256": fingerprint,
            "architecture": (config.get("architectures") or ["?"])[0],
            "model_type": config.get("model_type"), "dtype": config.get("dtype") or config.get("torch_dtype"),
            "size_bytes": weights_size(path)}
