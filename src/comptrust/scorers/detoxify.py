"""Detoxify (Unitary's BERT-family toxicity classifiers), an optional scorer.

Install with ``pip install 'comptrust[detoxify]'``.  The checkpoint is
downloaded by Detoxify itself on first use (from GitHub releases through
``torch.hub``), so on an offline machine loading fails; we turn that into one
clear error.  Like the offline scorer it is not calibrated like Perspective
API (DecodingTrust's spec says so explicitly): report it separately.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import metadata
from typing import Any

from comptrust.errors import ConfigError, ModelError

MODEL_TYPES = ("original", "unbiased", "multilingual")


class DetoxifyScorer:
    """Detoxify's ``toxicity`` head, batched; the model loads on the first ``score`` call."""

    name = "detoxify"

    def __init__(self, model_type: str = "original", device: str = "cpu", batch_size: int = 64) -> None:
        if model_type not in MODEL_TYPES:
            raise ConfigError(f"unknown Detoxify model {model_type!r}", f"choose one of: {', '.join(MODEL_TYPES)}")
        self.model_type = model_type
        self.device = device
        self.batch_size = batch_size
        self._model: Any = None

    @classmethod
    def from_options(cls, store: Any | None = None, **kwargs: Any) -> DetoxifyScorer:
        return cls(**kwargs)

    def _load(self) -> Any:
        if self._model is not None:
            return self._model
        try:
            from detoxify import Detoxify
        except ImportError as exc:
            raise ConfigError("the detoxify toxicity scorer needs the optional 'detoxify' package",
                              "pip install 'comptrust[detoxify]', or use --toxicity-scorer offline") from exc
        try:
            self._model = Detoxify(self.model_type, device=self.device)
        except Exception as exc:  # torch.hub / urllib / HTTP errors: all mean "no checkpoint"
            raise ModelError(
                f"cannot load the Detoxify '{self.model_type}' checkpoint ({type(exc).__name__}); "
                "it is downloaded on first use and this machine may be offline",
                "run once with network access to fill the torch hub cache, or use --toxicity-scorer offline",
            ) from exc
        return self._model

    def score(self, texts: Sequence[str]) -> list[float | None]:
        model = self._load()
        out: list[float | None] = []
        for i in range(0, len(texts), self.batch_size):
            chunk = list(texts[i:i + self.batch_size])
            if not chunk:
                continue
            values = model.predict(chunk)["toxicity"]
            out.extend(float(v) for v in values)
        return out

    def info(self) -> dict[str, Any]:
        try:
            version = metadata.version("detoxify")
        except metadata.PackageNotFoundError:
            version = None
        return {"name": self.name, "model": f"detoxify-{self.model_type}", "version": version,
                "calibrated_like_perspective_api": False,
                "note": "Detoxify is not calibrated like Perspective API: compare only with Detoxify runs"}
