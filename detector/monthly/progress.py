"""Progress bars on stderr for a run started from a terminal."""

from __future__ import annotations


class TerminalBars:
    """A rich progress display on stderr (`bar`, set by subclasses when enabled), or nothing; a
    context manager that starts and stops it."""

    bar = None

    def __enter__(self):
        if self.bar:
            self.bar.start()
        return self

    def __exit__(self, *exc):
        if self.bar:
            self.bar.stop()


class Progress(TerminalBars):
    """rich progress bars on stderr for the monthly job's steps, or nothing."""

    def __init__(self, enabled: bool):
        self.bar = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

            self.bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                MofNCompleteColumn(), console=Console(stderr=True), transient=True)

    def task(self, description: str, total: int | None):
        return self.bar.add_task(description, total=total) if self.bar else None

    def advance(self, task, description: str | None = None) -> None:
        if self.bar and task is not None:
            self.bar.update(task, advance=1, **({"description": description} if description else {}))
