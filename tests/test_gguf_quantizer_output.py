"""llama.cpp's quantizer writes a warning per tensor to file descriptor 2: kept out of the terminal (--quiet
means quiet) and summarised for the manifest, because a "Q4_K_M" that fell back to Q5_0 must say so."""

from __future__ import annotations

import os

from comptrust.gguf.tools import captured_stderr_fd, fallback_summary

# llama.cpp 0.3.36's quantizer on SmolLM2-135M to Q4_K_M (issue 14's smoke sweep, 2026-12-02), abridged
QUANTIZER_LINES = [
    "warning: blk.29.attn_q.weight                 - ncols    576 not divisible by 256 (required for type    "
    "q4_K) -> falling back to    q5_0",
    "warning: blk.29.attn_v.weight                 - ncols    576 not divisible by 256 (required for type    "
    "q6_K) -> falling back to    q8_0",
    "warning: blk.29.ffn_gate.weight               - ncols    576 not divisible by 256 (required for type    "
    "q4_K) -> falling back to    q5_0",
    "llama_model_quantize_impl: WARNING: 180 of 272 tensor(s) required fallback quantization",
]


def test_the_quantizers_fallback_warnings_are_summarised():
    assert fallback_summary(QUANTIZER_LINES) == {"tensors": 180, "of": 272, "to": {"Q5_0": 2, "Q8_0": 1}}
    assert fallback_summary(["llama_model_quantize_impl: model size = 513.1 MB"]) is None


def test_what_c_code_writes_to_descriptor_2_is_captured_not_printed(capfd):
    with captured_stderr_fd() as lines:
        os.write(2, b"warning: blk.0.ffn_up.weight -> falling back to q5_0\n")
        os.write(2, b"llama_model_quantize_impl: WARNING: 1 of 2 tensor(s) required fallback quantization\n")
        assert lines == []  # filled in when the block ends
    assert fallback_summary(lines) == {"tensors": 1, "of": 2, "to": {"Q5_0": 1}}
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"  # the descriptor is restored
