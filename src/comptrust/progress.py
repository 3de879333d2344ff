"""Progress bars on stderr (rich), silent under ``--quiet`` or when nothing is a terminal."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any


class Progress:
    """A thin wrapper so the runner never depends on rich directly."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self._progress: Any = None
        self._totals: dict[Any, int] = {}

    def __enter__(self) -> Progress:
        if not self.quiet:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._progress = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                          TimeElapsedColumn(), console=Console(stderr=True), transient=False)
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def task(self, description: str, total: int, completed: int = 0) -> int | None:
        if self._progress is None:
            return None
        task = self._progress.add_task(description, total=total, completed=completed)
        self._totals[task] = total
        return task

    def advance(self, task: int | None, amount: int = 1) -> None:
        if self._progress is not None and task is not None:
            self._progress.advance(task, amount)

    def done(self, task: int | None) -> None:
        if self._progress is not None and task is not None:
            self._progress.update(task, completed=self._totals.get(task, 0))

    def status(self, message: str) -> AbstractContextManager[Any]:
        if self._progress is None:
            return nullcontext()
        self._progress.console.print(message, highlight=False)
        return nullcontext()
