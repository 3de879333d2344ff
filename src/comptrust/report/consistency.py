"""Warnings when runs compared against one dense run were not evaluated alike.

A delta means "what compression did" only if everything else was equal: the
same prompts (data source and revision, ``--limit``, ``--scenarios``), the same
decoding (``--samples``, ``--max-new-tokens``, seed), the same prompt format
(chat template) and numerics (dtype), and a dense run of the very weights the
compressed model was made from.  Different scoring profiles or scorers are
refused outright (:func:`comptrust.report.runs.check_comparable`); everything
here is a warning, printed in the terminal and in the report's caveats.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from comptrust.report.runs import Run

_OPTION_KEYS = ("limit", "samples", "max_new_tokens", "scenarios", "seed", "extra")
_MODEL_KEYS = ("chat_template", "dtype", "backend", "kv_cache")


def _data(run: Run) -> tuple[Any, Any]:
    data = run.summary.data
    if not isinstance(data, dict):
        return (data, None)
    return (data.get("kind") or data.get("source"), data.get("revision") or data.get("resolved_revision"))


def _show(value: Any) -> str:
    if value is None:
        return "none"
    return json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else str(value)


def _differences(run: Run, dense: Run) -> list[str]:
    out: list[str] = []
    if _data(run) != _data(dense):
        out.append(f"data source {_show(_data(run)[0])}@{_show(_data(run)[1])} vs "
                   f"{_show(_data(dense)[0])}@{_show(_data(dense)[1])}")
    mine, theirs = run.summary.options or {}, dense.summary.options or {}
    for key in _OPTION_KEYS:
        if key == "seed" and run.is_dense:
            continue  # several dense runs with different evaluation seeds form one row on purpose
        if mine.get(key) != theirs.get(key) and not (key == "extra" and not mine.get(key) and not theirs.get(key)):
            out.append(f"--{key.replace('_', '-')} {_show(mine.get(key))} vs {_show(theirs.get(key))}")
    for key in _MODEL_KEYS:
        if run.model.get(key) != dense.model.get(key) and not _is_the_compression(run, dense, key):
            out.append(f"{key.replace('_', ' ')} {_show(run.model.get(key))} vs {_show(dense.model.get(key))}")
    return out


def _is_the_compression(run: Run, dense: Run, key: str) -> bool:
    """A difference that is the variant itself, not a confound: a quantized KV cache against the dense run's
    plain one ("dense + KV int4"), a GGUF's type in place of a dtype, and llama.cpp running a GGUF (the
    runtime it is deployed with; :func:`runtime_notes` says so)."""
    if key == "kv_cache":
        return run.kv_cache is not None and dense.kv_cache is None
    if run.method == "gguf":
        return key == "dtype" or (key == "backend" and run.model.get("backend") == "llamacpp")
    return False


def compared_runs(bases: list[Any]) -> Iterator[tuple[Any, Run, Run]]:
    """(variant, run, the dense run it is compared with) for every run but the dense reference itself."""
    for base in bases:
        if base.dense is None:
            continue
        reference = base.dense.runs[0]
        for variant in base.variants:
            for run in variant.runs:
                if run is not reference:
                    yield variant, run, reference


def mismatch_warnings(bases: list[Any]) -> list[str]:
    """One sentence per compressed run that differs from its dense run in more than compression."""
    out = []
    for variant, run, reference in compared_runs(bases):
        found = _differences(run, reference)
        if not run.is_dense and not (run.base_hashes() and reference.base_hashes()):
            found.append("matched to the dense run by model name only (no weights hash recorded)")
        if found:
            out.append(f"Warning: run {run.path.name} ({variant.label}) differs from the dense run "
                       f"{reference.path.name} in more than compression: {'; '.join(found)}. Its changes "
                       "mix compression with these differences; re-run it alike to compare.")
    return out
