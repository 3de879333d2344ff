"""Magnitude pruning, written here because llm-compressor 0.14 cannot do it one-shot.

Its ``MagnitudePruningModifier`` is built for gradual pruning during training:
applied one-shot it leaves the mask unapplied (docs/compression.md records what it
reached) and it rejects N:M structures.  Pruning by magnitude needs no data,
so it is a few lines: unstructured drops the smallest |w| of each output row
(Wanda's per-output comparison group), N:M keeps the N largest |w| of every M
consecutive inputs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from comptrust.compression.base import Compressor
from comptrust.compression.config import CompressionConfig
from comptrust.compression.engine import _quiet_env
from comptrust.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from comptrust.compression.calibration import Calibration


def unstructured_mask(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Boolean keep-mask dropping the smallest |w| of each row, ``round(sparsity * size)`` in all.

    Every row drops k or k + 1 weights; the rows that drop one more are those whose
    next-smallest weight is smallest, so the layer hits the target exactly even
    when ``sparsity * cols`` is not a whole number.  Ties break by a stable sort
    (lower index first), so the mask is a pure function of the weights.
    """
    import torch

    rows, cols = weight.shape
    k, extra = divmod(int(round(sparsity * rows * cols)), rows)
    sorted_abs, order = torch.sort(weight.abs(), dim=1, stable=True)
    drop = torch.full((rows,), k, dtype=torch.long, device=weight.device)
    if extra:
        cheapest = torch.sort(sorted_abs[:, k], stable=True).indices[:extra]
        drop[cheapest] += 1
    rank = torch.arange(cols, device=weight.device).expand(rows, cols)
    keep = torch.empty_like(weight, dtype=torch.bool)
    keep.scatter_(1, order, rank >= drop[:, None])
    return keep


def nm_mask(weight: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Boolean keep-mask with exactly ``n`` kept weights in every block of ``m`` inputs."""
    import torch

    rows, cols = weight.shape
    if cols % m:
        raise ValueError(f"input width {cols} is not a multiple of {m}")
    blocks = weight.abs().reshape(rows, cols // m, m)
    top = torch.sort(blocks, dim=-1, descending=True, stable=True).indices[..., :n]
    keep = torch.zeros_like(blocks, dtype=torch.bool)
    keep.scatter_(-1, top, True)
    return keep.reshape(rows, cols)


def linearize_experts(model: torch.nn.Module) -> None:
    """One Linear per expert in place of transformers 5's fused 3-D experts, as llm-compressor's methods get.

    Without it a MoE's experts (most of its weights) would not be pruned at all; saving then writes them
    per expert under the family's checkpoint names (``moe.expert_save_names``).
    """
    if not any(p.dim() == 3 for p in model.parameters()):  # no fused experts (every dense model)
        return

    _quiet_env()
    try:
        from llmcompressor.modeling.moe.linearize import get_non_linearized_moes, linearize_moe
    except ImportError:
        raise ConfigError("pruning a mixture-of-experts model needs llm-compressor (it splits the fused experts)",
                          "compress in the main environment (make install)") from None
    if get_non_linearized_moes(model):
        linearize_moe(model)


class MagnitudeCompressor(Compressor):
    name = "magnitude"
    label = "Magnitude"
    family = "pruning"
    needs_calibration = False
    saves_compressed = False
    uses_llmcompressor = False

    def compress(self, model: torch.nn.Module, config: CompressionConfig,
                 calibration: Calibration | None) -> dict[str, Any]:
        import torch

        from comptrust.compression.measure import target_linears  # imports torch: not at class lookup

        assert config.sparsity is not None
        linearize_experts(model)
        layers = target_linears(model)
        if config.nm is not None:
            n, m = config.nm
            bad = [f"{name} ({layer.in_features})" for name, layer in layers.items() if layer.in_features % m]
            if bad:
                raise ConfigError(f"pattern {config.pattern} needs input widths divisible by {m}: "
                                  f"{', '.join(bad[:4])}", "use --pattern unstructured")
        device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
        with torch.no_grad():
            for layer in layers.values():
                weight = layer.weight.to(device)  # sorting a 7B model's rows is much faster on a GPU
                keep = nm_mask(weight, *config.nm) if config.nm else unstructured_mask(weight, config.sparsity)
                # +0.0, not -0.0: the same bytes every time
                layer.weight.masked_fill_(~keep.to(layer.weight.device), 0.0)
        return {"engine": "comptrust.magnitude", "comparison_group": "output row" if not config.nm else "N:M block"}
