"""Compression: GPTQ, AWQ, RTN quantization and magnitude, SparseGPT, Wanda pruning.

``compress_model(model, method, out_dir, **params)`` returns a Hugging Face
folder with a ``comptrust.json`` manifest; see docs/compression.md.  ``methods()``
lists the registered methods (compression/methods.py).

``compress_model`` lives in :mod:`.pipeline`, which needs model resolution (``models``,
``model_files``, ``gguf.tools``), and those import this package's records; it is loaded on first
use, so importing the package stays light (``--help``, ``report``, sweep planning) and no import
closes a circle.  comptrust's own modules import it from ``comptrust.compression.pipeline``.
"""

from typing import Any

from comptrust.compression.base import load_manifest
from comptrust.compression.config import CompressionConfig, make_config
from comptrust.compression.methods import methods

__all__ = ["CompressionConfig", "compress_model", "load_manifest", "make_config", "methods"]


def __getattr__(name: str) -> Any:
    """``comptrust.compression.compress_model``, imported when first asked for (see the module docstring)."""
    if name == "compress_model":
        from comptrust.compression.pipeline import compress_model

        return compress_model
    raise AttributeError(f"module 'comptrust.compression' has no attribute {name!r}")
