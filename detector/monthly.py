"""The monthly batch job: load what arrived, score a rolling window, publish Parquet and the report.

One call, `run_monthly`, does the whole job; `detector monthly` and `python -m pipelines.monthly`
are thin shells around it (docs/monthly.md). Steps:

1. scan the inbox and tell each file's source from its columns (`detector.ingest.sources`); a file
   of no known source is refused with a warning line, never loaded;
2. load the files not loaded yet (the loaders skip a file already loaded, by content hash, and
   let a newer file's rows replace the rows with the same keys: Comtrade revises past months);
3. choose the month: the latest month for which at least half of the reporters seen over the
   previous 12 months have published (`reporting`), unless one is given;
4. score the rolling window ending at that month (re-scoring past months picks up revisions);
   in the same transaction, record each lead's lifecycle in `lead_status` and write the Parquet
   partitions and the report into a hidden staging folder inside OUT;
5. after the commit, swap the staged partitions and reports into place (renames only).

A run killed before the commit leaves the warehouse and OUT as the last complete run left them
(the hidden staging folder is removed by the next run); killed during the final renames, the
next run rewrites the same partitions. Rerunning a month gives the same alert ids.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from detector.errors import DetectorError
from detector.export import DATASETS as EXPORTED
from detector.export import export_parquet, safe_out_dir
from detector.ingest import sources
from detector.leftovers import owned_name, remove_left_behind
from detector.months import Window, months_ahead, months_back, parse_month
from detector.reports import render_report
from detector.reports.leads import ranked_leads
from detector.runner import MIN_HISTORY_MONTHS, run_detectors
from detector.scoring import LEAD_GAP_MONTHS, SHIPPER_SQL, STORY_SQL, severity_sql
from detector.settings import Settings
from detector.warehouse import Warehouse

WINDOW_MONTHS = 12  # months re-scored on every run, ending at the run's month
REPORTING_SHARE = 0.5  # a month is ready once this share of last year's reporters published it
REPORTING_LOOKBACK = 12
EXIT_OK, EXIT_ERROR, EXIT_HIGH = 0, 1, 3
STAGING_PREFIX = ".monthly-staging-"
# What a run publishes: every dataset `detector export` writes (declaration_scores included), and lead_status.
DATASETS = (*EXPORTED, "lead_status")

Log = Callable[[dict], None]


# ---------------------------------------------------------------- inbox
@dataclass(frozen=True)
class InboxFile:
    path: Path
    kind: str  # a source's name, "companion" (read beside a data file) or "unknown"
    note: str = ""


def _header(path: Path) -> tuple[list[str], bool]:
    """The first record's column names, and whether the file is a JSON array (Census API)."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            head = fh.read(1 << 16)
    except (OSError, EOFError):
        return [], False
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = head.decode("utf-16", errors="replace")
    else:
        text = head.decode("utf-8-sig", errors="replace")
    text = text.lstrip("\ufeff \t\r\n")
    if text.startswith("["):
        first = text.split("]", 1)[0]
        return re.findall(r'"([^"]*)"', first), True
    line = text.splitlines()[0] if text else ""
    delimiter = max([",", ";", "\t", "|"], key=line.count)
    names = next(csv.reader(io.StringIO(line), delimiter=delimiter), [])
    return [n.strip() for n in names], False


def classify(path: Path) -> InboxFile:
    """The source a file is, told from its columns (`detector.ingest.sources`)."""
    path = Path(path)
    names, is_json = _header(path)
    if path.suffix.lower() in (".parquet", ".zip", ".7z", ".xlsx", ".xls", ".toml", ".json") and not is_json:
        return InboxFile(path, "unknown", f"unsupported file type {path.suffix}")
    kind, note = sources.recognise(names)
    return InboxFile(path, kind, note)


def scan_inbox(inbox: str | os.PathLike) -> list[InboxFile]:
    """Every file under the inbox (hidden files aside), in arrival order: modification time, then name."""
    root = Path(inbox)
    if not root.is_dir():
        raise DetectorError(f"{root}: inbox folder not found; give the folder the monthly files arrive in")
    files = [p for p in root.rglob("*")
             if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)]
    files.sort(key=lambda p: (p.stat().st_mtime_ns, p.name))
    return [classify(p) for p in files]


def _load(wh: Warehouse, item: InboxFile):
    return sources.get(item.kind).load(wh, [item.path])


# ---------------------------------------------------------------- month and window
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


# ---------------------------------------------------------------- lead lifecycle
# A lead as detector.scoring draws it: one corridor (story, shipper, destination) over flagged
# months, quiet gaps of up to LEAD_GAP_MONTHS months bridged. This month's leads are new or
# continuing; a lead whose last flagged month is the last one this month could still have
# bridged is closed (the quiet gap has just grown too long).
LEAD_STATUS_SQL = f"""
WITH corridor_alerts AS (
    SELECT period, lead_id, lead_score, {STORY_SQL} AS commodity, {SHIPPER_SQL} AS shipper, destination
    FROM alerts
    WHERE period <= $month
),
corridor_months AS (
    SELECT DISTINCT commodity, shipper, destination, period, year(period) * 12 + month(period) AS month_no
    FROM corridor_alerts
),
episodes AS (
    SELECT *, sum(starts) OVER (PARTITION BY commodity, shipper, destination ORDER BY period) AS episode
    FROM (SELECT *, CASE WHEN month_no - lag(month_no) OVER (PARTITION BY commodity, shipper, destination
                                                              ORDER BY period) <= {LEAD_GAP_MONTHS + 1}
                         THEN 0 ELSE 1 END AS starts
          FROM corridor_months)
),
spans AS (
    SELECT commodity, shipper, destination, min(period) AS first_seen, max(period) AS last_seen
    FROM episodes GROUP BY commodity, shipper, destination, episode
),
leads AS (
    SELECT a.lead_id, a.commodity, a.shipper, a.destination, s.first_seen, s.last_seen,
           max(a.lead_score) AS lead_score
    FROM spans s
    JOIN corridor_alerts a ON a.period = s.last_seen AND a.commodity IS NOT DISTINCT FROM s.commodity
                          AND a.shipper IS NOT DISTINCT FROM s.shipper
                          AND a.destination IS NOT DISTINCT FROM s.destination
    WHERE s.last_seen IN ($month, $closing)
    GROUP BY ALL
)
SELECT $month AS period, lead_id,
       CASE WHEN last_seen < $month THEN 'closed' WHEN first_seen < $month THEN 'continuing' ELSE 'new' END
           AS status,
       first_seen, last_seen, commodity, shipper, destination, lead_score,
       {severity_sql("lead_score")} AS severity,
       $run_id AS run_id
FROM leads
"""


def write_lead_status(con, month: dt.date, run_id: str) -> dict[str, int]:
    """Replace `lead_status` for `month` from the alerts as they stand (call inside the run's transaction)."""
    params = {"month": month, "closing": months_back(month, LEAD_GAP_MONTHS + 1), "run_id": run_id}
    con.execute("DELETE FROM lead_status WHERE period = ?", [month])
    con.execute(f"INSERT INTO lead_status {LEAD_STATUS_SQL}", params)
    counts = dict(con.execute(
        "SELECT status, count(*) FROM lead_status WHERE period = ? GROUP BY status", [month]).fetchall())
    return {s: int(counts.get(s, 0)) for s in ("new", "continuing", "closed")}


def lifecycle(wh_or_con, month) -> pl.DataFrame:
    """The month's leads with their status, most suspicious first within new, continuing, closed."""
    con = getattr(wh_or_con, "con", wh_or_con)
    return con.sql(
        """SELECT * FROM lead_status WHERE period = ?
           ORDER BY CASE status WHEN 'new' THEN 0 WHEN 'continuing' THEN 1 ELSE 2 END,
                    lead_score DESC, lead_id""", params=[parse_month(month)]).pl()


# ---------------------------------------------------------------- the report's lifecycle section
SECTIONS = (("new", "New this month"), ("continuing", "Continuing"), ("closed", "Closed"))


def _lifecycle_rows(wh: Warehouse, month: dt.date) -> pl.DataFrame:
    """lead_status joined with the ranked leads of each lead's last flagged month."""
    status = lifecycle(wh, month)
    keep = ["lead_id", "rank", "period", "hs_code", "origin", "via", "detectors", "explanation"]
    shown = pl.concat([ranked_leads(wh, period=seen).select(keep)
                       for seen in (month, months_back(month, LEAD_GAP_MONTHS + 1))])
    return status.join(shown.rename({"period": "last_seen"}), on=["lead_id", "last_seen"], how="left",
                       maintain_order="left")


def _route(r: dict) -> str:
    if r["origin"] is None and r["via"] is None:
        return f"{r['shipper'] or '?'} → {r['destination'] or '?'}"
    return " → ".join(c for c in (r["origin"] or "?", r["via"], r["destination"] or "?") if c)


def lifecycle_markdown(rows: pl.DataFrame, month: dt.date) -> str:
    from detector.reports.markdown import cell

    lines = [f"# Monthly run {month:%Y-%m}: lead lifecycle", ""]
    for status, title in SECTIONS:
        part = rows.filter(pl.col("status") == status)
        lines += [f"## {title} ({part.height})", ""]
        if part.height == 0:
            lines += ["None.", ""]
            continue
        lines += ["| commodity | route | score | severity | first seen | last seen | detectors | lead |",
                  "| --- | --- | ---: | --- | --- | --- | --- | --- |"]
        for r in part.iter_rows(named=True):
            route = _route(r)
            lines.append("| " + " | ".join([
                cell(r["commodity"]), cell(route), f"{r['lead_score']:.2f}", cell(r["severity"]),
                f"{r['first_seen']:%Y-%m}", f"{r['last_seen']:%Y-%m}",
                cell(", ".join(r["detectors"] or [])), cell(r["lead_id"])]) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def lifecycle_html(rows: pl.DataFrame, month: dt.date) -> str:
    from html import escape as e

    parts = [f'<section id="lifecycle"><h2>Lead lifecycle, {month:%Y-%m}</h2>']
    for status, title in SECTIONS:
        part = rows.filter(pl.col("status") == status)
        parts.append(f'<h3 id="lifecycle-{status}">{e(title)} ({part.height})</h3>')
        if part.height == 0:
            parts.append("<p>None.</p>")
            continue
        body = []
        for r in part.iter_rows(named=True):
            route = _route(r)
            body.append("<tr>" + "".join(f"<td>{c}</td>" for c in [
                e(r["commodity"] or ""), e(route), f"{r['lead_score']:.2f}",
                f'<span class="sev-{e(r["severity"])}">{e(r["severity"])}</span>',
                f"{r['first_seen']:%Y-%m}", f"{r['last_seen']:%Y-%m}",
                e(", ".join(r["detectors"] or [])), e(r["explanation"] or "")]) + "</tr>")
        head = "".join(f"<th>{h}</th>" for h in ["commodity", "route", "score", "severity", "first seen",
                                                 "last seen", "detectors", "explanation"])
        parts.append(f'<table class="lifecycle"><thead><tr>{head}</tr></thead><tbody>'
                     + "".join(body) + "</tbody></table>")
    parts.append("</section>")
    return "\n".join(parts)


def write_reports(wh: Warehouse, month: dt.date, folder: Path, charts: int = 10) -> dict[str, Path]:
    """report-YYYY-MM.md and .html: the lifecycle (new, continuing, closed), then the ranked leads."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = _lifecycle_rows(wh, month)
    stem = f"report-{month:%Y-%m}"
    md = lifecycle_markdown(rows, month) + "\n" + render_report(wh, "markdown", period=month)
    html = render_report(wh, "html", period=month, charts=charts)
    marker = '<section id="leads">'
    html = html.replace(marker, lifecycle_html(rows, month) + "\n" + marker, 1) if marker in html \
        else html.replace("</body>", lifecycle_html(rows, month) + "\n</body>", 1)
    paths = {"markdown": folder / f"{stem}.md", "html": folder / f"{stem}.html"}
    paths["markdown"].write_text(md, encoding="utf-8")
    paths["html"].write_text(html, encoding="utf-8")
    return paths


# ---------------------------------------------------------------- staging and publishing
def _sql_path(path: Path) -> str:
    return "'" + path.as_posix().replace("'", "''") + "'"


def _stage(con_wh: Warehouse, staging: Path, window: Window, month: dt.date, charts: int = 10) -> dict:
    """Write the window's Parquet partitions, the month's lead_status partition and the reports."""
    periods = []
    p = window.start
    while p <= window.end:
        periods.append(p)
        p = months_ahead(p, 1)
    written = export_parquet(con_wh, staging, periods=periods)
    status_rows = con_wh.con.execute("SELECT count(*) FROM lead_status WHERE period = ?", [month]).fetchone()[0]
    if status_rows:
        con_wh.con.execute(
            f"""COPY (SELECT * FROM lead_status WHERE period = DATE '{month.isoformat()}'
                      ORDER BY CASE status WHEN 'new' THEN 0 WHEN 'continuing' THEN 1 ELSE 2 END,
                               lead_score DESC, lead_id)
                TO {_sql_path(staging / 'lead_status')} (FORMAT parquet, PARTITION_BY (period), COMPRESSION zstd)""")
    written["lead_status"] = {"rows": int(status_rows), "partitions": 1 if status_rows else 0}
    written["reports"] = write_reports(con_wh, month, staging / "reports", charts=charts)
    written["periods"] = [d.isoformat() for d in periods]
    return written


def _publish(staging: Path, out: Path, periods: list[str], month: dt.date) -> None:
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


# ---------------------------------------------------------------- the job
class _Progress:
    """rich progress bars on stderr, or nothing."""

    def __init__(self, enabled: bool):
        self.bar = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

            self.bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                MofNCompleteColumn(), console=Console(stderr=True), transient=True)

    def __enter__(self):
        if self.bar:
            self.bar.start()
        return self

    def __exit__(self, *exc):
        if self.bar:
            self.bar.stop()

    def task(self, description: str, total: int | None):
        return self.bar.add_task(description, total=total) if self.bar else None

    def advance(self, task, description: str | None = None) -> None:
        if self.bar and task is not None:
            self.bar.update(task, advance=1, **({"description": description} if description else {}))


def run_monthly(db, inbox, out, month=None, settings: Settings | None = None, log: Log | None = None,
                window_months: int = WINDOW_MONTHS, detectors: list[str] | None = None,
                progress: bool = False, charts: int = 10) -> dict:
    """Load the inbox, score the window ending at `month` (default: the latest month ready), publish.

    `log(event)` gets one dict per step ({"step", "seconds", counts..., "message"}). Returns a
    summary: run_id, month, window, files, alerts, leads {new, continuing, closed}, high_new
    (high-severity new leads), reports, out. Raises DetectorError on bad input. `charts`: top
    leads drawn in the HTML report; `progress`: rich progress bars on stderr.
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

    with Warehouse.open(db) as wh, _Progress(progress) as bars:
        t0 = time.perf_counter()
        files, totals = [], {"loaded": 0, "skipped": 0, "rows_loaded": 0, "rows_replaced": 0, "rows_rejected": 0}
        task = bars.task("loading", len(loadable))
        for item in loadable:
            t1 = time.perf_counter()
            for s in _load(wh, item):
                totals["loaded" if s.status == "loaded" else "skipped"] += 1
                for key in ("rows_loaded", "rows_replaced", "rows_rejected"):
                    totals[key] += getattr(s, key)
                record = {"file": s.file, "source": s.source, "status": s.status, "rows_read": s.rows_read,
                          "rows_loaded": s.rows_loaded, "rows_replaced": s.rows_replaced,
                          "rows_rejected": s.rows_rejected}
                files.append(record)
                emit("load", t1, **record)
            bars.advance(task, f"loaded {item.path.name}")
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
            staged.update(_stage(wh, staging, window, chosen, charts))
            emit("stage", t2, periods=len(staged["periods"]),
                 **{f"{name}_rows": staged[name]["rows"] for name in DATASETS})

        t0 = time.perf_counter()
        task = bars.task(f"scoring {window.start:%Y-%m}..{window.end:%Y-%m}", None)
        try:
            result = run_detectors(wh, window, detectors, settings, before_commit=before_commit)
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
    _publish(staging, out_dir, staged["periods"], chosen)
    reports = {k: str(out_dir / "reports" / Path(v).name) for k, v in staged["reports"].items()}
    summary = {
        "run_id": result.run_id, "month": f"{chosen:%Y-%m}",
        "window": [f"{window.start:%Y-%m}", f"{window.end:%Y-%m}"],
        "files": files, "alerts": sum(result.counts.values()), "leads": leads, "high_new": int(high_new),
        "reports": reports, "out": str(out_dir), "seconds": round(time.perf_counter() - started, 3),
    }
    _write_json_atomic(out_dir / "last_run.json", summary)
    shutil.rmtree(staging, ignore_errors=True)
    emit("publish", t0, partitions=sum(staged[n]["partitions"] for n in DATASETS), report=reports["html"])
    log({"step": "done", "seconds": summary["seconds"], "run_id": result.run_id, "month": summary["month"],
         "alerts": summary["alerts"], **{f"leads_{k}": v for k, v in leads.items()}, "high_new": summary["high_new"]})
    return summary


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# ---------------------------------------------------------------- logging and the shells
def make_log(fmt: str = "text", stream=None) -> Log:
    """One line per step: `HH:MM:SS step  seconds  key=value ...` or one JSON object (json)."""
    stream = stream or sys.stdout

    def text(event: dict) -> None:
        fields = {k: v for k, v in event.items() if k not in ("step", "seconds", "message", "level")}
        level = "WARNING " if event.get("level") == "warning" else ""
        kv = " ".join(f"{k}={v}" for k, v in fields.items())
        msg = f"  {event['message']}" if event.get("message") else ""
        print(f"{dt.datetime.now():%H:%M:%S} {level}{event['step']:<11} {event.get('seconds', 0):7.2f}s  {kv}{msg}",
              file=stream, flush=True)

    def as_json(event: dict) -> None:
        record = {"time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **event}
        print(json.dumps(record, default=str), file=stream, flush=True)

    if fmt not in ("text", "json"):
        raise DetectorError(f"log format {fmt!r}: choose text or json")
    return as_json if fmt == "json" else text


def run_and_exit_code(db, inbox, out, month=None, settings=None, log_format: str = "text",
                      fail_on_high: bool = False, window_months: int = WINDOW_MONTHS,
                      detectors: list[str] | None = None, debug: bool = False, stream=None) -> int:
    """What both command lines do: run, log, and turn the outcome into the documented exit code."""
    stream = stream or sys.stdout
    log = make_log(log_format, stream)
    progress = log_format == "text" and sys.stderr.isatty()
    t0 = time.perf_counter()
    try:
        summary = run_monthly(db, inbox, out, month=month, settings=settings, log=log,
                              window_months=window_months, detectors=detectors, progress=progress)
    except KeyboardInterrupt:
        log({"step": "error", "seconds": round(time.perf_counter() - t0, 3), "level": "error",
             "message": "interrupted; the warehouse and OUT are as the last complete run left them"})
        return EXIT_ERROR
    except Exception as exc:
        if debug:
            raise
        if isinstance(exc, DetectorError):
            message = str(exc)
        else:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            message = f"unexpected {exc.__class__.__name__}: {first} (rerun with --debug for details)"
        log({"step": "error", "seconds": round(time.perf_counter() - t0, 3), "level": "error", "message": message})
        if log_format == "text":
            print(f"Error: {message}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    if fail_on_high and summary["high_new"]:
        return EXIT_HIGH
    return EXIT_OK
