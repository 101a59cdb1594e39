"""Staging the run's Parquet partitions and reports in a hidden folder inside OUT, then swapping them
into place by renames once the run has committed."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

from detector.export import DATASETS as EXPORTED
from detector.export import export_parquet
from detector.monthly.lifecycle import STATUS_ORDER_SQL
from detector.monthly.report import write_reports
from detector.months import Window, months_ahead, months_between
from detector.warehouse import Warehouse

STAGING_PREFIX = ".monthly-staging-"
# What a run publishes: every dataset `detector export` writes (declaration_scores included), and lead_status.
DATASETS = (*EXPORTED, "lead_status")


def _sql_path(path: Path) -> str:
    return "'" + path.as_posix().replace("'", "''") + "'"


def stage(con_wh: Warehouse, staging: Path, window: Window, month: dt.date, charts: int = 10) -> dict:
    """Write the window's Parquet partitions, the month's lead_status partition and the reports."""
    periods = [months_ahead(window.start, k) for k in range(months_between(window.start, window.end) + 1)]
    written = export_parquet(con_wh, staging, periods=periods)
    status_rows = con_wh.con.execute("SELECT count(*) FROM lead_status WHERE period = ?", [month]).fetchone()[0]
    if status_rows:
        con_wh.con.execute(
            f"""COPY (SELECT * FROM lead_status WHERE period = DATE '{month.isoformat()}'
                      ORDER BY {STATUS_ORDER_SQL})
                TO {_sql_path(staging / 'lead_status')} (FORMAT parquet, PARTITION_BY (period), COMPRESSION zstd)""")
    written["lead_status"] = {"rows": int(status_rows), "partitions": 1 if status_rows else 0}
    written["reports"] = write_reports(con_wh, month, staging / "reports", charts=charts)
    written["periods"] = [d.isoformat() for d in periods]
    return written


def publish(staging: Path, out: Path, periods: list[str], month: dt.date) -> None:
    """Swap the staged partitions and reports into OUT (renames within one filesystem)."""
    aside = staging / "replaced"
    aside.mkdir(exist_ok=True)
    for name in DATASETS:
        wanted = periods if name != "lead_status" else [month.isoformat()]
        (out / name).mkdir(exist_ok=True)
        for period in wanted:
            part = f"period={period}"
            new, old = staging / name / part, out / name / part
            if old.exists():
                old.rename(aside / f"{name}-{part}")
            if new.exists():
                new.rename(old)
    (out / "reports").mkdir(exist_ok=True)
    for report in sorted((staging / "reports").iterdir()):
        os.replace(report, out / "reports" / report.name)


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
