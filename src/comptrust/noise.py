"""The noise floor: the dense model evaluated again under one recorded perturbation.

A measured "effect of compression" includes whatever moves when nothing is compressed: another
sampling seed changes every sampled completion, and in bfloat16/float16 another batch layout
changes greedy texts too (docs/reproducibility.md).  ``comptrust eval --noise-floor seed|batch``
runs the model a second time under one such perturbation, into a sibling run folder linked from
the first run's summary, and the report sets dense-vs-dense beside every dense-vs-variant change
and flip rate (docs/reports.md, "Noise floor").

- ``seed``: the run seed plus one.  Only sampled scenarios depend on it; greedy completions are
  the same text under any seed (their cache keys do not carry it), so their floor under this
  perturbation is zero by construction and said to be so.
- ``batch``: the same seed, every completion generated afresh (its own cache namespace) with the
  rows in a seeded shuffled order and, on the CPU transformers backend, half the batch size
  (``NOISE_BATCH_SIZE`` when the size is automatic): each row meets other neighbours in its batch.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from comptrust.errors import ConfigError

KINDS = ("seed", "batch")
NOISE_BATCH_SIZE = 8  # the replicate's batch size where the run's was automatic (CPU hf: up to 32 slots)


@dataclass(frozen=True)
class Perturbation:
    """What differs in a noise-floor replicate from the run it replicates (``of_run``)."""

    kind: str
    of_run: str
    seed: int
    order_seed: int | None = None
    batch_size: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> Perturbation | None:
        """The recorded perturbation, or None when ``data`` is not one (another version, damage)."""
        if not isinstance(data, dict) or data.get("kind") not in KINDS:
            return None
        try:
            return cls(kind=str(data["kind"]), of_run=str(data.get("of_run", "")), seed=int(data.get("seed", 0)),
                       order_seed=None if data.get("order_seed") is None else int(data["order_seed"]),
                       batch_size=None if data.get("batch_size") is None else int(data["batch_size"]))
        except (TypeError, ValueError):
            return None

    def describe(self) -> str:
        """``seed 1`` / ``rows reordered (seed 0), batch size 8``: the report's label of the rerun."""
        if self.kind == "seed":
            return f"seed {self.seed}"
        size = f", batch size {self.batch_size}" if self.batch_size else ""
        return f"rows reordered (order seed {self.order_seed}){size}"

    @property
    def cache_salt(self) -> str | None:
        """A batch-layout replicate must generate afresh: its completions live under their own keys."""
        if self.kind != "batch":
            return None
        return f"noise-batch-{self.order_seed}-{self.batch_size}"

    def shuffled(self, items: list[Any], perspective: str) -> list[Any]:
        """``items`` in this replicate's order (unchanged for a seed replicate)."""
        if self.kind != "batch":
            return items
        out = list(items)
        random.Random(zlib.crc32(f"{self.order_seed}:{perspective}".encode())).shuffle(out)
        return out


def cache_model(fingerprint: str, perturbation: Perturbation | None) -> str:
    """The model column of a run's cache keys: the backend's fingerprint, apart for a batch-layout replicate."""
    salt = perturbation.cache_salt if perturbation is not None else None
    return f"{fingerprint}|{salt}" if salt else fingerprint


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ConfigError(f"unknown --noise-floor {kind!r}", f"choose from: {', '.join(KINDS)}")
    return kind


def perturbation_for(kind: str, run_id: str, seed: int, backend: Any) -> Perturbation:
    """The replicate of run ``run_id`` (at ``seed``) under ``kind``, for ``backend``."""
    check_kind(kind)
    if kind == "seed":
        return Perturbation(kind="seed", of_run=run_id, seed=seed + 1)
    batch = None
    if hasattr(backend, "requested_batch_size"):
        device = getattr(getattr(backend, "device", None), "type", "cpu")
        requested = backend.requested_batch_size
        if requested:
            batch = max(1, requested // 2)
        elif device == "cpu":
            batch = NOISE_BATCH_SIZE
    return Perturbation(kind="batch", of_run=run_id, seed=seed, order_seed=seed + 1, batch_size=batch)


@contextmanager
def batch_layout(backend: Any, perturbation: Perturbation | None) -> Iterator[None]:
    """The backend at the replicate's batch size for the duration, restored afterwards."""
    if perturbation is None or perturbation.batch_size is None or not hasattr(backend, "requested_batch_size"):
        yield
        return
    saved = backend.requested_batch_size
    backend.requested_batch_size = perturbation.batch_size
    try:
        yield
    finally:
        backend.requested_batch_size = saved


def replicate_dir(primary: Path, kind: str) -> Path:
    """Where the replicate of run folder ``primary`` goes: beside it, named after it."""
    return primary.with_name(f"{primary.name}-noise-{kind}")
