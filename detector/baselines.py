"""Per-corridor monthly series and their robust baselines, shared by the detectors.

A corridor is (hs6, exporter, importer). Its monthly figure comes from one side only, the side
that reports it more often (the importer's M, CIF, unless the exporter's X covers more months),
so that a series never jumps because it switched between two reporters' books. Missing is not
zero: a month the chosen side did not publish is NULL; a month it published without a row for
this corridor is 0.

Every statistic for month t uses months before t only (trailing windows exclude t), so that a
run over history gives what a monthly run at the time would have. Sums over groups go through
DECIMAL so that their result does not depend on the order parallel threads add rows in: the same
data gives the same scores, to the last bit.
"""

from __future__ import annotations

from datetime import date

from detector.detectors.base import Window
from detector.reference import reference_path
from detector.warehouse import Warehouse

HISTORY_MONTHS = 36  # how far before the window the baselines look

# One row per corridor-month on a dense month grid, with both sides' reports and the chosen side.
CORRIDOR_MONTHS_SQL = """
CREATE OR REPLACE TEMP TABLE corridor_months AS
WITH bridged AS (   -- older HS revisions' codes carried onto their HS2022 successor
    SELECT coalesce(b.to_code, f.hs_code) AS hs_code, f.period, f.reporter, f.partner, f.flow,
           f.value_usd, f.net_weight_kg, f.partner2,
           -- a total over consignment countries next to its breakdown: the total alone counts
           bool_or(f.partner2 IS NULL) OVER (PARTITION BY f.source, f.hs_code, f.period, f.reporter, f.partner,
                                             f.flow) AS has_total
    FROM flows_preferred f   -- one source per reporter and month, codes rolled up to HS6
    LEFT JOIN hs_bridge b ON b.from_code = f.hs_code AND f.hs_revision IS DISTINCT FROM 'HS2022'
    WHERE f.freq = 'M' AND f.flow IN ('M', 'X') AND f.period BETWEEN $lo AND $hi
),
monthly AS (
    SELECT hs_code, period, reporter, partner, flow, CAST(sum(CAST(value_usd AS DECIMAL(38, 3))) AS DOUBLE) AS usd,
           CAST(sum(CAST(net_weight_kg AS DECIMAL(38, 3))) AS DOUBLE) AS kg
    FROM bridged
    WHERE ($all_codes OR hs_code IN (SELECT hs_code FROM scope_codes)) AND (partner2 IS NULL OR NOT has_total)
    GROUP BY hs_code, period, reporter, partner, flow
),
sides AS (
    SELECT hs_code, period,
           CASE WHEN flow = 'X' THEN reporter ELSE partner END AS exporter,
           CASE WHEN flow = 'M' THEN reporter ELSE partner END AS importer,
           sum(usd) FILTER (WHERE flow = 'M') AS m_usd_row, sum(kg) FILTER (WHERE flow = 'M') AS m_kg_row,
           sum(usd) FILTER (WHERE flow = 'X') AS x_usd_row, sum(kg) FILTER (WHERE flow = 'X') AS x_kg_row
    FROM monthly GROUP BY ALL
),
corridors AS (
    SELECT hs_code, exporter, importer, min(period) AS first_seen FROM sides GROUP BY ALL
),
months AS (
    SELECT CAST(m AS DATE) AS period FROM range(CAST($lo AS DATE), CAST($hi AS DATE) + INTERVAL 1 MONTH,
                                                 INTERVAL 1 MONTH) t(m)
),
reported AS (
    SELECT DISTINCT reporter, flow, period FROM reporting
    WHERE freq = 'M' AND period BETWEEN $lo AND $hi
),
grid AS (
    SELECT c.hs_code, c.exporter, c.importer, m.period,
           rm.reporter IS NOT NULL AS m_reported, rx.reporter IS NOT NULL AS x_reported,
           s.m_usd_row, s.m_kg_row, s.x_usd_row, s.x_kg_row
    FROM corridors c CROSS JOIN months m
    LEFT JOIN sides s USING (hs_code, exporter, importer, period)
    LEFT JOIN reported rm ON rm.reporter = c.importer AND rm.flow = 'M' AND rm.period = m.period
    LEFT JOIN reported rx ON rx.reporter = c.exporter AND rx.flow = 'X' AND rx.period = m.period
),
sided AS (
    SELECT *,
           CASE WHEN count(*) FILTER (WHERE m_reported) OVER w >= count(*) FILTER (WHERE x_reported) OVER w
                THEN 'M' ELSE 'X' END AS side
    FROM grid
    WINDOW w AS (PARTITION BY hs_code, exporter, importer)
)
SELECT hs_code, exporter, importer, period, side,
       CASE WHEN m_reported THEN coalesce(m_usd_row, 0) END AS m_usd,
       CASE WHEN m_reported THEN coalesce(m_kg_row, 0) END AS m_kg,
       CASE WHEN x_reported THEN coalesce(x_usd_row, 0) END AS x_usd,
       CASE WHEN x_reported THEN coalesce(x_kg_row, 0) END AS x_kg,
       CASE WHEN side = 'M' THEN (CASE WHEN m_reported THEN coalesce(m_usd_row, 0) END)
            ELSE (CASE WHEN x_reported THEN coalesce(x_usd_row, 0) END) END AS usd,
       CASE WHEN side = 'M' THEN (CASE WHEN m_reported THEN m_kg_row END)
            ELSE (CASE WHEN x_reported THEN x_kg_row END) END AS kg_row
FROM sided
"""

# Trailing robust statistics of log value and log weight per corridor-month (months before t only).
STATS_SQL = """
CREATE OR REPLACE TEMP TABLE {dst} AS
WITH logs AS (
    SELECT *,
           ln(1 + usd) AS lv,
           CASE WHEN usd = 0 THEN ln(1) WHEN kg_row > 0 THEN ln(1 + kg_row) END AS lw
    FROM {src}
),
trailing_stats AS (
    SELECT *,
           count(lv)       OVER w12 AS n_hist,
           median(lv)      OVER w12 AS lv_med,
           mad(lv)         OVER w12 AS lv_mad,
           median(lw)      OVER w12 AS lw_med,
           mad(lw)         OVER w12 AS lw_mad,
           median(usd)     OVER w12 AS usd_med,
           median(kg_row)  OVER w12 AS kg_med,
           median(kg_row)  OVER w_prior AS kg_med_prior_year,
           max(kg_row)     OVER w_last_year AS kg_last_year,
           median(usd)     OVER w_prior AS usd_med_prior_year,
           max(usd)        OVER w_all  AS usd_max_before,
           sum(usd)        OVER w_all  AS usd_sum_before,
           max(CASE WHEN usd > 0 THEN period END) OVER w_all AS last_trade_before,
           count(lv)       OVER w_all AS n_reported_before,
           avg(usd)        OVER w3 AS usd_avg3,
           avg(kg_row)     OVER w3 AS kg_avg3,
           count(usd)      OVER w3 AS n3,
           max(usd)        OVER w_last_year AS usd_last_year
    FROM logs
    WINDOW w12 AS (PARTITION BY {key}, exporter, importer ORDER BY period
                   ROWS BETWEEN 12 PRECEDING AND 1 PRECEDING),
           w_prior AS (PARTITION BY {key}, exporter, importer ORDER BY period
                   ROWS BETWEEN 24 PRECEDING AND 13 PRECEDING),
           w_all AS (PARTITION BY {key}, exporter, importer ORDER BY period
                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),
           w_last_year AS (PARTITION BY {key}, exporter, importer ORDER BY period
                   ROWS BETWEEN 13 PRECEDING AND 11 PRECEDING),
           w3 AS (PARTITION BY {key}, exporter, importer ORDER BY period
                   ROWS BETWEEN 2 PRECEDING AND CURRENT ROW)
)
SELECT *,
       -- robust z of this month against the trailing year; MAD floored so flat series are not infinitely
       -- sensitive (0.15 in log units is about +-16%)
       (lv - lv_med) / (1.4826 * greatest(lv_mad, 0.15)) AS z_value,
       (lw - lw_med) / (1.4826 * greatest(lw_mad, 0.15)) AS z_weight,
       -- the highest of the usual levels: trailing year, the same season last year (three months
       -- around the same month), the year before
       greatest(coalesce(usd_med, 0), coalesce(usd_last_year, 0), coalesce(usd_med_prior_year, 0)) AS usd_expected,
       greatest(coalesce(kg_med, 0), coalesce(kg_last_year, 0), coalesce(kg_med_prior_year, 0)) AS kg_expected
FROM trailing_stats
"""


# The same series summed over all codes of a commodity (processing may change the code on the way).
COMMODITY_MONTHS_SQL = """
CREATE OR REPLACE TEMP TABLE commodity_months AS
SELECT sc.commodity, cm.exporter, cm.importer, cm.period, min(cm.side) AS side,
       CAST(sum(CAST(cm.usd AS DECIMAL(38, 3))) AS DOUBLE) AS usd, CAST(sum(CAST(cm.kg_row AS DECIMAL(38, 3))) AS DOUBLE) AS kg_row
FROM corridor_months cm JOIN scope_codes sc USING (hs_code)
WHERE sc.commodity IS NOT NULL
GROUP BY ALL
"""


def months_back(d: date, n: int) -> date:
    total = d.year * 12 + (d.month - 1) - n
    return date(total // 12, total % 12 + 1, 1)


def prepare(wh: Warehouse, window: Window, all_codes: bool = False, fresh: bool = False) -> None:
    """Build the temp tables scope_codes, corridor_months/_stats and commodity_months/_stats.

    Detectors of one run share them: a later call for the same window reuses them (tables built
    for every code serve a call for the watchlist too: per-code statistics are the same). `fresh`
    rebuilds them, as a new run must (the data may have changed since).
    """
    built = getattr(wh, "_baselines", None)
    if not fresh and built is not None and built[0] == window and (built[1] or not all_codes):
        return
    con = wh.con
    con.execute(HS_BRIDGE_SQL, [str(reference_path("hs_concordance.csv"))])
    con.execute(SCOPE_CODES_SQL)
    con.execute(CONTROL_EVENTS_SQL)
    # The month grid starts at the first month anything was loaded or reported, not before: earlier
    # grid months are empty for every series and change no statistic (the windows count rows with
    # data only), but would make the grid up to twice as long.
    first = con.execute(
        """SELECT least((SELECT min(period) FROM flows WHERE freq = 'M'),
                        (SELECT min(period) FROM reporting WHERE freq = 'M'))""").fetchone()[0]
    lo = months_back(window.start, HISTORY_MONTHS)
    params = {"lo": max(lo, first) if first else lo, "hi": window.end, "all_codes": all_codes}
    con.execute(CORRIDOR_MONTHS_SQL, params)
    con.execute(STATS_SQL.format(src="corridor_months", dst="corridor_stats", key="hs_code"))
    con.execute(COMMODITY_MONTHS_SQL)
    con.execute(STATS_SQL.format(src="commodity_months", dst="commodity_stats", key="commodity"))
    wh._baselines = (window, all_codes)


# Watched HS6 codes, their commodity and controlling country, plus the uncontrolled codes goods are
# misdeclared under (code_shift pairs from detector/reference/code_shift_pairs.csv).
SCOPE_CODES_SQL = """
CREATE OR REPLACE TEMP TABLE scope_codes AS
WITH codes AS (
    SELECT DISTINCT left(hs_code, 6) AS hs_code FROM flows
),
matched AS (
    SELECT c.hs_code, w.commodity, w.controlling_country,
           -- the longest watchlist prefix of the code; a national line under it (81129230 under
           -- 811292) only when nothing covers the whole code
           row_number() OVER (PARTITION BY c.hs_code
                              ORDER BY (c.hs_code LIKE w.hs_prefix || '%') DESC, length(w.hs_prefix) DESC) AS best
    FROM codes c JOIN watchlist w ON c.hs_code LIKE w.hs_prefix || '%' OR w.hs_prefix LIKE c.hs_code || '%'
)
SELECT hs_code, commodity, controlling_country FROM matched WHERE best = 1
UNION ALL
SELECT DISTINCT p.to_code, NULL, NULL FROM code_shift_pairs p
WHERE p.to_code NOT IN (SELECT hs_code FROM matched)
"""

# Export controls exploded to one row per (controlling country, commodity, target, date); the
# targets 'ALL' stay 'ALL'. Only measures that restrict exports (licence, ban) count.
CONTROL_EVENTS_SQL = """
CREATE OR REPLACE TEMP TABLE control_events AS
SELECT country, trim(commodity) AS commodity, trim(target) AS target, date, kind, instrument
FROM controls,
     unnest(string_split(commodities, ';')) AS c(commodity),
     unnest(string_split(targets, ';')) AS t(target)
WHERE kind IN ('licence', 'ban')
"""

# The latest control on (commodity, destination) within two years before each month, as a CTE
# body: join it on commodity, importer and period.
LATEST_CONTROL_SQL = """
SELECT e.commodity, d.importer, d.period, max(e.date) AS control_date,
       arg_max(e.kind || ' (' || e.instrument || ')', e.date) AS control
FROM control_events e
JOIN (SELECT DISTINCT importer, period FROM corridor_months) d
  ON (e.target = 'ALL' OR e.target = d.importer)
 AND e.date <= d.period + INTERVAL 1 MONTH - INTERVAL 1 DAY
 AND e.date > d.period - INTERVAL 24 MONTH
GROUP BY ALL
"""

# One HS2022 successor per older code: the code itself when it survived, else a watched successor,
# else the first listed (a split basket's series continues under its controlled part).
HS_BRIDGE_SQL = """
CREATE OR REPLACE TEMP TABLE hs_bridge AS
WITH concordance AS (
    SELECT * FROM read_csv(?, header = true, all_varchar = true)
),
ranked AS (
    SELECT c.from_code, c.to_code,
           row_number() OVER (PARTITION BY c.from_code ORDER BY (c.to_code = c.from_code) DESC,
                              (w.hs_prefix IS NOT NULL) DESC, c.to_code) AS pick
    FROM concordance c
    LEFT JOIN watchlist w ON c.to_code LIKE w.hs_prefix || '%'
)
SELECT from_code, to_code FROM ranked WHERE pick = 1
"""
