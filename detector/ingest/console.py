"""What `detector ingest` shows on the terminal: progress for a long batch, and a line per file or
a compact table for many files."""

from __future__ import annotations

from pathlib import Path

import click

from detector.monthly.progress import TerminalBars

# More files than this: a compact table instead of one line per file.
MANY_FILES = 20


def print_summaries(summaries, quiet: bool = False, seconds: float | None = None) -> None:
    """One line per file (with its reject reasons), or a compact table for many files; `quiet`:
    the refused files and the total line only."""
    refused = [s for s in summaries if s.status == "refused"]
    if not quiet and len(summaries) <= MANY_FILES:
        for s in summaries:
            click.echo(s.line())
            for reason, n in sorted(s.reasons.items(), key=lambda kv: -kv[1])[:8]:
                click.echo(f"    rejected {n:,}: {reason}")
    elif not quiet:
        loaded = [s for s in summaries if s.status == "loaded"]
        rejecting = sorted((s for s in loaded if s.rows_rejected), key=lambda s: -s.rows_rejected)
        reasons: dict[str, int] = {}
        for s in loaded:
            for reason, n in s.reasons.items():
                reasons[reason] = reasons.get(reason, 0) + n
        click.echo(f"{'status':<10} {'files':>7} {'read':>12} {'loaded':>12} {'replaced':>10} {'rejected':>10}")
        for status in ("loaded", "skipped", "refused"):
            group = [s for s in summaries if s.status == status]
            if group:
                click.echo(f"{status:<10} {len(group):>7,} {sum(s.rows_read for s in group):>12,} "
                           f"{sum(s.rows_loaded for s in group):>12,} {sum(s.rows_replaced for s in group):>10,} "
                           f"{sum(s.rows_rejected for s in group):>10,}")
        for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:8]:
            click.echo(f"    rejected {n:,}: {reason}")
        if rejecting:
            shown = ", ".join(f"{Path(s.file).name} ({s.rows_rejected:,})" for s in rejecting[:5])
            more = f" and {len(rejecting) - 5} more" if len(rejecting) > 5 else ""
            click.echo(f"files with rejected rows: {shown}{more}")
    for s in refused if (quiet or len(summaries) > MANY_FILES) else []:
        click.echo(s.line())
    if seconds is not None and (quiet or len(summaries) > 1):
        n = {k: sum(s.status == k for s in summaries) for k in ("loaded", "skipped", "refused")}
        loaded_rows = sum(s.rows_loaded + s.rows_replaced for s in summaries)
        read = sum(s.rows_read for s in summaries)
        click.echo(f"{len(summaries):,} files: {n['loaded']:,} loaded, {n['skipped']:,} skipped (already loaded), "
                   f"{n['refused']:,} refused; rows read {read:,}, loaded {loaded_rows:,}, rejected "
                   f"{sum(s.rows_rejected for s in summaries):,} in {seconds:.1f}s ({read / max(seconds, 1e-9):,.0f} rows/s)")


class IngestProgress(TerminalBars):
    """Files done, rows and rate on stderr (rich) for a batch loaded from a terminal; else nothing."""

    def __init__(self, total: int, enabled: bool):
        self.bar = self.task = None
        self.rows = 0
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("loading"), BarColumn(), MofNCompleteColumn(), TextColumn("files"),
                                TextColumn("{task.fields[rows]:,} rows, {task.fields[rate]:,.0f} rows/s"),
                                TimeElapsedColumn(), console=Console(stderr=True), transient=True)
            self.task = self.bar.add_task("loading", total=total, rows=0, rate=0.0)

    def __call__(self, summary) -> None:
        if self.bar:
            self.rows += summary.rows_read
            elapsed = self.bar.tasks[0].elapsed or 1e-9
            self.bar.update(self.task, advance=1, rows=self.rows, rate=self.rows / elapsed)


def print_file_lines(result: dict) -> None:
    for item in result["files"]:
        click.echo(item["line"])
        for reason, n in sorted(item["reasons"].items(), key=lambda kv: -kv[1])[:8]:
            click.echo(f"    rejected {n:,}: {reason}")
