"""GGUF: a llama.cpp file made with llama.cpp's own converter and quantizer, so k-quants are the real ones.

Two steps, as llama.cpp's README does them: the converter writes the Hugging Face model as a GGUF in
its own precision (F32/F16/BF16), then llama.cpp's quantizer writes the requested type
(:mod:`comptrust.gguf.tools` finds and runs both).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from comptrust.compression.base import Compressor
from comptrust.compression.config import CompressionConfig
from comptrust.compression.formats import GGUF_CONVERTER_TYPES
from comptrust.gguf import tools


def _outtype(base: Path) -> str:
    """The converter's output precision: the base model's own (bf16 stays bf16), so nothing is rounded twice."""
    config = json.loads((base / "config.json").read_text(encoding="utf-8"))
    dtype = str(config.get("dtype") or config.get("torch_dtype") or "float32")
    return {"bfloat16": "bf16", "float16": "f16"}.get(dtype, "f32")



def gguf_file_name(base: Path, gguf_type: str) -> str:
    return f"{base.name}.{gguf_type}.gguf"


class GGUFCompressor(Compressor):
    """Writes a ``.gguf`` file (not a Hugging Face folder): the pipeline calls :meth:`write`."""

    name = "gguf"
    label = "GGUF"
    family = "file"
    needs_calibration = False
    saves_compressed = False
    options = frozenset({"gguf_type"})
    uses_llmcompressor = False

    def write(self, base: Path, config: CompressionConfig, out_dir: Path,
              log: Callable[[str], None]) -> dict[str, Any]:
        """Convert ``base`` and quantize it into ``out_dir``; return facts for the manifest."""
        assert config.gguf_type is not None
        gguf_type = config.gguf_type
        tools.require_gguf_tools(gguf_type)
        target = out_dir / gguf_file_name(base, gguf_type)
        direct = gguf_type in GGUF_CONVERTER_TYPES and (not tools.llama_cpp_available() or gguf_type != "Q8_0")
        if direct:  # the converter writes these types itself (Q8_0 only without llama.cpp's quantizer)
            seconds = tools.convert(base, target, gguf_type.lower(), log)
            return {"engine": "llama.cpp convert_hf_to_gguf.py", "quantizer": _converter_quantizer(gguf_type),
                    "convert_s": round(seconds, 3), "quantize_s": 0.0, "intermediate": None}
        outtype = _outtype(base)
        intermediate = out_dir / f".{base.name}.{outtype.upper()}.gguf"
        try:
            convert_s = tools.convert(base, intermediate, outtype, log)
            log(f"quantizing to {gguf_type} with llama.cpp's llama_model_quantize")
            quantize_s, quantizer_lines = tools.quantize(intermediate, target, gguf_type)
        finally:
            intermediate.unlink(missing_ok=True)
        fallback = tools.fallback_summary(quantizer_lines)
        if fallback:
            log(f"llama.cpp wrote {fallback['tensors']} of {fallback['of'] or '?'} tensors in another type than "
                f"{gguf_type} ({', '.join(f'{t} x{n}' for t, n in fallback['to'].items())}): their rows are not a "
                "multiple of the type's block width")
        return {"engine": "llama.cpp convert_hf_to_gguf.py + llama_model_quantize",
                "quantizer": f"llama.cpp (llama-cpp-python {tools.package_version('llama-cpp-python')})",
                "convert_s": round(convert_s, 3), "quantize_s": round(quantize_s, 3),
                "intermediate": outtype.upper(), "imatrix": None, "fallback": fallback}


def _converter_quantizer(gguf_type: str) -> str:
    if gguf_type == "Q8_0":
        return f"gguf-py numpy Q8_0 (the converter's own; gguf {tools.package_version('gguf')})"
    return "none (the converter writes this precision)"


def copy_tokenizer(base: Path, out_dir: Path, names: tuple[str, ...]) -> None:
    """The base model's tokenizer beside the GGUF: the prompt is rendered and tokenized exactly as for hf."""
    for name in names:
        if (base / name).is_file():
            shutil.copy2(base / name, out_dir / name)
