"""A compression's validated config: every method's options checked in one place, one-line errors.

A config is normalised to the fields that change the weights (RTN has no
calibration, pruning has no bits), so two requests that would produce the same
artifact hash to the same key and are compressed only once.  What a method
accepts is read from its class (family, options, calibration, a format's fixed
bits: compression/methods.py), so this module names no method list.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from comptrust.compression.formats import GGUF_TYPES, gguf_weight_bits
from comptrust.compression.methods import (
    PAPER_FAMILIES,
    compressor_class,
    family_of,
    format_of,
    in_words,
    methods,
)
from comptrust.errors import ConfigError, DataError
from comptrust.types import stable_hash

BITS = (3, 4, 8)
PATTERNS = ("unstructured", "1:2", "2:4", "4:8")
CALIB_SOURCES = ("builtin", "file", "c4", "wikitext")
AUTO_GROUP_SIZES = (128, 64, 32)  # powers of two that vLLM's kernels accept, largest first


@dataclass(frozen=True)
class CalibConfig:
    """Where calibration text comes from and how it is cut into samples."""

    source: str = "builtin"
    file: str | None = None
    samples: int = 128
    seqlen: int = 512
    chat_template: bool = False


@dataclass(frozen=True)
class CompressionConfig:
    """Every parameter that changes a compressed model's weights.

    ``group_size`` is an int (input columns per quantization group), ``"channel"``
    (one scale per output row) or ``"auto"`` (largest of 128/64/32 dividing every
    layer's input width, resolved against the model before compression).
    """

    method: str
    bits: int | None = None
    group_size: int | str | None = None
    symmetric: bool | None = None
    act_order: bool | None = None
    damp: float | None = None
    sparsity: float | None = None
    pattern: str | None = None
    calib: CalibConfig | None = None
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    scheme: str | None = None  # compressed-tensors preset of an activation format (FP8_DYNAMIC, W8A8, NVFP4)
    smoothing: float | None = None  # w8a8: SmoothQuant migration strength
    gguf_type: str | None = None  # gguf: llama.cpp quantization type (Q4_K_M, Q8_0, ...)

    @property
    def kind(self) -> str:
        return "pruning" if family_of(self.method) == "pruning" else "quantization"

    @property
    def nm(self) -> tuple[int, int] | None:
        """(N, M) of an N:M pattern, or None for unstructured sparsity."""
        return nm_split(self.pattern) if self.pattern and self.pattern != "unstructured" else None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        return {k: v for k, v in data.items() if v is not None and v != {}}

    def key(self) -> str:
        return stable_hash(self.to_json())


def nm_split(pattern: str) -> tuple[int, int]:
    """'2:4' -> (2, 4).

    As in the Wanda paper, N:M means at most N nonzeros in every M consecutive
    weights along the input dimension.  Every pattern offered has N = M/2, so
    that is also exactly N zeros per block, llm-compressor's reading.
    """
    n, m = (int(x) for x in pattern.split(":"))
    return n, m


def make_config(method: str, **params: Any) -> CompressionConfig:
    """Validate user parameters for ``method`` and fill the defaults; one-line errors.

    What a method accepts is read from its class (``family``, ``options``,
    ``needs_calibration``; compression/methods.py), so a new method adds no rule here.
    """
    cls = compressor_class(method)
    params = {k: v for k, v in params.items() if v is not None}
    if cls.family not in PAPER_FAMILIES:
        return make_format_config(method, params)
    for name in ("smoothing", "gguf_type"):
        if name in params:
            raise ConfigError(f"--{_flag(name)} applies to {in_words(methods(option=name))} only, "
                              f"not to {method}", f"drop --{_flag(name)}")
    quant_only = ("bits", "group_size", "symmetric")
    prune_only = ("sparsity", "pattern")
    given = set(params)
    if cls.family == "quantization":
        wrong = sorted(given & set(prune_only))
        if wrong:
            raise ConfigError(f"--{wrong[0].replace('_', '-')} applies to pruning, not to {method}",
                              f"drop it, or use a pruning method ({', '.join(methods('pruning'))})")
    else:
        wrong = sorted(given & set(quant_only + ("act_order",)))
        if wrong:
            raise ConfigError(f"--{wrong[0].replace('_', '-')} applies to quantization, not to {method}",
                              f"drop it, or use a quantization method ({', '.join(methods('quantization'))})")
    for name in ("act_order", "damp"):
        if name in given and name not in cls.options:
            owners = [m for m in methods(option=name) if family_of(m) in PAPER_FAMILIES]
            raise ConfigError(f"--{_flag(name)} applies to {in_words(owners)} only, not to {method}",
                              f"drop --{_flag(name)}")
    seed = int(params.pop("seed", 0))
    calib = calib_config(method, params) if cls.needs_calibration else None
    if not cls.needs_calibration:
        stray = sorted(k for k in params if k.startswith("calib_"))
        if stray:
            raise ConfigError(f"{method} uses no calibration data, so --{stray[0].replace('_', '-')} has no effect",
                              f"drop it, or use a calibrated method ({', '.join(methods(calibrated=True))})")
        seed = 0  # nothing random happens: every seed gives the same artifact
    unknown = sorted(set(params) - set(quant_only + prune_only + ("act_order", "damp"))
                     - {k for k in params if k.startswith("calib_")})
    if unknown:
        raise ConfigError(f"unknown compression parameter {unknown[0]!r}",
                          "see 'comptrust compress --help' for the parameters")
    if cls.family == "quantization":
        bits = int(params.get("bits", 4))
        if bits not in BITS:
            raise ConfigError(f"{bits}-bit weights are not supported",
                              f"choose --bits from {', '.join(map(str, BITS))}")
        return CompressionConfig(
            method=method, bits=bits, group_size=parse_group_size(params.get("group_size", 128)),
            symmetric=bool(params.get("symmetric", True)),
            act_order=bool(params.get("act_order", False)) if "act_order" in cls.options else None,
            damp=damp_fraction(params.get("damp", 0.01)) if "damp" in cls.options else None,
            calib=calib, seed=seed)
    sparsity = float(params.get("sparsity", 0.5))
    if not 0.0 < sparsity < 1.0:
        raise ConfigError(f"sparsity {sparsity} is outside (0, 1)", "pass a fraction such as --sparsity 0.5")
    pattern = str(params.get("pattern", "unstructured"))
    if pattern not in PATTERNS:
        raise ConfigError(f"unknown sparsity pattern {pattern!r}", f"choose from: {', '.join(PATTERNS)}")
    if pattern != "unstructured":
        n, m = nm_split(pattern)
        implied = (m - n) / m
        if not math.isclose(sparsity, implied):
            raise ConfigError(f"pattern {pattern} means {implied:.0%} sparsity, not {sparsity:g}",
                              f"pass --sparsity {implied:g} or --pattern unstructured")
    return CompressionConfig(method=method, sparsity=sparsity, pattern=pattern,
                             damp=damp_fraction(params.get("damp", 0.01)) if "damp" in cls.options else None,
                             calib=calib, seed=seed)


def _flag(name: str) -> str:
    return "type" if name == "gguf_type" else name.replace("_", "-")


def damp_fraction(value: Any) -> float:
    damp = float(value)
    if not 0.0 < damp < 1.0:
        raise ConfigError(f"damping {damp} is outside (0, 1)", "pass a small fraction such as --damp 0.01")
    return damp


def parse_group_size(value: Any) -> int | str:
    """An int > 0, 'channel' (also -1 or 0) or 'auto'."""
    if isinstance(value, str) and value.lower() in ("auto", "channel"):
        return value.lower()
    try:
        size = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"group size {value!r} is not a number",
                          "pass an integer such as 128, 'channel' or 'auto'") from None
    if size in (-1, 0):
        return "channel"
    if size < 0:
        raise ConfigError(f"group size {size} is negative", "pass 128, 64, 'channel' or 'auto'")
    return size


def calib_config(method: str, params: dict[str, Any]) -> CalibConfig:
    source = str(params.get("calib_source", "builtin"))
    file = params.get("calib_file")
    if file is not None and "calib_source" not in params:
        source = "file"
    if source not in CALIB_SOURCES:
        raise ConfigError(f"unknown calibration source {source!r}", f"choose from: {', '.join(CALIB_SOURCES)}")
    if source == "file":
        if not file:
            raise ConfigError("--calib-source file needs --calib-file PATH", "pass a UTF-8 text or .jsonl file")
        path = Path(file).expanduser()
        if not path.is_file():
            raise DataError(f"calibration file {path} does not exist", "pass an existing UTF-8 text file")
        file = str(path.resolve())
    elif file is not None:
        raise ConfigError(f"--calib-file is only used with --calib-source file, not {source}",
                          "drop --calib-file or pass --calib-source file")
    samples = int(params.get("calib_samples", 128))
    seqlen = int(params.get("calib_seqlen", 512))
    if samples < 1 or seqlen < 8:
        raise ConfigError(f"calibration needs >= 1 sample of >= 8 tokens (got {samples} x {seqlen})",
                          "pass e.g. --calib-samples 128 --calib-seqlen 512")
    return CalibConfig(source=source, file=file, samples=samples, seqlen=seqlen,
                       chat_template=bool(params.get("calib_chat_template", False)))


_PAPER_OPTIONS = ("group_size", "symmetric", "act_order", "sparsity", "pattern")


def make_format_config(method: str, params: dict[str, Any]) -> CompressionConfig:
    """Validate the options of a ``format`` or ``file`` method (fp8, w8a8, nvfp4, gguf): only those its
    class's ``options`` name, besides calibration (--calib-*, --seed) where it calibrates."""
    cls = compressor_class(method)
    params = dict(params)
    allowed = cls.options
    fixed = _fixed_bits(method, params)
    for name in _PAPER_OPTIONS + ("smoothing", "damp", "gguf_type"):
        if name in params and name not in allowed:
            flag = "type" if name == "gguf_type" else name.replace("_", "-")
            raise ConfigError(f"--{flag} does not apply to {method}, whose format is fixed ({_summary(method)})",
                              f"drop --{flag}")
    calibrated = cls.needs_calibration
    stray = sorted(k for k in params if k.startswith("calib_"))
    if not calibrated and stray:
        formats = methods("format", calibrated=True)
        raise ConfigError(f"{method} uses no calibration data, so --{stray[0].replace('_', '-')} has no effect",
                          f"drop it ({in_words(formats)} {'are' if len(formats) > 1 else 'is'} the calibrated "
                          f"format{'s' if len(formats) > 1 else ''})")
    seed = int(params.pop("seed", 0)) if calibrated else 0  # nothing random happens without calibration
    calib = calib_config(method, params) if calibrated else None
    if method == "gguf":
        return CompressionConfig(method="gguf", bits=fixed, gguf_type=_gguf_type(params.get("gguf_type")))
    fmt = format_of(method)
    smoothing = None
    if "smoothing" in cls.options:
        smoothing = float(params.get("smoothing", 0.8))
        if not 0.0 <= smoothing <= 1.0:
            raise ConfigError(f"SmoothQuant strength {smoothing} is outside [0, 1]",
                              "pass e.g. --smoothing 0.8 (llm-compressor's default; 0 disables smoothing)")
    return CompressionConfig(method=method, bits=fixed, scheme=fmt.scheme, smoothing=smoothing,
                             damp=damp_fraction(params.get("damp", 0.01)) if "damp" in cls.options else None,
                             calib=calib, seed=seed)


def _summary(method: str) -> str:
    if method == "gguf":
        return "llama.cpp types, chosen with --type"
    fmt = format_of(method)
    return f"{fmt.weight_bits:g}-bit weights, {fmt.activation_bits}-bit activations"


def _fixed_bits(method: str, params: dict[str, Any]) -> int:
    """The weight bits the format implies; a ``--bits`` that disagrees is an error."""
    if method == "gguf":
        bits = gguf_weight_bits(_gguf_type(params.get("gguf_type")))
    else:
        bits = int(format_of(method).weight_bits)
    given = params.pop("bits", None)
    if given is not None and int(given) != bits:
        hint = "choose the bits with --type (e.g. Q4_K_M, Q8_0)" if method == "gguf" else "drop --bits"
        raise ConfigError(f"{method} stores {bits}-bit weights, not {given}", hint)
    return bits


def _gguf_type(value: Any) -> str:
    if value is None:
        raise ConfigError("--method gguf needs --type", f"pass one of: {', '.join(GGUF_TYPES)}")
    name = str(value).upper()
    if name not in GGUF_TYPES:
        raise ConfigError(f"unknown GGUF type {value!r}",
                          f"choose from: {', '.join(GGUF_TYPES)} (IQ1/IQ2/IQ3 types need an importance matrix)")
    return name
