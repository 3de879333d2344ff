"""The compression methods, read from their classes: a method is one file and one registry line.

Each :class:`~comptrust.compression.base.Compressor` subclass declares its family,
label, options and whether it calibrates; every list of methods (the CLI's help,
the config validator, report labels, sweep sizes) is computed here from those
attributes and ``registry.COMPRESSORS``, so none is typed twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from comptrust import registry

if TYPE_CHECKING:
    from comptrust.compression.base import Compressor
    from comptrust.compression.formats import Format

# What a family's methods take and write (a Compressor's ``family``):
FAMILIES = ("quantization",  # weight-only integers with --bits / --group-size (the paper's)
            "pruning",  # --sparsity / --pattern; saved dense
            "format",  # weights and activations in a format fixed by its runtime (the class's ``format``)
            "file")  # writes a llama.cpp file, not a Hugging Face folder
PAPER_FAMILIES = ("quantization", "pruning")


def compressor_class(method: str) -> type[Compressor]:
    """The class registered for ``method``; ConfigError naming the valid ones otherwise."""
    return registry.get_class(registry.COMPRESSORS, method, "compression method")


def methods(family: str | None = None, *, calibrated: bool | None = None,
            option: str | None = None) -> tuple[str, ...]:
    """Registered methods in registry order: all, one ``family``'s, the ``calibrated`` ones, those taking ``option``."""
    out = []
    for name, cls in registry.classes(registry.COMPRESSORS).items():
        if family is not None and cls.family != family:
            continue
        if calibrated is not None and cls.needs_calibration != calibrated:
            continue
        if option is not None and option not in cls.options:
            continue
        out.append(name)
    return tuple(out)


def family_of(method: str) -> str:
    return compressor_class(method).family


def format_of(method: str) -> Format:
    """The fixed format of a ``format``-family method (its bits, scales and runtime)."""
    fmt = compressor_class(method).format
    assert fmt is not None, f"{method} declares no format"
    return fmt


def in_words(names: tuple[str, ...] | list[str]) -> str:
    """``("a", "b", "c")`` -> ``"a, b and c"``, for messages that name methods."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
