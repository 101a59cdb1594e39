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

import numpy as np
import polars as pl

from detector import trailing
from detector.detectors.base import Window
from detector.reference import reference_path
from detector.trailing import STAT_NAMES
from detector.warehouse import Warehouse

HISTORY_MONTHS = 36  # how far before the window the baselines look

# One row per corridor and month with something reported on either side, from the preferred source
# of each reporter and month, older HS revisions bridged to HS2022, summed through DECIMAL (each
# side's figure is the sum over one reporter's rows: bridged codes, consignment countries).
CORRIDOR_SIDES_SQL = """
CREATE OR REPLACE TEMP TABLE corridor_sides AS
WITH bridged AS (   -- older HS revisions' codes carried onto their HS2022 successor
    SELECT coalesce(b.to_code, f.hs_code) AS hs_code, f.hs_code AS raw_code, f.source, f.period, f.reporter,
           f.partner, f.flow, f.value_usd, f.net_weight_kg, f.partner2
    FROM flows_preferred f   -- one source per reporter and month, codes rolled up to HS6
    LEFT JOIN hs_bridge b ON b.from_code = f.hs_code AND f.hs_revision IS DISTINCT FROM 'HS2022'
    WHERE f.freq = 'M' AND f.flow IN ('M', 'X') AND f.period BETWEEN $lo AND $hi
      AND ($all_codes OR coalesce(b.to_code, f.hs_code) IN (SELECT hs_code FROM scope_codes))
),
kept AS ({kept})
SELECT hs_code,
       CASE WHEN flow = 'X' THEN reporter ELSE partner END AS exporter,
       CASE WHEN flow = 'M' THEN reporter ELSE partner END AS importer,
       datediff('month', CAST($lo AS DATE), period) AS month_no,
       CAST(sum(CAST(value_usd AS DECIMAL(38, 3))) FILTER (WHERE flow = 'M') AS DOUBLE) AS m_usd_row,
       CAST(sum(CAST(net_weight_kg AS DECIMAL(38, 3))) FILTER (WHERE flow = 'M') AS DOUBLE) AS m_kg_row,
       CAST(sum(CAST(value_usd AS DECIMAL(38, 3))) FILTER (WHERE flow = 'X') AS DOUBLE) AS x_usd_row,
       CAST(sum(CAST(net_weight_kg AS DECIMAL(38, 3))) FILTER (WHERE flow = 'X') AS DOUBLE) AS x_kg_row
FROM kept
GROUP BY ALL
"""

# Rows given per consignment country (partner2) next to their total: the total alone counts.
KEPT_WITH_BREAKDOWNS = """
    SELECT * FROM bridged WHERE partner2 IS NULL
    UNION ALL
    SELECT * FROM bridged b WHERE partner2 IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM bridged t WHERE t.partner2 IS NULL AND t.source = b.source
                       AND t.raw_code = b.raw_code AND t.period = b.period AND t.reporter = b.reporter
                       AND t.partner = b.partner AND t.flow = b.flow)
"""
KEPT_ALL = "SELECT * FROM bridged"

# Every corridor once, numbered; `side` is filled in after the grid is built.
CORRIDOR_KEYS_SQL = """
CREATE OR REPLACE TEMP TABLE corridor_keys AS
SELECT row_number() OVER (ORDER BY hs_code, exporter, importer) - 1 AS series_no, hs_code, exporter, importer
FROM (SELECT DISTINCT hs_code, exporter, importer FROM corridor_sides)
"""

# Which reporter published which flow for which month of the grid.
REPORTED_SQL = """
SELECT DISTINCT reporter, flow, datediff('month', CAST($lo AS DATE), period) AS month_no FROM reporting
WHERE freq = 'M' AND flow IN ('M', 'X') AND period BETWEEN $lo AND $hi
"""

# The monthly figures on the dense grid, one row per series and month, with the series' keys.
STATS_TABLE_SQL = """
CREATE OR REPLACE TEMP TABLE {dst} AS
SELECT {keys}, s.period, k.side, s.* EXCLUDE (series_no, period)
FROM grid_stats s JOIN {key_table} k USING (series_no)
"""

# The corridor figures alone (the detectors that need no statistics read these).
CORRIDOR_MONTHS_VIEW = """
CREATE OR REPLACE TEMP VIEW corridor_months AS
SELECT hs_code, exporter, importer, period, side, m_usd, m_kg, x_usd, x_kg, usd, kg_row FROM corridor_stats
"""

# The same series summed over all codes of a commodity (processing may change the code on the way).
COMMODITY_MONTHS_SQL = """
CREATE OR REPLACE TEMP TABLE commodity_months AS
SELECT sc.commodity, cm.exporter, cm.importer, datediff('month', CAST($lo AS DATE), cm.period) AS month_no,
       min(cm.side) AS side,
       CAST(sum(CAST(cm.usd AS DECIMAL(38, 3))) AS DOUBLE) AS usd, CAST(sum(CAST(cm.kg_row AS DECIMAL(38, 3))) AS DOUBLE) AS kg_row
FROM corridor_months cm JOIN scope_codes sc USING (hs_code)
WHERE sc.commodity IS NOT NULL
GROUP BY ALL
"""

COMMODITY_KEYS_SQL = """
CREATE OR REPLACE TEMP TABLE commodity_keys AS
SELECT row_number() OVER (ORDER BY commodity, exporter, importer) - 1 AS series_no, commodity, exporter, importer,
       min(side) AS side
FROM commodity_months GROUP BY commodity, exporter, importer
"""

def months_back(d: date, n: int) -> date:
    total = d.year * 12 + (d.month - 1) - n
    return date(total // 12, total % 12 + 1, 1)


def _matrix(cells: dict[str, np.ndarray], column: str, n_series: int, n_months: int) -> np.ndarray:
    """A sparse (series_no, month_no, value) column scattered onto the dense grid, NaN elsewhere."""
    grid = np.full((n_series, n_months), np.nan)
    values = cells[column]
    grid[cells["series_no"].astype(np.int64), cells["month_no"].astype(np.int64)] = values
    return grid


def _fetch(con, sql: str, params=None) -> dict[str, np.ndarray]:
    """A query's columns as NumPy arrays (NULL -> NaN for numbers)."""
    con.complete()  # an earlier execute() must be finished before a relation query
    frame = con.sql(sql, params=params).pl()
    return {c: frame[c].to_numpy() for c in frame.columns}


def _corridor_grid(con, lo: date, n_months: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Both sides' reports per corridor and month on the dense grid, and the side each series reads.

    Missing is not zero: a month the side did not publish is NaN; a month it published without a
    row for this corridor is 0 (value) and NaN (weight: unknown).
    """
    cells = _fetch(con, """SELECT k.series_no, s.month_no, s.m_usd_row, s.m_kg_row, s.x_usd_row, s.x_kg_row
                           FROM corridor_sides s JOIN corridor_keys k USING (hs_code, exporter, importer)""")
    keys = con.sql("SELECT exporter, importer FROM corridor_keys ORDER BY series_no").pl()
    n = keys.height
    reported = con.sql(REPORTED_SQL, params={"lo": lo, "hi": months_back(lo, -(n_months - 1))}).pl()
    places = pl.concat([keys["exporter"], keys["importer"], reported["reporter"]]).unique().sort()
    place_no = {p: i for i, p in enumerate(places.to_list())}
    published = {flow: np.zeros((len(places), n_months), bool) for flow in ("M", "X")}
    for flow, rows in reported.partition_by("flow", as_dict=True).items():
        published[flow[0]][rows["reporter"].replace_strict(place_no).to_numpy(), rows["month_no"].to_numpy()] = True
    if not n:  # no corridor (an empty warehouse or window)
        return np.zeros(0, bool), {name: np.empty((0, n_months)) for name in ("m_usd", "m_kg", "x_usd", "x_kg", "usd", "kg_row")}
    m_reported = published["M"][keys["importer"].replace_strict(place_no).to_numpy()]
    x_reported = published["X"][keys["exporter"].replace_strict(place_no).to_numpy()]
    side_m = m_reported.sum(axis=1) >= x_reported.sum(axis=1)  # the side reporting more months
    grid = {name: _matrix(cells, name, n, n_months) for name in ("m_usd_row", "m_kg_row", "x_usd_row", "x_kg_row")}
    out = {
        "m_usd": np.where(m_reported, np.nan_to_num(grid["m_usd_row"]), np.nan),
        "m_kg": np.where(m_reported, np.nan_to_num(grid["m_kg_row"]), np.nan),
        "x_usd": np.where(x_reported, np.nan_to_num(grid["x_usd_row"]), np.nan),
        "x_kg": np.where(x_reported, np.nan_to_num(grid["x_kg_row"]), np.nan),
    }
    out["usd"] = np.where(side_m[:, None], out["m_usd"], out["x_usd"])
    out["kg_row"] = np.where(side_m[:, None], np.where(m_reported, grid["m_kg_row"], np.nan),
                             np.where(x_reported, grid["x_kg_row"], np.nan))
    return side_m, out


# What the detectors read of the statistics (the others are steps towards these).
STORED_STATS = [
    "lv", "lw", "n_hist", "lv_mad", "lw_mad", "usd_max_before", "last_trade_before", "usd_avg3", "z_value",
    "z_weight", "usd_expected", "kg_expected",
]


def _store_stats(con, dst: str, key_table: str, keys: list[str], lo: date,
                 columns: dict[str, np.ndarray]) -> None:
    """Write the grid's figures and the stored statistics as temp table `dst`, one row per series
    and month."""
    n, n_months = columns["usd"].shape
    columns = {name: grid for name, grid in columns.items() if name in STORED_STATS or name not in STAT_NAMES}
    months = np.array([months_back(lo, -m) for m in range(n_months)], dtype="datetime64[D]")
    frame = {"series_no": np.repeat(np.arange(n, dtype=np.int64), n_months), "period": np.tile(months, n)}
    for name, grid in columns.items():
        flat = grid.ravel()
        if name == "last_trade_before":
            frame[name] = pl.Series(name, np.where(flat >= 0, months[np.maximum(flat, 0)], np.datetime64("NaT")))
        elif flat.dtype.kind == "f":
            frame[name] = pl.Series(name, flat, nan_to_null=True)
        else:
            frame[name] = flat
    con.register("grid_stats", pl.DataFrame(frame))
    con.execute(STATS_TABLE_SQL.format(dst=dst, key_table=key_table, keys=", ".join(f"k.{k}" for k in keys)))
    con.unregister("grid_stats")


def prepare(wh: Warehouse, window: Window, all_codes: bool = False, fresh: bool = False) -> None:
    """Build the temp tables scope_codes, corridor_stats (and its view corridor_months) and
    commodity_stats.

    Detectors of one run share them: a later call for the same window reuses them, and a run
    that put every code in scope keeps it for all its detectors. `fresh` rebuilds them, as a new
    run must (the data may have changed since). `all_codes` puts every HS code in scope:
    baselines for all, and alerts on all from the detectors that need no controlling country
    (mirror gaps, unit values, new corridors, multivariate outliers).
    """
    built = getattr(wh, "_baselines", None)
    if not fresh and built is not None and built[0] == window and (built[1] or not all_codes):
        return
    con = wh.con
    con.execute(HS_BRIDGE_SQL, [str(reference_path("hs_concordance.csv"))])
    con.execute(SCOPE_CODES_SQL, {"all_codes": all_codes})
    con.execute(CONTROL_EVENTS_SQL)
    # The month grid starts at the first month anything was loaded or reported, not before: earlier
    # grid months are empty for every series and change no statistic.
    first = con.execute(
        """SELECT least((SELECT min(period) FROM flows WHERE freq = 'M'),
                        (SELECT min(period) FROM reporting WHERE freq = 'M'))""").fetchone()[0]
    lo = months_back(window.start, HISTORY_MONTHS)
    lo = max(lo, first) if first else lo
    n_months = (window.end.year - lo.year) * 12 + window.end.month - lo.month + 1
    breakdowns = con.execute("SELECT EXISTS (SELECT 1 FROM flows WHERE partner2 IS NOT NULL)").fetchall()[0][0]
    con.execute(CORRIDOR_SIDES_SQL.format(kept=KEPT_WITH_BREAKDOWNS if breakdowns else KEPT_ALL),
                {"lo": lo, "hi": window.end, "all_codes": all_codes})
    con.execute(CORRIDOR_KEYS_SQL)
    if all_codes:
        con.execute(UNWATCHED_CODES_SQL)
    side_m, columns = _corridor_grid(con, lo, n_months)
    con.register("series_side", pl.DataFrame({"series_no": np.arange(side_m.size, dtype=np.int64),
                                              "side": np.where(side_m, "M", "X")}))
    con.execute("""CREATE OR REPLACE TEMP TABLE corridor_keys AS
                   SELECT k.*, s.side FROM corridor_keys k JOIN series_side s USING (series_no)""")
    con.unregister("series_side")
    columns |= trailing.series_stats(columns["usd"], columns["kg_row"])
    _store_stats(con, "corridor_stats", "corridor_keys", ["hs_code", "exporter", "importer"], lo, columns)
    con.execute(CORRIDOR_MONTHS_VIEW)
    con.execute(COMMODITY_MONTHS_SQL, {"lo": lo})
    con.execute(COMMODITY_KEYS_SQL)
    n = con.execute("SELECT count(*) FROM commodity_keys").fetchall()[0][0]
    cells = _fetch(con, """SELECT k.series_no, c.month_no, c.usd, c.kg_row
                           FROM commodity_months c JOIN commodity_keys k USING (commodity, exporter, importer)""")
    usd, kg = _matrix(cells, "usd", n, n_months), _matrix(cells, "kg_row", n, n_months)
    _store_stats(con, "commodity_stats", "commodity_keys", ["commodity", "exporter", "importer"], lo,
                 {"usd": usd, "kg_row": kg} | trailing.series_stats(usd, kg))
    wh._baselines = (window, all_codes)


# Watched HS6 codes, their commodity and controlling country, plus the uncontrolled codes goods are
# misdeclared under (code_shift pairs from detector/reference/code_shift_pairs.csv). `scored`: the
# detectors alert on the code (the watched codes; with every code in scope, all of them).
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
),
watched AS (
    SELECT hs_code, commodity, controlling_country FROM matched WHERE best = 1
)
SELECT hs_code, commodity, controlling_country, true AS scored FROM watched
UNION ALL
SELECT DISTINCT p.to_code, NULL, NULL, $all_codes FROM code_shift_pairs p
WHERE p.to_code NOT IN (SELECT hs_code FROM watched)
"""

# With every code in scope: the codes of the corridors that are not watched, scored too.
UNWATCHED_CODES_SQL = """
INSERT INTO scope_codes
SELECT DISTINCT hs_code, NULL, NULL, true FROM corridor_keys
WHERE hs_code NOT IN (SELECT hs_code FROM scope_codes)
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
