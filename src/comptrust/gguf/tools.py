"""llama.cpp's own GGUF tools, found and run: the converter (``convert_hf_to_gguf.py``, a subprocess
with the gguf-py it was written against) and the C quantizer (``llama_model_quantize`` through
llama-cpp-python), with one-line errors when either is missing or fails.

The converter ships in llama-cpp-python's source distribution, not in its wheel; ``make install``
extracts it into ``<venv>/share/comptrust/llama.cpp``.  Without llama-cpp-python, the types the
converter writes itself (F32, F16, BF16 and Q8_0, the last through gguf-py's numpy quantizer) still work.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from comptrust.compression.formats import GGUF_CONVERTER_TYPES
from comptrust.errors import ConfigError, ModelError

CONVERTER_ENV = "COMPTRUST_LLAMA_CPP_CONVERTER"
LLAMA_CPP_PIN = "llama-cpp-python==0.3.36"
INSTALL_HINT = "run 'make install' (it builds llama-cpp-python and extracts llama.cpp's converter)"


def converter_path() -> Path:
    """llama.cpp's ``convert_hf_to_gguf.py``: ``$COMPTRUST_LLAMA_CPP_CONVERTER`` or the venv's copy."""
    env = os.environ.get(CONVERTER_ENV)
    path = Path(env).expanduser() if env else Path(sys.prefix) / "share" / "comptrust" / "llama.cpp" / \
        "convert_hf_to_gguf.py"
    if not path.is_file():
        raise ConfigError(f"llama.cpp's converter {path} is missing",
                          f"{INSTALL_HINT}, or set {CONVERTER_ENV} to a llama.cpp checkout's convert_hf_to_gguf.py")
    return path


CONVERTER_INCOMPATIBLE = {
    "GPTNeoXForCausalLM": "it reads rotary_pct from transformers' AutoConfig, whose 5.x GPT-NeoX config keeps it "
                          "only inside rope_parameters (KeyError: 'rotary_pct')",
}
"""Architectures the bundled converter registers but fails on with transformers 5.17 (checked before any work)."""


def converter_supports(architecture: str) -> bool:
    """Whether llama.cpp's converter registers a model class for ``architecture`` (``OPTForCausalLM``: no).

    Read from its sources (``ModelBase.register("LlamaForCausalLM", ...)``) without importing it; a
    missing converter counts as supporting everything, since ``require_gguf_tools`` reports that first.
    """
    try:
        converter = converter_path()
    except ConfigError:
        return True
    sources = [converter, *sorted((converter.parent / "conversion").glob("*.py"))]
    names: set[str] = set()
    for path in sources:
        for call in re.findall(r"register\(([^)]*)\)", path.read_text(encoding="utf-8", errors="replace")):
            names.update(re.findall(r"[\"']([A-Za-z0-9_]+)[\"']", call))
    return architecture in names


def llama_cpp_available() -> bool:
    try:
        return importlib.util.find_spec("llama_cpp") is not None
    except (ImportError, ValueError):
        return False


def require_gguf_tools(gguf_type: str) -> None:
    """One-line errors, before any work, when the converter or the quantizer this type needs is missing."""
    converter_path()
    if gguf_type not in GGUF_CONVERTER_TYPES and not llama_cpp_available():
        raise ConfigError(f"GGUF {gguf_type} needs llama.cpp's quantizer (llama-cpp-python), which is not installed",
                          f"{INSTALL_HINT}; without it only {', '.join(GGUF_CONVERTER_TYPES)} can be written")



def convert(base: Path, out: Path, outtype: str, log: Callable[[str], None]) -> float:
    """Run llama.cpp's converter in a subprocess (its gguf-py first on the path); returns seconds."""
    converter = converter_path()
    env = dict(os.environ)
    gguf_py = converter.parent / "gguf-py"
    if gguf_py.is_dir():
        env["PYTHONPATH"] = os.pathsep.join([str(gguf_py), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    command = [sys.executable, str(converter), str(base), "--outfile", str(out), "--outtype", outtype]
    log(f"converting to GGUF {outtype.upper()} with llama.cpp's convert_hf_to_gguf.py")
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not out.is_file():
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        cause = next((ln for ln in reversed(lines) if "Error" in ln or "error" in ln), lines[-1] if lines else "")
        if "pre-tokenizer was not recognized" in cause:
            raise ModelError(f"llama.cpp's converter does not know {base.name}'s tokenizer (BPE pre-tokenizer not "
                             "recognized)", "use a model family llama.cpp supports, or convert it with a newer "
                             "llama.cpp and pass the .gguf to 'comptrust eval'")
        raise ModelError(f"llama.cpp's converter failed on {base} ({cause.strip()[:200]})",
                         "check that the model's architecture is one llama.cpp supports")
    return time.perf_counter() - start


@contextmanager
def captured_stderr_fd() -> Iterator[list[str]]:
    """Collect what C code writes to file descriptor 2 (llama.cpp's quantizer prints a warning per tensor
    there, past Python's ``sys.stderr`` and ``--quiet``); the lines are filled in when the block ends."""
    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read().decode("utf-8", "replace").splitlines())


_FALLBACK_TENSOR = re.compile(r"falling back to\s+(\w+)")
_FALLBACK_TOTAL = re.compile(r"(\d+) of (\d+) tensor\(s\) required fallback quantization")


def fallback_summary(lines: list[str]) -> dict[str, Any] | None:
    """What llama.cpp's quantizer could not write in the requested type (k-quants need rows a multiple of
    256 wide; SmolLM2's 576 is not), from its warnings: ``{"tensors": 180, "of": 272, "to": {"Q5_0": 166,
    "Q8_0": 14}}``, or None when every tensor got its type.  A "Q4_K_M" file that is mostly Q5_0 must say so."""
    to = Counter(m.group(1).upper() for line in lines if (m := _FALLBACK_TENSOR.search(line)))
    total = next((m for line in lines if (m := _FALLBACK_TOTAL.search(line))), None)
    if total is None and not to:
        return None
    count = int(total.group(1)) if total else sum(to.values())
    return {"tensors": count, "of": int(total.group(2)) if total else None, "to": dict(sorted(to.items()))}


def quantize(source: Path, out: Path, gguf_type: str, threads: int | None = None) -> tuple[float, list[str]]:
    """llama.cpp's ``llama_model_quantize`` from ``source`` to ``gguf_type``; returns seconds and the
    quantizer's own output lines (kept for the manifest, not printed)."""
    import llama_cpp
    import llama_cpp._logger

    llama_cpp._logger.set_verbose(False)  # llama.cpp logs every tensor otherwise
    name = {"F32": "LLAMA_FTYPE_ALL_F32"}.get(gguf_type, f"LLAMA_FTYPE_MOSTLY_{gguf_type}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, name)
    params.nthread = threads or os.cpu_count() or 1
    start = time.perf_counter()
    with captured_stderr_fd() as lines:
        status = llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), params)
    if status != 0 or not out.is_file():
        last = next((ln.strip() for ln in reversed(lines) if ln.strip()), "")
        raise ModelError(f"llama.cpp could not quantize {source.name} to {gguf_type} (status {status}"
                         + (f": {last[:200]}" if last else "") + ")",
                         "try another --type; some need tensor widths divisible by 256 (k-quants)")
    return time.perf_counter() - start, lines



def package_version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
