"""Option bundles the command lines share (`detector ...` and `python -m pipelines.monthly`), so that a
flag means the same everywhere and its default is the library's own."""

from __future__ import annotations

from pathlib import Path

import click

from detector.ingest.sources import inbox_titles
from detector.monthly.readiness import WINDOW_MONTHS
from detector.warehouse import default_path


def bundle(*options):
    """One decorator applying several click options in the order given."""

    def apply(command):
        for option in reversed(options):
            command = option(command)
        return command

    return apply


db_option = click.option("--db", default=default_path, show_default="$DETECTOR_DB or ./detector.duckdb",
                          help="Warehouse file (DuckDB).")
debug_option = click.option("--debug", is_flag=True, help="Show tracebacks on errors.")


def window_options(start_help: str, end_help: str):
    """--from/--to YYYY-MM, as `start` and `end`."""
    return bundle(click.option("--from", "start", metavar="YYYY-MM", help=start_help),
                  click.option("--to", "end", metavar="YYYY-MM", help=end_help))


def detector_option(default_help: str = ""):
    """--detector NAME (repeatable), as `names`."""
    return click.option("--detector", "names", multiple=True,
                        help=f"Run only this detector (repeatable{default_help}).")


# The monthly job's own options, the same in `detector monthly` and `python -m pipelines.monthly`.
monthly_options = bundle(
    click.option("--inbox", required=True, type=click.Path(file_okay=False, path_type=Path),
                 help=f"Folder the published files arrive in ({inbox_titles()})."),
    click.option("--out", default="out", show_default=True, type=click.Path(file_okay=False, path_type=Path),
                 help="Folder for the Parquet partitions and reports/."),
    click.option("--month", metavar="YYYY-MM", help="Month to report (default: the latest month ready)."),
    click.option("--window-months", default=WINDOW_MONTHS, show_default=True, type=click.IntRange(2, 120),
                 help="Months re-scored, ending at the month."),
    detector_option("; default: all"),
    click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
                 help="One line per step: text, or one JSON object per line."),
    click.option("--fail-on-high", is_flag=True, help="Exit 3 when high-severity new leads are found."),
    click.option("--no-learning", is_flag=True,
                 help="Keep the lead score's family weights at their defaults (do not learn from analysts' verdicts)."),
)
