"""What a run covers, decided once before any detector runs: the window, the HS codes in scope
(the watchlist's, or every code), and the small tables every part of the run reads the same way
(the reporting calendar, the source chosen for each reporter and month, the HS bridge, the
controls, the countries).

A run's partitions each hold a part of the flows; these tables are made over all of them and
handed to every partition, so that a partition's baselines equal the same codes' baselines in a
run over everything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import duckdb
import polars as pl

from detector.months import Window, months_back, months_between
from detector.reference import reference_path

HISTORY_MONTHS = 36  # how far before the window the baselines look

# One HS2022 successor per older code: the code itself when it survived, else a watched successor,
# else the first listed (a split basket's series continues under its controlled part).
HS_BRIDGE_SQL = """
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

# Watched HS6 codes, their commodity, controlling country and basket flag, plus the uncontrolled codes goods are
# misdeclared under (code_shift pairs from detector/reference/code_shift_pairs.csv). `scored`: the
# detectors alert on the code (the watched codes; with every code in scope, all of them, older
# revisions' codes carried onto their HS2022 successors).
SCOPE_CODES_SQL = """
WITH matched AS (
    SELECT c.hs_code, w.commodity, w.controlling_country, coalesce(w.basket, false) AS basket,
           -- the longest watchlist prefix of the code; a national line under it (81129230 under
           -- 811292) only when nothing covers the whole code
           row_number() OVER (PARTITION BY c.hs_code
                              ORDER BY (c.hs_code LIKE w.hs_prefix || '%') DESC, length(w.hs_prefix) DESC) AS best
    FROM flow_codes c JOIN watchlist w ON c.hs_code LIKE w.hs_prefix || '%' OR w.hs_prefix LIKE c.hs_code || '%'
),
watched AS (
    SELECT hs_code, commodity, controlling_country, basket FROM matched WHERE best = 1
),
listed AS (
    SELECT hs_code, commodity, controlling_country, basket, true AS scored FROM watched
    UNION ALL
    SELECT DISTINCT p.to_code, NULL, NULL, false, $all_codes FROM code_shift_pairs p
    WHERE p.to_code NOT IN (SELECT hs_code FROM watched)
),
every_code AS (
    SELECT hs_code FROM flow_codes
    UNION
    SELECT b.to_code FROM flow_codes c JOIN hs_bridge b ON b.from_code = c.hs_code
)
SELECT * FROM listed
UNION ALL
SELECT hs_code, NULL, NULL, false, true FROM every_code
WHERE $all_codes AND hs_code NOT IN (SELECT hs_code FROM listed)
ORDER BY hs_code
"""

# Export controls exploded to one row per (controlling country, commodity, target, date); the
# targets 'ALL' stay 'ALL'. Only measures that restrict exports (licence, ban) count.
CONTROL_EVENTS_SQL = """
SELECT country, trim(commodity) AS commodity, trim(target) AS target, date, kind, instrument
FROM controls,
     unnest(string_split(commodities, ';')) AS c(commodity),
     unnest(string_split(targets, ';')) AS t(target)
WHERE kind IN ('licence', 'ban')
"""

# Known re-export and processing hubs (detector/reference/hubs.csv).
HUBS_SQL = """
SELECT iso3, kind FROM read_csv(?, header = true, auto_detect = false,
                                columns = {'iso3': 'VARCHAR', 'kind': 'VARCHAR', 'note': 'VARCHAR'})
ORDER BY iso3
"""

# Which reporter published which flow for which month of the grid.
PUBLISHED_SQL = """
SELECT DISTINCT reporter, flow, datediff('month', CAST($lo AS DATE), period) AS month_no FROM reporting
WHERE freq = 'M' AND flow IN ('M', 'X') AND period BETWEEN $lo AND $hi
ORDER BY ALL
"""


@dataclass
class Scope:
    """A run's window and codes, and the small tables made over all its flows (picklable, so it
    can be sent to worker processes and Spark tasks)."""

    window: Window
    all_codes: bool
    lo: date          # the grid's first month
    n_months: int     # months from lo to the window's end
    breakdowns: bool  # some flows give a country of consignment (partner2)
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)

    def table(self, name: str) -> pl.DataFrame:
        return self.tables[name]

    def country_names(self) -> dict[str, str]:
        names = self.tables["countries"]
        return dict(zip(names["iso3"].to_list(), names["name"].to_list(), strict=True))


def plan(con: duckdb.DuckDBPyConnection, window: Window, all_codes: bool, first: date | None,
         breakdowns: bool, source_choice: pl.DataFrame | None = None) -> Scope:
    """The run's scope from a connection holding the reference tables (watchlist, code_shift_pairs,
    controls, countries), `reporting` and `flow_codes` (the distinct HS6 codes of the flows);
    `first`: the first month any monthly flow or report was loaded."""
    lo = months_back(window.start, HISTORY_MONTHS)
    lo = max(lo, first) if first else lo
    tables = {"hs_bridge": con.sql(HS_BRIDGE_SQL, params=[str(reference_path("hs_concordance.csv"))]).pl()}
    con.register("hs_bridge", tables["hs_bridge"])
    try:
        tables["scope_codes"] = con.sql(SCOPE_CODES_SQL, params={"all_codes": all_codes}).pl()
    finally:
        con.unregister("hs_bridge")
    tables["control_events"] = con.sql(CONTROL_EVENTS_SQL).pl()
    tables["countries"] = con.sql("SELECT iso3, name FROM countries ORDER BY iso3").pl()
    tables["code_shift_pairs"] = con.sql("SELECT from_code, to_code FROM code_shift_pairs").pl()
    tables["watchlist"] = con.sql("SELECT * FROM watchlist").pl()
    tables["hubs"] = con.sql(HUBS_SQL, params=[str(reference_path("hubs.csv"))]).pl()
    tables["published"] = con.sql(PUBLISHED_SQL, params={"lo": lo, "hi": window.end}).pl()
    if source_choice is not None:
        tables["source_choice"] = source_choice
    return Scope(window, all_codes, lo, months_between(lo, window.end) + 1, breakdowns, tables)


def plan_warehouse(con: duckdb.DuckDBPyConnection, window: Window, all_codes: bool,
                   with_source_choice: bool = False) -> Scope:
    """The run's scope from a warehouse connection; `with_source_choice` adds the source chosen
    for each reporter, flow and month, which partitions holding a part of the flows need."""
    first = con.execute(
        """SELECT least((SELECT min(period) FROM flows WHERE freq = 'M'),
                        (SELECT min(period) FROM reporting WHERE freq = 'M'))""").fetchall()[0][0]
    breakdowns = con.execute("SELECT EXISTS (SELECT 1 FROM flows WHERE partner2 IS NOT NULL)").fetchall()[0][0]
    codes = con.sql("SELECT DISTINCT left(hs_code, 6) AS hs_code FROM flows").pl()
    choice = con.sql("SELECT * FROM source_choice").pl() if with_source_choice else None
    con.register("flow_codes", codes)
    try:
        return plan(con, window, all_codes, first, breakdowns, choice)
    finally:
        con.unregister("flow_codes")
