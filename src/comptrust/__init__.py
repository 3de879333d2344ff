"""comptrust: what did compression do to my LLM's trustworthiness?

Compress a Hugging Face causal LM, score dense and compressed variants on the
eight DecodingTrust perspectives plus MMLU, and compare them with honest
uncertainty.  The public Python API lives in :mod:`comptrust.api`.
"""

__version__ = "0.1.0"
