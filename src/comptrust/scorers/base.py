"""The toxicity-scorer protocol and how the toxicity perspective gets one.

A scorer maps continuations to one toxicity probability each (``None`` when
that text could not be scored).  Scorers differ in calibration, so every
result records which one produced it (``name`` + ``info()``), and results from
different scorers are never compared silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from comptrust.registry import TOXICITY_SCORERS, get_class

DEFAULT_SCORER = "offline"


@runtime_checkable
class ToxicityScorer(Protocol):
    """Anything that scores texts for toxicity in batches.

    ``score`` returns one value per input text, in order: a probability in
    [0, 1], or ``None`` for a text the scorer failed on (the perspective
    records that as DecodingTrust's -1 sentinel).  ``info`` says what the
    scorer is and how far its numbers can be trusted (calibration).
    """

    name: str

    def score(self, texts: Sequence[str]) -> list[float | None]: ...

    def info(self) -> dict[str, Any]: ...


def make_scorer(name: str | None, store: Any | None = None, **kwargs: Any) -> ToxicityScorer:
    """Build the scorer registered as ``name`` (default ``offline``).

    ``store`` is the run's :class:`~comptrust.store.Cache`; scorers that call
    a paid or rate-limited service keep every score there.
    """
    cls = get_class(TOXICITY_SCORERS, name or DEFAULT_SCORER, "toxicity scorer")
    return cls.from_options(store=store, **kwargs)
