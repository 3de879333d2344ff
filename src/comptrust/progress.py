"""Progress bars on stderr (rich), silent under ``--quiet``; without a terminal only the final state prints.

Libraries comptrust calls draw their own tqdm bars (transformers' GGUF dequantization,
compressed-tensors' "Compressing model" / "Decompressing model" / "Applying quantization
config", "Dispatching model").  :func:`route_library_bars` (installed by the CLI) makes
every tqdm bar a row of comptrust's display while one is open on a terminal, removed when it
finishes, and silent otherwise: the user sees one progress display, not two fighting over the line.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any, ClassVar


class Progress:
    """A thin wrapper so the runner never depends on rich directly.

    While a non-quiet instance is open it is the display that library bars are routed into.
    Nothing is drawn until the first row is added, so a display that never gets one (a model
    load without library bars) leaves no trace on the console.
    """

    active: ClassVar[Progress | None] = None

    def __init__(self, quiet: bool = False, console: Any = None) -> None:
        self.quiet = quiet
        self._console = console  # tests pass a Console; by default rich's on stderr
        self._progress: Any = None
        self._started = False
        self._totals: dict[Any, int] = {}

    def __enter__(self) -> Progress:
        if not self.quiet:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._progress = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                          TimeElapsedColumn(), console=self._console or Console(stderr=True),
                                          transient=False)
            Progress.active = self
        return self

    def __exit__(self, *exc: object) -> None:
        if Progress.active is self:
            Progress.active = None
        if self._started:
            self._progress.stop()
            self._started = False

    @property
    def live(self) -> bool:
        """Whether rows are drawn as they change (a terminal); elsewhere only the final state is printed."""
        return self._progress is not None and bool(self._progress.console.is_terminal)

    def task(self, description: str, total: int | None, completed: int = 0) -> int | None:
        if self._progress is None:
            return None
        if not self._started:
            self._progress.start()
            self._started = True
        task = self._progress.add_task(description, total=total, completed=completed)
        self._totals[task] = total or 0
        return task

    def advance(self, task: int | None, amount: float = 1) -> None:
        if self._progress is not None and task is not None:
            self._progress.advance(task, amount)

    def done(self, task: int | None) -> None:
        if self._progress is not None and task is not None:
            self._progress.update(task, completed=self._totals.get(task, 0))

    def remove(self, task: int | None) -> None:
        """Drop a row (a finished library step) from the display."""
        if self._progress is not None and task is not None:
            try:
                self._progress.remove_task(task)
            except KeyError:  # already removed
                pass

    def status(self, message: str) -> AbstractContextManager[Any]:
        if self._progress is None:
            return nullcontext()
        self._progress.console.print(message, highlight=False)
        return nullcontext()


_DISABLE_POSITION = 10  # ``disable`` is tqdm.__init__'s 11th positional parameter


def route_library_bars() -> None:
    """Route every tqdm bar into comptrust's open :class:`Progress` display, or silence it.

    tqdm itself always runs disabled (it never writes to the terminal); a bar its caller
    wanted shown becomes an indented row of the open display, advanced as tqdm would
    advance, and removed when it closes or its iterable is exhausted.  Idempotent.
    """
    from tqdm import std

    cls = std.tqdm
    if getattr(cls, "_comptrust_routed", False):
        return
    original_init, original_iter = cls.__init__, cls.__iter__
    original_update, original_close = cls.update, cls.close

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807 - replaces tqdm's
        args = list(args)
        if len(args) > _DISABLE_POSITION:
            wanted = not args[_DISABLE_POSITION]
            args[_DISABLE_POSITION] = True
        else:
            wanted = not kwargs.get("disable", False)
            kwargs["disable"] = True
        self._comptrust_row = None
        original_init(self, *args, **kwargs)
        display = Progress.active
        if wanted and display is not None and display.live:  # a log file gets no transient rows
            from rich.markup import escape

            desc = kwargs.get("desc", args[1] if len(args) > 1 else None) or "working"
            total = self.total if isinstance(self.total, int | float) else None
            self._comptrust_row = (display, display.task(f"  {escape(str(desc).rstrip('. '))}", total,
                                                         completed=int(self.n or 0)))

    def __iter__(self: Any) -> Iterator[Any]:  # noqa: N807
        row = getattr(self, "_comptrust_row", None)
        if row is None:
            yield from original_iter(self)
            return
        display, task = row
        for item in original_iter(self):
            yield item
            display.advance(task)
        self.close()

    def update(self: Any, n: float = 1) -> Any:
        row = getattr(self, "_comptrust_row", None)
        if row is not None:
            row[0].advance(row[1], n)
        return original_update(self, n)

    def close(self: Any) -> Any:
        row = getattr(self, "_comptrust_row", None)
        if row is not None:
            self._comptrust_row = None
            row[0].remove(row[1])
        return original_close(self)

    cls.__init__, cls.__iter__, cls.update, cls.close = __init__, __iter__, update, close  # type: ignore[method-assign]
    cls._comptrust_routed = True  # type: ignore[attr-defined]
