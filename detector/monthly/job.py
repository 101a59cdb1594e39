"""The whole monthly job in one call (the steps are described in `detector.monthly`)."""

from __future__ import annotations

import shutil
import time
from itertools import groupby
from pathlib import Path

from detector.export import safe_out_dir
from detector.ingest.common import reporting_progress
from detector.leftovers import owned_name, remove_left_behind
from detector.monthly.inbox import load_files_of, scan_inbox
from detector.monthly.lifecycle import write_lead_status
from detector.monthly.log import Log
from detector.monthly.progress import Progress
from detector.monthly.publish import DATASETS, STAGING_PREFIX, publish, stage, write_json_atomic
from detector.monthly.readiness import WINDOW_MONTHS, month_window, ready_month
from detector.months import parse_month
from detector.runner import run_detectors
from detector.settings import Settings
from detector.warehouse import Warehouse


def run_monthly(db, inbox, out, month=None, settings: Settings | None = None, log: Log | None = None,
                window_months: int = WINDOW_MONTHS, detectors: list[str] | None = None,
                progress: bool = False, charts: int = 10, learning: bool = True) -> dict:
    """Load the inbox, score the window ending at `month` (default: the latest month ready), publish.

    `log(event)` gets one dict per step ({"step", "seconds", counts..., "message"}). Returns a
    summary: run_id, month, window, files, alerts, leads {new, continuing, closed, dismissed, watched,
    awaiting_review (the month's new or continuing leads without a verdict)}, high_new
    (high-severity new leads), reports, out. Raises DetectorError on bad input. `charts`: top
    leads drawn in the HTML report; `progress`: rich progress bars on stderr; `learning`: weight the
    lead score's evidence families by the analysts' verdicts (`detector.verdicts`).
    """
    log = log or (lambda event: None)
    started = time.perf_counter()
    out_dir = safe_out_dir(out)
    remove_left_behind(out_dir, STAGING_PREFIX)  # staging folders of runs that were killed

    def emit(step: str, t0: float, **fields) -> None:
        log({"step": step, "seconds": round(time.perf_counter() - t0, 3), **fields})

    t0 = time.perf_counter()
    items = scan_inbox(inbox)
    for item in items:
        if item.kind == "unknown":
            emit("scan", t0, level="warning", file=str(item.path), message=f"refused, not loaded: {item.note}")
    loadable = [i for i in items if i.kind not in ("companion", "unknown")]
    emit("scan", t0, files=len(items), loadable=len(loadable),
         unknown=sum(i.kind == "unknown" for i in items))

    with Warehouse.open(db) as wh, Progress(progress) as bars:
        t0 = time.perf_counter()
        files, totals = [], {"loaded": 0, "skipped": 0, "rows_loaded": 0, "rows_replaced": 0, "rows_rejected": 0}
        task = bars.task("loading", len(loadable))
        t1 = time.perf_counter()

        def loaded(s) -> None:  # each file as its batch finishes it
            if s.status == "refused":
                emit("load", t1, level="error", file=s.file, source=s.source, status=s.status, message=s.error)
                bars.advance(task, f"refused {Path(s.file).name}")
                return
            totals["loaded" if s.status == "loaded" else "skipped"] += 1
            for key in ("rows_loaded", "rows_replaced", "rows_rejected"):
                totals[key] += getattr(s, key)
            record = {"file": s.file, "source": s.source, "status": s.status, "rows_read": s.rows_read,
                      "rows_loaded": s.rows_loaded, "rows_replaced": s.rows_replaced,
                      "rows_rejected": s.rows_rejected}
            files.append(record)
            emit("load", t1, **record)
            bars.advance(task, f"loaded {Path(s.file).name}")

        # Consecutive files of one source load as one batch (groups of files in one scan, each file
        # whole or not at all); a refused file stops the job after the others of its batch loaded.
        with reporting_progress(loaded):
            for _, run in groupby(loadable, key=lambda item: item.kind):
                load_files_of(wh, list(run))
        emit("ingest", t0, files=len(loadable), **totals)

        t0 = time.perf_counter()
        chosen = parse_month(month, "--month") if month else ready_month(wh)
        window = month_window(wh, chosen, window_months)
        emit("month", t0, month=f"{chosen:%Y-%m}", window_from=f"{window.start:%Y-%m}",
             window_to=f"{window.end:%Y-%m}", chosen_by="option" if month else "reporting")

        staging = out_dir / owned_name(STAGING_PREFIX)
        staged: dict = {}
        leads: dict[str, int] = {}

        def before_commit(con, result) -> None:
            t2 = time.perf_counter()
            leads.update(write_lead_status(con, chosen, result.run_id))
            emit("lead_status", t2, run_id=result.run_id, **leads)
            t2 = time.perf_counter()
            staging.mkdir()
            staged.update(stage(wh, staging, window, chosen, charts))
            emit("stage", t2, periods=len(staged["periods"]),
                 **{f"{name}_rows": staged[name]["rows"] for name in DATASETS})

        t0 = time.perf_counter()
        task = bars.task(f"scoring {window.start:%Y-%m}..{window.end:%Y-%m}", None)
        try:
            result = run_detectors(wh, window, detectors, settings, before_commit=before_commit, learning=learning)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        bars.advance(task)
        emit("score", t0, run_id=result.run_id, alerts=sum(result.counts.values()),
             **{f"alerts_{k}": v for k, v in result.counts.items()})
        high_new = wh.con.execute(
            "SELECT count(*) FROM lead_status WHERE period = ? AND status = 'new' AND severity = 'high'",
            [chosen]).fetchone()[0]

    t0 = time.perf_counter()
    publish(staging, out_dir, staged["periods"], chosen)
    reports = {k: str(out_dir / "reports" / Path(v).name) for k, v in staged["reports"].items()}
    summary = {
        "run_id": result.run_id, "month": f"{chosen:%Y-%m}",
        "window": [f"{window.start:%Y-%m}", f"{window.end:%Y-%m}"],
        "files": files, "alerts": sum(result.counts.values()), "leads": leads, "high_new": int(high_new),
        "reports": reports, "out": str(out_dir), "seconds": round(time.perf_counter() - started, 3),
    }
    write_json_atomic(out_dir / "last_run.json", summary)
    shutil.rmtree(staging, ignore_errors=True)
    emit("publish", t0, partitions=sum(staged[n]["partitions"] for n in DATASETS), report=reports["html"])
    log({"step": "done", "seconds": summary["seconds"], "run_id": result.run_id, "month": summary["month"],
         "alerts": summary["alerts"], **{f"leads_{k}": v for k, v in leads.items()}, "high_new": summary["high_new"]})
    return summary
