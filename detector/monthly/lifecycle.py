"""Each lead's status in the month of a run (new, continuing, closed; dismissed, watched under an
analyst's verdict), kept in `lead_status`."""

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


STATUSES = ("new", "continuing", "closed", "dismissed", "watched")

# A lead flagged this month (new or continuing) under an analyst's verdict that still holds is
# 'dismissed' (left out of the ranked report: `detector.verdicts.judge_leads`, the same rule) or
# 'watched'. A dismissed lead that came back (--until over, score above the dismissal's by
# DISMISSED_MARGIN, or a new evidence family) is new or continuing again.
VERDICT_STATUS_SQL = """
WITH month_leads AS (
    SELECT s.lead_id, s.commodity, s.shipper, s.destination, s.first_seen, s.last_seen, s.lead_score, l.families
    FROM lead_status s LEFT JOIN ({leads}) l USING (lead_id)
    WHERE s.period = $month AND s.status IN ('new', 'continuing')
),
judged AS ({judged}),
held AS (
    SELECT m.lead_id,
           CASE WHEN j.v_verdict = 'watch' THEN 'watched' ELSE 'dismissed' END AS status
    FROM month_leads m JOIN judged j USING (lead_id)
    WHERE (j.v_until IS NULL OR $month <= j.v_until)
      AND (j.v_verdict = 'watch'
           OR (j.v_verdict = 'dismissed' AND m.lead_score <= j.v_lead_score + {margin}
               AND len(list_filter(string_split(m.families, ','),
                                   lambda f: NOT list_contains(string_split(j.v_families, ','), f))) = 0))
)
UPDATE lead_status SET status = held.status FROM held
WHERE lead_status.period = $month AND lead_status.lead_id = held.lead_id
"""


def write_lead_status(con, month: dt.date, run_id: str) -> dict[str, int]:
    """Replace `lead_status` for `month` from the alerts as they stand (call inside the run's transaction).
    Returns the count of each status, and `awaiting_review`: the month's leads (new or continuing)
    with no verdict yet."""
    from detector.verdicts import DISMISSED_MARGIN, LEADS_SQL, register_families, verdict_of_leads_sql

    params = {"month": month, "closing": months_back(month, LEAD_GAP_MONTHS + 1), "run_id": run_id}
    con.execute("DELETE FROM lead_status WHERE period = ?", [month])
    con.execute(f"INSERT INTO lead_status {LEAD_STATUS_SQL}", params)
    register_families(con)
    con.execute(VERDICT_STATUS_SQL.format(leads=LEADS_SQL, judged=verdict_of_leads_sql("month_leads"),
                                          margin=float(DISMISSED_MARGIN)), {"month": month})
    counts = dict(con.execute(
        "SELECT status, count(*) FROM lead_status WHERE period = ? GROUP BY status", [month]).fetchall())
    awaiting = con.execute(f"""
        WITH month_leads AS (SELECT * FROM lead_status WHERE period = $month AND status IN ('new', 'continuing'))
        SELECT count(*) FROM month_leads WHERE lead_id NOT IN (SELECT lead_id FROM ({verdict_of_leads_sql("month_leads")}))
        """, {"month": month}).fetchall()[0][0]
    return {**{s: int(counts.get(s, 0)) for s in STATUSES}, "awaiting_review": int(awaiting)}


# The order a month's leads are listed in: new, continuing, closed; most suspicious first in each.
STATUS_ORDER_SQL = (f"CASE status WHEN 'new' THEN 0 WHEN 'continuing' THEN 1 WHEN 'watched' THEN 2 "
                    f"WHEN 'dismissed' THEN 3 ELSE 4 END, {lead_order_sql()}")


def lifecycle(wh_or_con, month) -> pl.DataFrame:
    """The month's leads with their status, most suspicious first within new, continuing, watched,
    dismissed, closed."""
    con = getattr(wh_or_con, "con", wh_or_con)
    return con.sql(f"SELECT * FROM lead_status WHERE period = ? ORDER BY {STATUS_ORDER_SQL}",
                   params=[parse_month(month)]).pl()
