"""Reports: dense vs compressed tables, bootstrap deltas, figures, findings (HTML, Markdown, CSV, JSON)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

DEFAULT_BOOTSTRAP = 300  # resamples per perspective; docs/reports.md has the timings


def write_report(run_dirs: list[Path], out_dir: Path, **kwargs: Any) -> dict[str, Path]:
    """See :func:`comptrust.report.build.write_report` (imported lazily: it pulls in matplotlib)."""
    from comptrust.report.build import write_report as _write

    return _write(run_dirs, out_dir, **kwargs)
