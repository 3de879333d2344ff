"""Library noise: comptrust reports progress itself, so transformers' own bars and notices are silenced."""

from __future__ import annotations


def quiet_transformers() -> None:
    """Silence transformers' own load bars and notices; comptrust reports progress itself."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
