"""Notes on what a variant's label does not say: the runtime it was measured with, and a GGUF whose
tensors are not all of its nominal type.

Why?  "GGUF Q4_K_M" reads as 4-bit weights run like the dense model.  On SmolLM2 (rows 576 wide, not
a multiple of k-quants' 256) llama.cpp wrote 180 of 272 tensors as Q5_0/Q8_0 instead (5.5 bits per
weight), and llama.cpp, not transformers, ran it.  A reader comparing formats must be told both.
"""

from __future__ import annotations

from typing import Any

from comptrust.report.consistency import compared_runs


def runtime_notes(bases: list[Any]) -> list[str]:
    """One sentence per variant measured with another runtime than its dense run (GGUF on llama.cpp)."""
    out = []
    for variant, run, reference in compared_runs(bases):
        mine, theirs = run.model.get("backend"), reference.model.get("backend")
        if run is variant.runs[0] and run.method == "gguf" and mine == "llamacpp" and mine != theirs:
            out.append(f"{variant.label} was evaluated by llama.cpp (the runtime GGUF files are deployed "
                       f"with) and the dense model by {theirs}: its changes include llama.cpp's kernels "
                       "(8-bit activations inside its dot products) as well as the weights' quantization; "
                       "the same GGUF evaluated with --backend hf isolates the latter.")
    return out


def gguf_fallback_notes(bases: list[Any]) -> list[str]:
    """One sentence per GGUF variant whose quantizer fell back to other types (its manifest records it)."""
    out = []
    for base in bases:
        for variant in base.variants:
            run = variant.runs[0]
            engine = (run.manifest or {}).get("engine") or {}
            fallback = engine.get("fallback") if isinstance(engine, dict) else None
            if run.method != "gguf" or not isinstance(fallback, dict) or not fallback.get("tensors"):
                continue
            bits = run.stored_bits
            kinds = ", ".join(f"{t} x{n}" for t, n in (fallback.get("to") or {}).items())
            of = f" of {fallback['of']}" if fallback.get("of") else ""
            out.append(f"{variant.label}: llama.cpp wrote {fallback['tensors']}{of} tensors in other types "
                       f"({kinds}) because their rows are not a multiple of the type's block width"
                       + (f"; its decoder weights average {bits:.2f} bits" if bits else "")
                       + ", so it is not the file this type gives on a model with compatible widths.")
    return out
