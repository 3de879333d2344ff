"""Compression: GPTQ, AWQ, RTN quantization and magnitude, SparseGPT, Wanda pruning.

``compress_model(model, method, out_dir, **params)`` returns a Hugging Face
folder with a ``comptrust.json`` manifest; see docs/compression.md.
"""

from comptrust.compression.base import METHODS, CompressionConfig, load_manifest, make_config
from comptrust.compression.pipeline import compress_model

__all__ = ["METHODS", "CompressionConfig", "compress_model", "load_manifest", "make_config"]
