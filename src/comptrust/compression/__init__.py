"""Compression: GPTQ, AWQ, RTN quantization and magnitude, SparseGPT, Wanda pruning.

``compress_model(model, method, out_dir, **params)`` returns a Hugging Face
folder with a ``comptrust.json`` manifest; see docs/compression.md.  ``methods()``
lists the registered methods (compression/methods.py).
"""

from comptrust.compression.base import load_manifest
from comptrust.compression.config import CompressionConfig, make_config
from comptrust.compression.methods import methods
from comptrust.compression.pipeline import compress_model

__all__ = ["CompressionConfig", "compress_model", "load_manifest", "make_config", "methods"]
