"""Where comptrust keeps its caches: ``$COMPTRUST_HOME`` or the user's cache dir."""

from __future__ import annotations

import os
from pathlib import Path


def comptrust_home() -> Path:
    """Root for converted models, the generation cache and hub downloads."""
    env = os.environ.get("COMPTRUST_HOME")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "comptrust"


def cache_db_path() -> Path:
    """The SQLite generation/score cache shared by all runs."""
    return comptrust_home() / "cache.sqlite"


def models_dir() -> Path:
    """Converted models (e.g. the demo GGUF turned into safetensors)."""
    return comptrust_home() / "models"
