"""Each lead's status in the month of a run (new, continuing, closed), kept in `lead_status`."""

from __future__ import annotations

import datetime as dt

import polars as pl

from detector.months import months_back, parse_month
from detector.scoring import LEAD_GAP_MONTHS, SHIPPER_SQL, STORY_SQL, lead_order_sql, severity_sql

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


# The order a month's leads are listed in: new, continuing, closed; most suspicious first in each.
STATUS_ORDER_SQL = f"CASE status WHEN 'new' THEN 0 WHEN 'continuing' THEN 1 ELSE 2 END, {lead_order_sql()}"


def lifecycle(wh_or_con, month) -> pl.DataFrame:
    """The month's leads with their status, most suspicious first within new, continuing, closed."""
    con = getattr(wh_or_con, "con", wh_or_con)
    return con.sql(f"SELECT * FROM lead_status WHERE period = ? ORDER BY {STATUS_ORDER_SQL}",
                   params=[parse_month(month)]).pl()
