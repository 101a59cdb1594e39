"""Hive-partitioned Parquet for BI tools: OUT/alerts/, OUT/flows/, OUT/series/, OUT/declaration_scores/,
OUT/verdicts/ (docs/parquet.md).

Each dataset is split by month into `period=YYYY-MM-01/` folders, the `period` column living in
the folder name only, the layout DuckDB's `PARTITION_BY` writes. An export first writes
everything into a hidden folder inside OUT, then swaps each rewritten partition into place by
renaming, so a reader never sees a half-written partition and no stale file is left behind.
Partitions of months not being exported are not touched.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterable
from pathlib import Path

from detector.errors import DetectorError
from detector.leftovers import owned_name, remove_left_behind
from detector.months import parse_month
from detector.reports.leads import ALERT_COLUMNS, LEAD_COLUMNS, finish_pending
from detector.robust import mad_sql, robust_z_sql

DATASETS = ("alerts", "flows", "series", "declaration_scores", "verdicts")
SERIES_KEYS = ["source", "reporter", "partner", "flow", "hs_code"]
WORK_PREFIX = ".tmp-"  # a hidden work folder inside OUT
MIN_BASELINE_MONTHS = 6  # fewer trailing months than this: no robust z


def trailing_baseline_sql(table: str, keys: list[str], min_months: int = MIN_BASELINE_MONTHS) -> str:
    """Trailing 12-month median and MAD of `log_value` per series, without look-ahead.

    `table` has the `keys`, `period` (DATE, one row per series and month) and `log_value`.
    The window covers months t-12..t-1: the current month never enters its own baseline.
    Adds baseline_months, median_log_value, mad_log_value and robust_z (`detector.robust`, NULL
    when the baseline is short or flat: a published figure, not floored).
    """
    by = ", ".join(keys)
    return f"""
    WITH history AS (
        SELECT *,
               list_filter(list(log_value) OVER (
                   PARTITION BY {by} ORDER BY period
                   RANGE BETWEEN INTERVAL 12 MONTH PRECEDING AND INTERVAL 1 MONTH PRECEDING),
                   lambda x: x IS NOT NULL) AS _hist
        FROM {table}
    ),
    centred AS (
        SELECT *, list_median(_hist) AS median_log_value FROM history
    ),
    spread AS (
        SELECT *,
               CAST(coalesce(len(_hist), 0) AS INTEGER) AS baseline_months,
               {mad_sql("_hist", "median_log_value")} AS mad_log_value
        FROM centred
    )
    SELECT * EXCLUDE (_hist, baseline_months, median_log_value, mad_log_value),
           baseline_months,
           CASE WHEN baseline_months > 0 THEN median_log_value END AS median_log_value,
           CASE WHEN baseline_months > 0 THEN mad_log_value END AS mad_log_value,
           CASE WHEN baseline_months >= {int(min_months)}
                THEN {robust_z_sql("log_value", "median_log_value", "mad_log_value", floor=0.0)} END AS robust_z
    FROM spread
    """


def _series_sql() -> str:
    """Monthly series per (source, reporter, partner, flow, hs_code) with their baselines."""
    return f"""
    WITH monthly AS (
        SELECT source, reporter, partner, flow, hs_code, period,
               sum(value_usd) AS value_usd, sum(net_weight_kg) AS net_weight_kg
        FROM flows
        WHERE freq = 'M' AND value_usd IS NOT NULL
        GROUP BY source, reporter, partner, flow, hs_code, period
    ),
    logged AS (
        SELECT *, CASE WHEN value_usd > 0 THEN ln(value_usd) END AS log_value FROM monthly
    ),
    stats AS ({trailing_baseline_sql("logged", SERIES_KEYS)})
    SELECT period, source, reporter, partner, flow, hs_code, value_usd, net_weight_kg,
           log_value, baseline_months, median_log_value, mad_log_value,
           exp(median_log_value) AS baseline_median_usd, robust_z
    FROM stats
    """


def _dataset_sql(name: str) -> str:
    if name == "alerts":
        cols = ", ".join(ALERT_COLUMNS + LEAD_COLUMNS)
        return f"SELECT {cols} FROM alerts"
    if name == "flows":
        return ("SELECT period, source, freq, reporter, partner, partner2, flow, hs_code, hs_revision, "
                "value_usd, net_weight_kg, quantity, quantity_unit, load_id FROM flows")
    if name == "declaration_scores":
        return "SELECT period, source, declaration_id, score, rank, reasons, run_id FROM declaration_scores"
    if name == "verdicts":  # by the month of the lead's last flagged month when the verdict was given
        from detector.verdicts import COLUMNS

        return f"SELECT last_seen AS period, {', '.join(COLUMNS)} FROM verdicts"
    return _series_sql()


ORDER = {
    "alerts": "period, lead_rank NULLS LAST, score DESC, alert_id",
    "flows": "period, reporter, flow, partner, hs_code, source",
    "series": "period, reporter, flow, partner, hs_code, source",
    "declaration_scores": "period, rank, source, declaration_id",
    "verdicts": "period, reviewed_at, verdict_id",
}


def safe_out_dir(out_dir) -> Path:
    """The export folder, created if missing; refuses a file, the filesystem root and home."""
    if out_dir is None or str(out_dir).strip() == "":
        raise DetectorError("export: give an output folder (--out DIR)")
    out = Path(out_dir).expanduser().resolve()
    if out == Path(out.anchor):
        raise DetectorError(f"{out}: refusing to export into the filesystem root; give a dedicated folder")
    if out == Path.home().resolve():
        raise DetectorError(f"{out}: refusing to export into the home directory; give a dedicated folder")
    if out.exists() and not out.is_dir():
        raise DetectorError(f"{out}: is a file, not a folder; give a folder for the Parquet output")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _wanted_periods(con, periods: Iterable | None) -> list[dt.date]:
    if periods is not None:
        if isinstance(periods, str | dt.date):
            periods = [periods]
        return sorted({parse_month(p) for p in periods})
    rows = con.sql("SELECT DISTINCT period FROM alerts UNION SELECT DISTINCT period FROM flows "
                   "UNION SELECT DISTINCT period FROM declaration_scores "
                   "UNION SELECT DISTINCT last_seen FROM verdicts WHERE last_seen IS NOT NULL ORDER BY 1").fetchall()
    return [r[0] for r in rows]


def export_parquet(wh, out_dir, periods=None) -> dict:
    """Write OUT/{alerts,flows,series}/period=YYYY-MM-01/ for `periods` (default: every month).

    Returns {"out_dir", "periods", and per dataset {"rows", "partitions"}}. A month asked for
    that has no rows left in a dataset loses its old partition there (it would be stale).
    """
    out = safe_out_dir(out_dir)
    con = wh.con
    finish_pending(con)
    wanted = _wanted_periods(con, periods)
    result: dict = {"out_dir": str(out), "periods": [p.isoformat() for p in wanted]}
    remove_left_behind(out, WORK_PREFIX)  # hidden work folders of exports that died
    tmp = out / owned_name(WORK_PREFIX)
    tmp.mkdir()
    try:
        in_list = ", ".join(f"DATE '{p.isoformat()}'" for p in wanted) or "NULL"
        for name in DATASETS:
            query = (f"SELECT * FROM ({_dataset_sql(name)}) WHERE period IN ({in_list}) "
                     f"ORDER BY {ORDER[name]}")
            # COPY answers with the number of rows it wrote; a dataset without rows writes no folder
            rows = con.execute(f"COPY ({query}) TO ? (FORMAT parquet, PARTITION_BY (period), COMPRESSION zstd)",
                               [(tmp / name).as_posix()]).fetchall()[0][0]
            result[name] = {"rows": int(rows), "partitions": 0}
        aside = tmp / "replaced"
        aside.mkdir()
        for name in DATASETS:
            target_root = out / name
            target_root.mkdir(exist_ok=True)
            for p in wanted:
                part = f"period={p.isoformat()}"
                new, old = tmp / name / part, target_root / part
                if old.exists():
                    old.rename(aside / f"{name}-{part}")
                if new.exists():
                    new.rename(old)
                    result[name]["partitions"] += 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result
