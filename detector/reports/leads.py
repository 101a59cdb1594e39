"""The ranked list of leads that every report format renders.

A lead is a corridor-month: the alerts of several detectors that share a `lead_id`. Its row
carries the fields of its best alert (highest score), the list of detectors that fired, and
all its alert rows (`alerts`, a list of structs) for drill-down. An alert without a `lead_id`
is a lead of its own.
"""

from __future__ import annotations

import polars as pl

from detector.errors import DetectorError
from detector.months import parse_month
from detector.scoring import FLOW_SENDER_SQL, LEAD_STRENGTH_SQL, lead_order_sql, severity_sql

# The public alert columns in their documented order (the `alerts` table and Parquet), then the
# two lead columns.
ALERT_COLUMNS = [
    "alert_id", "run_id", "detector", "period", "hs_code", "commodity", "origin", "via",
    "destination", "reporter", "partner", "score", "severity", "observed", "expected",
    "evidence", "explanation",
]
LEAD_COLUMNS = ["lead_id", "lead_rank", "lead_score"]

def _filters(period, start, end, commodity, destination) -> tuple[str, list]:
    """WHERE clause and parameters for the alert filters."""
    if period is not None and (start is not None or end is not None):
        raise DetectorError("give either a period or a --from/--to window, not both")
    start, end = parse_month(start, "from"), parse_month(end, "to")
    if period is not None:
        start = end = parse_month(period)
    if start and end and start > end:
        raise DetectorError(f"window {start:%Y-%m}..{end:%Y-%m}: the start is after the end")
    where, params = ["TRUE"], []
    if start:
        where.append("period >= ?")
        params.append(start)
    if end:
        where.append("period <= ?")
        params.append(end)
    if commodity:
        where.append("lower(commodity) = lower(?)")
        params.append(str(commodity))
    if destination:
        where.append("upper(destination) = upper(?)")
        params.append(str(destination))
    return " AND ".join(where), params


def ranked_leads(wh, period=None, start=None, end=None, top: int | None = None,
                 commodity: str | None = None, destination: str | None = None,
                 verdicts: bool = True) -> pl.DataFrame:
    """One row per lead, most suspicious first; `rank` is the position in this list.

    With `verdicts` (default), each lead carries the analysts' verdict that applies to it
    (`detector.verdicts.judge_leads`: verdict, verdict_text, ...), and dismissed leads that have
    not come back are left out of the list (they stay in the warehouse and the Parquet)."""
    if top is not None and int(top) < 1:
        raise DetectorError(f"top {top}: must be at least 1")
    where, params = _filters(period, start, end, commodity, destination)
    cols = ", ".join(ALERT_COLUMNS + LEAD_COLUMNS)
    struct = ", ".join(f"{c} := {c}" for c in ALERT_COLUMNS + LEAD_COLUMNS)
    sql = f"""
    WITH selected AS (
        SELECT {cols}, coalesce(lead_id, alert_id) AS lead_key, {LEAD_STRENGTH_SQL} AS lead_strength,
               {FLOW_SENDER_SQL} AS sender
        FROM alerts WHERE {where}
    ),
    best AS (
        SELECT * EXCLUDE (pick) FROM (
            SELECT *, row_number() OVER (PARTITION BY lead_key
                                         ORDER BY score DESC, detector, alert_id) AS pick
            FROM selected)
        WHERE pick = 1
    ),
    detectors AS (
        SELECT lead_key, list(detector ORDER BY best_score DESC, detector) AS detectors
        FROM (SELECT lead_key, detector, max(score) AS best_score FROM selected
              GROUP BY lead_key, detector)
        GROUP BY lead_key
    ),
    drill AS (
        SELECT lead_key, count(*) AS n_alerts,
               list(struct_pack({struct}) ORDER BY score DESC, detector, alert_id) AS alerts
        FROM selected GROUP BY lead_key
    )
    SELECT
        CAST(row_number() OVER (ORDER BY {lead_order_sql("b.lead_strength", "b.lead_key")}) AS INTEGER) AS rank,
        b.lead_key AS lead_id, b.lead_rank, b.period, b.commodity, b.hs_code,
        b.origin, b.via, b.destination,
        -- without a suspected origin, the route starts at the shipping country of the flow
        concat_ws(' -> ', coalesce(b.origin, b.sender, '?'), b.via, coalesce(b.destination, '?')) AS route,
        b.lead_strength AS score,
        {severity_sql("b.lead_strength")} AS severity,
        d.detectors, dr.n_alerts,
        b.alert_id AS best_alert_id, b.detector AS best_detector, b.reporter, b.partner,
        b.observed, b.expected, b.evidence, b.explanation, dr.alerts
    FROM best b
    JOIN detectors d USING (lead_key)
    JOIN drill dr USING (lead_key)
    ORDER BY rank
    """
    finish_pending(wh.con)
    if top is not None and not (verdicts and _any_verdicts(wh.con)):
        sql += f"LIMIT {int(top)}"  # no lead can be left out: the database may stop at the top N
    leads = wh.con.sql(sql, params=params).pl()
    if verdicts:
        from detector.verdicts import judge_leads

        leads = judge_leads(wh.con, leads).filter(~pl.col("hidden")).drop("hidden")
        leads = leads.with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int32).alias("rank"))
    return leads.head(top) if top is not None else leads


def with_verdict(row: dict) -> str:
    """A lead's explanation, after the analysts' verdict on it where one is shown (watch, confirmed,
    a dismissed lead that came back): the line every report format prints."""
    verdict = row.get("verdict_text")
    return f"[{verdict}] {row['explanation']}" if verdict else row["explanation"]


def _any_verdicts(con) -> bool:
    tables = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'verdicts'").fetchall()
    return bool(tables[0][0]) and bool(con.execute("SELECT count(*) FROM verdicts").fetchall()[0][0])


def finish_pending(con) -> None:
    """Finish a caller's unread execute() result: DuckDB refuses new queries while one is open."""
    con.complete()


def lead_alerts(leads: pl.DataFrame) -> pl.DataFrame:
    """All alert rows of the leads, flat, in rank order (for the machine formats)."""
    if leads.height == 0:
        schema = {c: pl.String for c in ALERT_COLUMNS + LEAD_COLUMNS}
        schema.update(period=pl.Date, score=pl.Float64, observed=pl.Float64,
                      expected=pl.Float64, lead_rank=pl.Int32, lead_score=pl.Float64)
        return pl.DataFrame(schema=schema)
    flat = leads.select(pl.col("lead_id").alias("_lead"), "alerts").explode("alerts")
    flat = flat.with_columns(pl.col("alerts").struct.unnest()).drop("alerts")
    # An alert without a stored lead_id is its own lead: report that key.
    flat = flat.with_columns(pl.coalesce("lead_id", "_lead").alias("lead_id"))
    return flat.select(ALERT_COLUMNS + LEAD_COLUMNS)


def describe_window(leads: pl.DataFrame, period=None, start=None, end=None) -> str:
    """Human text for the window the report covers."""
    if period is not None:
        return f"{parse_month(period):%Y-%m}"
    lo, hi = parse_month(start, "from"), parse_month(end, "to")
    if lo is None and leads.height:
        lo = leads["period"].min()
    if hi is None and leads.height:
        hi = leads["period"].max()
    if lo is None and hi is None:
        return "all months"
    if lo == hi:
        return f"{lo:%Y-%m}"
    return f"{lo:%Y-%m}..{hi:%Y-%m}" if lo and hi else (f"from {lo:%Y-%m}" if lo else f"to {hi:%Y-%m}")
