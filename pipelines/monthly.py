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

import detector
from detector.monthly.shell import run_and_exit_code
from detector.options import db_option, debug_option, monthly_options


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@db_option
@monthly_options
@click.option("--config", type=click.Path(dir_okay=False, exists=True), help="Settings file (TOML).")
@debug_option
def main(db, inbox, out, month, window_months, names, log_format, fail_on_high, no_learning, config, debug):
    """Load new files from the inbox, score the rolling window, write Parquet and the month's report."""
    from detector.errors import DetectorError

    try:
        settings = detector.read_settings(config)
    except DetectorError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(run_and_exit_code(db, inbox, out, month=month, settings=settings, log_format=log_format,
                               fail_on_high=fail_on_high, window_months=window_months, detectors=list(names) or None,
                               debug=debug, learning=not no_learning))


if __name__ == "__main__":
    main(prog_name="python -m pipelines.monthly")
