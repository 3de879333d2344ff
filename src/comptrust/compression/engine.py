"""The thin layer over llm-compressor's ``oneshot`` shared by rtn/gptq/awq/sparsegpt/wanda.

We hand oneshot an already-loaded model and a ready DataLoader (so it neither
downloads, shuffles nor re-tokenizes anything: the seed alone decides the
calibration set) and save the result ourselves.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from comptrust.compression.base import IGNORE
from comptrust.compression.config import CompressionConfig
from comptrust.compression.moe import ROUTER_IGNORE

if TYPE_CHECKING:
    import torch

    from comptrust.compression.calibration import Calibration


def _quiet_env() -> None:
    # llm-compressor logs every layer (INFO, METRIC); keep errors.  Users can override both.
    os.environ.setdefault("LLM_COMPRESSOR_LOG_LEVEL", "ERROR")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # torch 2.13 warns once that is_fx_tracing also covers torch.export, when llm-compressor's
    # sequential pipeline traces the model: a note to library authors, not to our user.
    logging.getLogger("torch.fx._symbolic_trace").setLevel(logging.ERROR)


_quiet_env()  # before any llm-compressor import: it configures its logger on import


def weight_scheme(config: CompressionConfig, group_size: int | str) -> Any:
    """The compressed-tensors scheme for W{bits}A16 integer weights (activations untouched)."""
    _quiet_env()
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

    if group_size == "channel":
        args = QuantizationArgs(num_bits=config.bits, type="int", symmetric=config.symmetric,
                                strategy="channel")
    else:
        args = QuantizationArgs(num_bits=config.bits, type="int", symmetric=config.symmetric,
                                strategy="group", group_size=int(group_size))
    return QuantizationScheme(targets=["Linear"], weights=args)


def run_oneshot(model: torch.nn.Module, recipe: list[Any], calibration: Calibration | None) -> None:
    """Apply ``recipe`` to ``model`` in place with our calibration data (or none)."""
    _quiet_env()
    import torch
    from llmcompressor import oneshot

    torch.manual_seed(calibration.description["seed"] if calibration else 0)
    with _awq_cpu_without_pinning():
        oneshot(model=model, recipe=recipe,
                dataset=calibration.dataloader() if calibration is not None else None,
                num_calibration_samples=len(calibration.input_ids) if calibration is not None else 512,
                shuffle_calibration_samples=False)


@contextlib.contextmanager
def _awq_cpu_without_pinning() -> Iterator[None]:
    """Work around llm-compressor 0.14's unconditional ``pin_memory()`` in AWQ smoothing.

    ``AWQModifier._apply_smoothing`` pins every cached activation before its grid
    search; pinning needs an accelerator, so on a CPU-only machine it raises
    "Cannot access accelerator device when none is available".  Pinning only
    speeds up host-to-device copies, which a CPU run never makes, so on CPU (and
    only there, only for the duration of one oneshot call) it becomes a no-op.
    """
    import torch

    if torch.accelerator.is_available():
        yield
        return
    from llmcompressor.pipelines.cache import IntermediatesCache

    original = IntermediatesCache.pin_memory
    IntermediatesCache.pin_memory = lambda self, batch_index, input_names=None: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        IntermediatesCache.pin_memory = original  # type: ignore[method-assign]


def ignore_list() -> list[str]:
    """Layers llm-compressor must leave alone (a copy, since modifiers may keep it): lm_head and MoE routers."""
    return list(IGNORE) + list(ROUTER_IGNORE)
