"""Typed registries: one line per perspective, backend, compressor and scorer.

Entries are import paths, loaded on first use, so a heavy optional dependency
(vLLM, Ray, Detoxify) is imported only by the command that needs it.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, overload

from comptrust.errors import ConfigError

# Perspective ids are the module names (docs/perspectives.md); "mmlu" is the benign measure.
PERSPECTIVES: dict[str, str] = {
    "toxicity": "comptrust.perspectives.toxicity:ToxicityPerspective",
    "stereotype": "comptrust.perspectives.stereotype:StereotypePerspective",
    "adv_glue": "comptrust.perspectives.adv_glue:AdvGluePerspective",
    "ood": "comptrust.perspectives.ood:OodPerspective",
    "adv_demonstration": "comptrust.perspectives.adv_demonstration:AdvDemonstrationPerspective",
    "privacy": "comptrust.perspectives.privacy:PrivacyPerspective",
    "machine_ethics": "comptrust.perspectives.machine_ethics:MachineEthicsPerspective",
    "fairness": "comptrust.perspectives.fairness:FairnessPerspective",
    "mmlu": "comptrust.benign.mmlu:MmluPerspective",
}
TRUST_PERSPECTIVES = ("toxicity", "stereotype", "adv_glue", "ood", "adv_demonstration",
                      "privacy", "machine_ethics", "fairness")
PAPER_NINE = (*TRUST_PERSPECTIVES, "mmlu")  # the paper's table: eight trust perspectives, then MMLU

BACKENDS: dict[str, str] = {
    "hf": "comptrust.backends.hf.backend:HFBackend",
    "scripted": "comptrust.backends.scripted:ScriptedBackend",
    "vllm": "comptrust.backends.vllm:VLLMBackend",
    "openai": "comptrust.backends.openai_api:OpenAIBackend",
    "llamacpp": "comptrust.backends.llamacpp:LlamaCppBackend",
}

COMPRESSORS: dict[str, str] = {
    "rtn": "comptrust.compression.rtn:RTNCompressor",
    "gptq": "comptrust.compression.gptq:GPTQCompressor",
    "awq": "comptrust.compression.awq:AWQCompressor",
    "magnitude": "comptrust.compression.magnitude:MagnitudeCompressor",
    "sparsegpt": "comptrust.compression.sparsegpt:SparseGPTCompressor",
    "wanda": "comptrust.compression.wanda:WandaCompressor",
    "fp8": "comptrust.compression.fp8:FP8Compressor",
    "w8a8": "comptrust.compression.w8a8:W8A8Compressor",
    "nvfp4": "comptrust.compression.nvfp4:NVFP4Compressor",
    "gguf": "comptrust.compression.gguf:GGUFCompressor",
}

TOXICITY_SCORERS: dict[str, str] = {
    "offline": "comptrust.scorers.offline:OfflineToxicityScorer",
    "perspective": "comptrust.scorers.perspective_api:PerspectiveApiScorer",
    "detoxify": "comptrust.scorers.detoxify:DetoxifyScorer",
}


def _import(path: str) -> Any:
    module_name, attr = path.split(":")
    return getattr(importlib.import_module(module_name), attr)


def _implemented(table: dict[str, str]) -> list[str]:
    """Entries whose module exists in this installation (optional deps may still be absent)."""
    found = []
    for key, path in table.items():
        if importlib.util.find_spec(path.split(":")[0]) is not None:
            found.append(key)
    return found


def available_perspectives() -> list[str]:
    return _implemented(PERSPECTIVES)


def get_perspective(name: str) -> Any:
    """An instance of the perspective ``name``; unknown names list the valid ones."""
    if name not in PERSPECTIVES or name not in available_perspectives():
        raise ConfigError(f"unknown perspective {name!r}",
                          f"choose from: {', '.join(available_perspectives())}")
    return _import(PERSPECTIVES[name])()


def classes(table: dict[str, str]) -> dict[str, Any]:
    """Every implemented entry's class, in table order: what lists of methods are computed from."""
    return {name: _import(table[name]) for name in _implemented(table)}


class ClassAttributes(Mapping[str, Any]):
    """``{id: an attribute of its registered class}`` over ``table``, plus fixed ``extra`` entries.

    Read from the class on every lookup, so it always agrees with the registry: a
    perspective's title and table column are its own class attributes, with no
    second table of names to keep in step (``shape`` rewrites the value, e.g. for
    use mid-sentence).
    """

    def __init__(self, table: dict[str, str], attribute: str, extra: dict[str, Any] | None = None,
                 shape: Callable[[Any], Any] | None = None) -> None:
        self._table, self._attribute, self._extra, self._shape = table, attribute, dict(extra or {}), shape

    def __getitem__(self, key: str) -> Any:
        if key in self._extra:
            return self._extra[key]
        if key not in self._table:
            raise KeyError(key)
        value = getattr(_import(self._table[key]), self._attribute)
        return self._shape(value) if self._shape else value

    def __iter__(self) -> Iterator[str]:
        return iter([*self._table, *self._extra])

    def __len__(self) -> int:
        return len(self._table) + len(self._extra)


class ReportMeasures(Sequence[str]):
    """The measures a report shows: the paper's nine (eight trust perspectives, then MMLU), then every
    other registered perspective in registry order.

    Read from the registry on every use, as :class:`ClassAttributes` is, so registering a perspective
    makes it a column of every table, flip count and finding with no second list to edit.  The
    Average stays the paper's mean of nine (``PAPER_NINE``).
    """

    def _names(self) -> tuple[str, ...]:
        return (*PAPER_NINE, *(name for name in PERSPECTIVES if name not in PAPER_NINE))

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[str, ...]: ...

    def __getitem__(self, index: int | slice) -> str | tuple[str, ...]:
        return self._names()[index]

    def __len__(self) -> int:
        return len(self._names())

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __repr__(self) -> str:
        return f"ReportMeasures{self._names()}"


def get_class(table: dict[str, str], name: str, what: str) -> Any:
    if name not in table or name not in _implemented(table):
        raise ConfigError(f"unknown {what} {name!r}", f"choose from: {', '.join(_implemented(table))}")
    return _import(table[name])
