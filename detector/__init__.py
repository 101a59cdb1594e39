"""Detect strategic minerals crossing borders by a detour or under a false declaration.

The library in four calls; the command line is a shell around the same calls:

    import detector

    with detector.open("trade.duckdb") as wh:            # the warehouse file, created if missing
        detector.load(wh, "comtrade", ["comtrade.csv"])  # a source of detector.ingest.sources
        detector.run(wh)                                  # every detector over every month it can score
        leads = detector.leads(wh, top=10)                # a Polars frame, most suspicious first

Each call imports what it needs when it is made, so that `import detector` stays quick.
"""

from __future__ import annotations

import os

__version__ = "0.1.0"


def open(path: str | os.PathLike | None = None, read_only: bool = False, memory_limit: str | None = None):
    """The warehouse at `path` (default: $DETECTOR_DB, else ./detector.duckdb), created if missing.
    Use it as a context manager, or close() it."""
    from detector.warehouse import Warehouse

    return Warehouse.open(path, read_only=read_only, memory_limit=memory_limit)


def load(wh, source: str, paths, **options) -> list:
    """Load files of one source (comtrade, baci, census, comext, or flows with mapping_path=) into the
    warehouse, each file whole or not at all (consecutive files of one header in one transaction per
    group); one LoadSummary per file. `options` are the
    source's own (comext: rates=, baci: country_codes=)."""
    from detector.ingest.sources import get

    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    return get(source).load(wh, paths, **options)


def run(wh, start: str | None = None, end: str | None = None, detectors: list[str] | None = None,
        config=None, all_codes: bool = False, workers: int = 0, engine: str = "duckdb",
        spark_master: str | None = None, flows_path: str | None = None, learning: bool = True):
    """Run the detectors over the months start..end (YYYY-MM; default: every month with a year of
    history before it, up to the latest loaded) and store their alerts; returns the RunResult.
    `config`: a settings TOML file, or a Settings object. `workers` / `engine="spark"`: where the
    corridor detectors run (same alerts; docs/engines.md). `learning=False`: the lead score's
    family weights stay at their defaults instead of learning from analysts' verdicts."""
    from detector.runner import run_detectors

    return run_detectors(wh, window(wh, start, end), list(detectors) if detectors else None,
                         read_settings(config), all_codes=all_codes, workers=workers, engine=engine,
                         spark_master=spark_master, flows_path=flows_path, learning=learning)


def leads(wh, period: str | None = None, start: str | None = None, end: str | None = None,
          top: int | None = None, commodity: str | None = None, destination: str | None = None):
    """The ranked leads as a Polars frame, most suspicious first (`rank` 1): one row per lead with
    its route, score, severity, detectors, explanation and its alerts for drill-down."""
    from detector.reports.leads import ranked_leads

    return ranked_leads(wh, period=period, start=start, end=end, top=top, commodity=commodity,
                        destination=destination)


def read_settings(config=None):
    """The detectors' settings: their defaults, overridden by a TOML file when `config` names one."""
    from detector.settings import Settings

    if isinstance(config, Settings):
        return config
    from detector.detectors import registry
    from detector.settings import load_settings

    return load_settings(config, registry.all_detectors())


def window(wh, start: str | None = None, end: str | None = None):
    """The months to score: start..end (YYYY-MM), a missing end taken from the default window (every
    month with a year of history, up to the latest loaded); None when neither is given (the run's
    default)."""
    if not start and not end:
        return None
    from detector.months import Window, parse_month

    if start and end:
        return Window(parse_month(start, "--from"), parse_month(end, "--to"))
    from detector.runner import default_window

    default = default_window(wh)
    return Window(parse_month(start, "--from") if start else default.start,
                  parse_month(end, "--to") if end else default.end)
