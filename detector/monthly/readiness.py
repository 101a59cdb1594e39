"""Which month to report (the latest that enough reporters have published) and the window to re-score."""

from __future__ import annotations

import datetime as dt

from detector.errors import DetectorError
from detector.months import Window, months_ahead, months_back
from detector.warehouse import Warehouse

WINDOW_MONTHS = 12  # months re-scored on every run, ending at the run's month
REPORTING_SHARE = 0.5  # a month is ready once this share of last year's reporters published it
REPORTING_LOOKBACK = 12

READY_MONTHS_SQL = """
WITH published AS (
    SELECT period, count(DISTINCT reporter) AS reporters
    FROM reporting WHERE freq = 'M' GROUP BY period
),
expected AS (
    SELECT p.period, p.reporters,
           (SELECT count(DISTINCT r.reporter) FROM reporting r
            WHERE r.freq = 'M' AND r.period >= p.period - INTERVAL {lookback} MONTH
              AND r.period < p.period) AS seen
    FROM published p
)
SELECT period, reporters, seen FROM expected ORDER BY period
"""


def ready_month(wh: Warehouse, share: float = REPORTING_SHARE) -> dt.date:
    """The latest month that at least `share` of the reporters of the 12 months before it published."""
    rows = wh.con.execute(READY_MONTHS_SQL.format(lookback=int(REPORTING_LOOKBACK))).fetchall()
    ready = [period for period, reporters, seen in rows if reporters >= share * seen]
    if not ready:
        raise DetectorError(f"{wh.path}: no monthly data loaded yet; put the monthly files in the inbox")
    return ready[-1]


def month_window(wh: Warehouse, month: dt.date, months: int = WINDOW_MONTHS) -> Window:
    """The `months` months ending at `month`, starting no earlier than a year after the first data."""
    # imported here: the command lines read this module's defaults without loading the runner
    from detector.runner import MIN_HISTORY_MONTHS

    first, last = wh.con.execute("SELECT min(period), max(period) FROM flows WHERE freq = 'M'").fetchone()
    if first is None:
        raise DetectorError(f"{wh.path}: no monthly flows loaded yet; put the monthly files in the inbox")
    if month > last:
        raise DetectorError(f"month {month:%Y-%m}: no data loaded for it (latest month loaded: {last:%Y-%m})")
    earliest = months_ahead(first, MIN_HISTORY_MONTHS)
    if month < earliest:
        raise DetectorError(
            f"month {month:%Y-%m}: needs {MIN_HISTORY_MONTHS} months of history before it "
            f"(data starts {first:%Y-%m}; first month that can be scored: {earliest:%Y-%m})")
    return Window(max(months_back(month, max(int(months), 2) - 1), earliest), month)
