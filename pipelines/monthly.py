"""Monthly batch entry point for schedulers (cron, Airflow, Dagster): a thin shell around
`detector.monthly.run_monthly`. See docs/monthly.md.

    python -m pipelines.monthly --db detector.duckdb --inbox inbox/ --out out/ [--month 2025-03]
        [--log-format text|json] [--fail-on-high]

Exit codes: 0 done; 1 error (nothing half-done is kept); 2 bad command line; 3 with
--fail-on-high, the run completed and found high-severity new leads.
"""

from __future__ import annotations

import sys

import click

from detector.monthly.readiness import WINDOW_MONTHS
from detector.monthly.shell import run_and_exit_code
from detector.warehouse import default_path


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", default=default_path, show_default="$DETECTOR_DB or ./detector.duckdb",
              help="Warehouse file (DuckDB).")
@click.option("--inbox", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Folder the published files arrive in (Comtrade, BACI, Census, Comext).")
@click.option("--out", default="out", show_default=True, type=click.Path(file_okay=False, path_type=str),
              help="Folder for the Parquet partitions and reports/.")
@click.option("--month", metavar="YYYY-MM", help="Month to report (default: the latest month ready).")
@click.option("--window-months", default=WINDOW_MONTHS, show_default=True, type=click.IntRange(2, 120),
              help="Months re-scored, ending at the month.")
@click.option("--config", type=click.Path(dir_okay=False, exists=True), help="Settings file (TOML).")
@click.option("--detector", "names", multiple=True, help="Run only this detector (repeatable; default: all).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="One line per step: text, or one JSON object per line.")
@click.option("--fail-on-high", is_flag=True, help="Exit 3 when high-severity new leads are found.")
@click.option("--no-learning", is_flag=True,
              help="Keep the lead score's family weights at their defaults (do not learn from analysts' verdicts).")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
def main(db, inbox, out, month, window_months, config, names, log_format, fail_on_high, no_learning, debug):
    """Load new files from the inbox, score the rolling window, write Parquet and the month's report."""
    from detector.detectors import registry
    from detector.errors import DetectorError
    from detector.settings import load_settings

    try:
        settings = load_settings(config, registry.all_detectors())
    except DetectorError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(run_and_exit_code(db, inbox, out, month=month, settings=settings, log_format=log_format,
                               fail_on_high=fail_on_high, window_months=window_months, detectors=list(names) or None,
                               debug=debug, learning=not no_learning))


if __name__ == "__main__":
    main(prog_name="python -m pipelines.monthly")
