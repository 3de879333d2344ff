"""A backend that replays given responses: for tests and for scoring imported outputs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from comptrust.backends.base import OnResult
from comptrust.types import Completion, GenRow, stable_hash

Responder = Callable[[GenRow], str]


class ScriptedBackend:
    """Answers each row with ``responder(row)``, or cycles through a list of texts.

    ``calls`` counts rows actually generated, so tests can prove a cache hit.
    """

    name = "scripted"

    def __init__(self, responses: Responder | Sequence[str], label: str = "scripted") -> None:
        if callable(responses):
            self._responder: Responder = responses
            ident: Any = label
        else:
            texts = list(responses)
            if not texts:
                raise ValueError("ScriptedBackend needs at least one response")
            self._counter = 0

            def cycle(_row: GenRow) -> str:
                text = texts[self._counter % len(texts)]
                self._counter += 1
                return text

            self._responder = cycle
            ident = [label, texts]
        self.fingerprint = f"scripted-{stable_hash(ident, 12)}"
        self.calls = 0

    def generate(self, rows: Sequence[GenRow], on_result: OnResult | None = None) -> list[Completion]:
        out = []
        for i, row in enumerate(rows):
            text = self._responder(row)
            completion = Completion(text=text, prompt_tokens=0, completion_tokens=len(text.split()))
            self.calls += 1
            if on_result:
                on_result(i, completion)
            out.append(completion)
        return out

    def info(self) -> dict[str, Any]:
        return {"backend": self.name, "fingerprint": self.fingerprint}
