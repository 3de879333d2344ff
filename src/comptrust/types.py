"""Core value types shared by data loaders, backends, perspectives and the store.

Everything here is plain data (dataclasses of JSON-able fields) so it can be
hashed into cache keys, written to run directories and sent to Ray workers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

Message = dict[str, str]  # OpenAI-style {"role": ..., "content": ...}


def stable_hash(obj: Any, length: int = 16) -> str:
    """Hex digest of a JSON-able object; key order and whitespace do not matter."""
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


@dataclass(frozen=True)
class GenParams:
    """Decoding parameters of one scenario (DecodingTrust fixes them per scenario).

    ``temperature == 0`` means greedy decoding.  ``n`` is the number of samples
    per prompt.  ``seed`` is the run seed; each (sample, sample index) derives
    its own generator seed from it so results do not depend on batching.
    """

    max_tokens: int
    temperature: float = 0.0
    n: int = 1
    seed: int = 0
    top_p: float = 1.0

    def cache_fields(self) -> dict[str, Any]:
        """The fields that change the text a model produces (``n`` does not)."""
        return {"max_tokens": self.max_tokens, "temperature": self.temperature, "top_p": self.top_p}


@dataclass(frozen=True)
class Sample:
    """One prompt of one scenario of one perspective.

    ``record`` is the raw benchmark record it was built from (so it can be
    re-scored later without the data files); ``target`` is whatever the parser
    compares against (a label, an e-mail address, ...).
    """

    id: str
    perspective: str
    scenario: str
    messages: tuple[Message, ...]
    params: GenParams
    target: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)
    record: Any = None

    @property
    def prompt_hash(self) -> str:
        return stable_hash(list(self.messages))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["messages"] = list(self.messages)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sample:
        data = dict(data)
        data["messages"] = tuple(data["messages"])
        data["params"] = GenParams(**data["params"])
        return cls(**data)


@dataclass(frozen=True)
class GenRow:
    """One completion to produce: a sample's messages and the index of this draw."""

    messages: tuple[Message, ...]
    params: GenParams
    sample_index: int
    row_seed: int


@dataclass(frozen=True)
class Completion:
    """What a backend returns for one :class:`GenRow`."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class ScoredSample:
    """A sample, its responses and the perspective's per-sample outcome."""

    sample: Sample
    responses: list[str]
    outcome: dict[str, Any]


@dataclass
class PerspectiveResult:
    """Aggregate of one perspective in one run.

    ``score`` and ``refusal_rate`` are on a 0-100 scale (``None`` when the
    perspective cannot compute them, e.g. nothing was scored).  ``partial`` is
    true when required parts are missing; ``missing`` names them, so a report
    never shows an invented number.
    """

    perspective: str
    version: int
    profile: str
    score: float | None
    refusal_rate: float | None
    metrics: dict[str, Any] = field(default_factory=dict)
    n_samples: int = 0
    partial: bool = False
    missing: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PerspectiveResult:
        return cls(**data)
