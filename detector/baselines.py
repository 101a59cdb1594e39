"""Per-corridor monthly series and their robust baselines, shared by the detectors, as a value.

A corridor is (hs6, exporter, importer). Its monthly figure comes from one side only, the side
that reports it more often (the importer's M, CIF, unless the exporter's X covers more months),
so that a series never jumps because it switched between two reporters' books. Missing is not
zero: a month the chosen side did not publish is NULL; a month it published without a row for
this corridor is 0.

Every statistic for month t uses months before t only (trailing windows exclude t), so that a
run over history gives what a monthly run at the time would have. Sums over groups go through
DECIMAL so that their result does not depend on the order parallel threads add rows in: the same
data gives the same scores, to the last bit.

`build` makes a `Baselines` from any DuckDB connection that has a `flows_preferred` relation (the
warehouse, or a partition's share of the flows) and the run's `Scope`. The detectors read only
the `Baselines`: its tables through `sql()` on a connection of its own, and its grid files
through `blocks()`; they never see the warehouse.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from detector import grid
from detector.grid import BLOCK_CELLS, GridBlock
from detector.months import Window, months_ahead
from detector.robust import MAD_TO_SIGMA, sigma_sql
from detector.scope import HISTORY_MONTHS, Scope, plan_warehouse  # noqa: F401 (HISTORY_MONTHS: docs, tests)

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
      AND coalesce(b.to_code, f.hs_code) IN (SELECT hs_code FROM scope_codes)
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

# Every corridor once, numbered in key order (a code's corridors are consecutive).
CORRIDOR_KEYS_SQL = """
CREATE OR REPLACE TEMP TABLE corridor_keys AS
SELECT row_number() OVER (ORDER BY hs_code, exporter, importer) - 1 AS series_no, hs_code, exporter, importer
FROM (SELECT DISTINCT hs_code, exporter, importer FROM corridor_sides)
"""

# The corridors' reported figures, numbered by series, in series order (blocks read ranges of it).
CORRIDOR_CELLS_SQL = """
CREATE OR REPLACE TEMP TABLE corridor_cells AS
SELECT k.series_no, s.month_no, s.m_usd_row, s.m_kg_row, s.x_usd_row, s.x_kg_row
FROM corridor_sides s JOIN corridor_keys k USING (hs_code, exporter, importer)
ORDER BY k.series_no
"""

# Imports whose recorded origin differs from the consignment country, per route and month
# (watched codes; the codes as the importer gives them).
CONSIGNMENTS_SQL = """
SELECT f.hs_code, f.reporter AS importer, f.partner AS declared_origin, f.partner2 AS consignment, f.period,
       CAST(sum(CAST(f.value_usd AS DECIMAL(38, 3))) AS DOUBLE) AS usd
FROM flows_preferred f
WHERE f.freq = 'M' AND f.flow = 'M' AND f.partner2 IS NOT NULL AND f.partner2 <> f.partner
  AND f.period BETWEEN $lo AND $hi
  AND f.hs_code IN (SELECT hs_code FROM scope_codes WHERE commodity IS NOT NULL)
GROUP BY ALL
ORDER BY ALL
"""

# The corridor figures alone (the detectors that need no statistics read these).
CORRIDOR_MONTHS_VIEW = """
CREATE OR REPLACE VIEW corridor_months AS
SELECT hs_code, exporter, importer, period, side, m_usd, x_usd, usd, kg_row FROM corridor_stats
"""

# The same series summed over all codes of a commodity (processing may change the code on the way).
COMMODITY_MONTHS_SQL = """
SELECT sc.commodity, cm.exporter, cm.importer, datediff('month', CAST($lo AS DATE), cm.period) AS month_no,
       min(cm.side) AS side,
       CAST(sum(CAST(cm.usd AS DECIMAL(38, 3))) AS DOUBLE) AS usd, CAST(sum(CAST(cm.kg_row AS DECIMAL(38, 3))) AS DOUBLE) AS kg_row
FROM corridor_months cm JOIN scope_codes sc USING (hs_code)
WHERE sc.commodity IS NOT NULL
GROUP BY ALL
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

# How far the whole market of a code (or commodity) moved in a month, beyond how it usually moves
# and beyond the noise of its own estimate.
# - A month's move is the median, over the code's corridors with trade and a year of history, of
#   each corridor's log change against its trailing-year median (value: lv - lv_med; weight:
#   lw - lw_med, recovered from the robust z and its spread), with at least MARKET_MIN_CORRIDORS
#   corridors. A world-wide price jump moves every corridor at once and so the median; one route's
#   surge does not.
# - That median is not 0 in an ordinary month: a corridor that trades some months only is compared
#   with a trailing median that counts its empty months as 0, so it looks up whenever it trades,
#   and steady growth keeps every corridor above its past year. So the month's usual move, the
#   median of the same statistic over the MARKET_USUAL_MONTHS before (at least MARKET_USUAL_MIN of
#   them, else nothing), is taken off.
# - A median over a few dozen noisy corridors wanders by chance: what is left counts only when it
#   is at least MARKET_MIN_SE standard errors of that median (1.2533 x 1.4826 x MAD / sqrt(n)).
#   A true market move is many of them; noise kept (and rises only) would lift every usual level.
# Only rises count (a market-wide fall, after a control say, is no reason to see surges). Columns:
# {key}, period, market_lv, market_lw (logs, >= 0). `{series}`: corridor_stats or commodity_stats
# (or any relation with their columns); `{where}`: an extra condition.
MARKET_MIN_CORRIDORS = 5
MARKET_USUAL_MONTHS = 24
MARKET_USUAL_MIN = 6
MARKET_MIN_SE = 3.0
MEDIAN_SE_PER_MAD = 1.2533 * MAD_TO_SIGMA   # standard error of a median per MAD, times sqrt(n), under normal noise
_LV_CHANGE = "z_value * " + sigma_sql("lv_mad", 0.15)
_LW_CHANGE = "z_weight * " + sigma_sql("lw_mad", 0.15)
MARKET_SQL = """
WITH month_moves AS (
    SELECT {key}, period,
           CASE WHEN count(*) >= """ + str(MARKET_MIN_CORRIDORS) + """ THEN median(""" + _LV_CHANGE + """) END AS lv_move,
           """ + str(MEDIAN_SE_PER_MAD) + """ * mad(""" + _LV_CHANGE + """) / sqrt(count(*)) AS lv_se,
           CASE WHEN count(z_weight) >= """ + str(MARKET_MIN_CORRIDORS) + """ THEN median(""" + _LW_CHANGE + """) END AS lw_move,
           """ + str(MEDIAN_SE_PER_MAD) + """ * mad(""" + _LW_CHANGE + """) / sqrt(count(z_weight)) AS lw_se
    FROM {series}
    WHERE usd > 0 AND n_hist >= 6 AND z_value IS NOT NULL {where}
    GROUP BY ALL
),
beyond_usual AS (
    SELECT {key}, period, lv_se, lw_se,
           lv_move - CASE WHEN count(lv_move) OVER before >= """ + str(MARKET_USUAL_MIN) + """
                          THEN median(lv_move) OVER before ELSE 0 END AS lv_excess,
           lw_move - CASE WHEN count(lw_move) OVER before >= """ + str(MARKET_USUAL_MIN) + """
                          THEN median(lw_move) OVER before ELSE 0 END AS lw_excess
    FROM month_moves
    WINDOW before AS (PARTITION BY {key} ORDER BY period
                      RANGE BETWEEN INTERVAL """ + str(MARKET_USUAL_MONTHS) + """ MONTH PRECEDING
                                AND INTERVAL 1 MONTH PRECEDING)
)
SELECT {key}, period,
       CASE WHEN lv_excess > 0 AND lv_excess >= """ + str(MARKET_MIN_SE) + """ * lv_se THEN lv_excess ELSE 0 END AS market_lv,
       CASE WHEN lw_excess > 0 AND lw_excess >= """ + str(MARKET_MIN_SE) + """ * lw_se THEN lw_excess ELSE 0 END AS market_lw
FROM beyond_usual
"""


def market_sql(series: str = "corridor_stats", key: str = "hs_code", where: str = "") -> str:
    """MARKET_SQL over one kind of series (a CTE body)."""
    return MARKET_SQL.format(series=series, key=key, where=where)


# The scope's tables a detector may read (besides corridor_stats, corridor_months, corridor_keys,
# commodity_stats, consignments and declarations).
SCOPE_TABLES = ("scope_codes", "control_events", "countries", "code_shift_pairs", "watchlist", "hubs")

# DuckDB's memory for the detectors' queries (they spill beyond it to the baselines' folder).
QUERY_MEMORY_LIMIT = "1GB"


class Baselines:
    """Everything the detectors read for one run (or one partition of it), as a value: the scope,
    the corridor grid (Parquet files), the corridors' keys, the commodity series, the
    consignment records and, where loaded, the declaration lines (a Parquet file).

    Owns its folder and its query connection; `close()` (or leaving a `with` block) removes both."""

    def __init__(self, scope: Scope, folder: Path, grid_files: list[tuple[str, int, int]], keys: pl.DataFrame,
                 consignments: pl.DataFrame, declarations: str | None = None):
        self.scope, self.folder, self.grid_files, self.keys = scope, folder, grid_files, keys
        self.consignments = consignments
        self.declarations = declarations
        self.commodity_stats: pl.DataFrame | None = None
        self._con: duckdb.DuckDBPyConnection | None = None

    @property
    def window(self) -> Window:
        return self.scope.window

    def connection(self) -> duckdb.DuckDBPyConnection:
        """The baselines' own DuckDB connection: its tables as views, nothing else."""
        if self._con is None:
            con = duckdb.connect(config={"memory_limit": QUERY_MEMORY_LIMIT,
                                         "temp_directory": str(self.folder / "spill")})
            if self.grid_files:
                listed = ", ".join("'" + path.replace("'", "''") + "'" for path, _, _ in self.grid_files)
                con.execute(f"CREATE VIEW corridor_stats AS SELECT * FROM read_parquet([{listed}])")
                con.execute(CORRIDOR_MONTHS_VIEW)
            for name in SCOPE_TABLES:
                con.register(name, self.scope.table(name))
            con.register("corridor_keys", self.keys)
            if self.consignments.width:
                con.register("consignments", self.consignments)
            if self.commodity_stats is not None:
                con.register("commodity_stats", self.commodity_stats)
            if self.declarations:
                quoted = self.declarations.replace("'", "''")
                con.execute(f"CREATE VIEW declarations AS SELECT * FROM read_parquet('{quoted}')")
            self._con = con
        return self._con

    def sql(self, query: str, params: dict | None = None) -> pl.DataFrame:
        """A query over the baselines' tables; `$start`/`$end` are the window's bounds."""
        args = {"start": self.window.start, "end": self.window.end, **(params or {})}
        used = {k: v for k, v in args.items() if f"${k}" in query}
        return self.connection().sql(query, params=used).pl()

    def months(self) -> np.ndarray:
        """The grid's months, first to last."""
        return np.array([months_ahead(self.scope.lo, m) for m in range(self.scope.n_months)], dtype="datetime64[D]")

    def scored_keys(self) -> pl.DataFrame:
        """The corridors of the scored codes (series_no, hs_code, exporter, importer, side), in series order."""
        scored = self.scope.table("scope_codes").filter(pl.col("scored"))["hs_code"]
        return self.keys.filter(pl.col("hs_code").is_in(scored.implode()))

    def blocks(self, columns: list[str], block_cells: int = BLOCK_CELLS) -> Iterator[GridBlock]:
        """The scored codes' grid as dense matrices, whole codes at a time (see grid.read_blocks)."""
        return grid.read_blocks(self.grid_files, self.scored_keys(), self.months(), columns, block_cells)

    def map_blocks(self, columns: list[str], work: Callable[[GridBlock], object],
                   block_cells: int = BLOCK_CELLS) -> list:
        """`work(block)` for every block of `blocks()`, two at a time, the results in block order."""
        return grid.map_blocks(self.blocks(columns, block_cells), work)

    def country_names(self) -> dict[str, str]:
        return self.scope.country_names()

    def close_connection(self) -> None:
        """Close the query connection (the next query opens it again, with the tables as they are)."""
        if self._con is not None:
            self._con.close()
            self._con = None

    def close(self) -> None:
        self.close_connection()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Baselines:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def build(con: duckdb.DuckDBPyConnection, scope: Scope, folder: Path | None = None) -> Baselines:
    """The baselines of the flows `con` holds (its `flows_preferred` relation) for `scope`, in
    `folder` (a new temporary folder when None)."""
    folder = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="detector-baselines-"))
    folder.mkdir(parents=True, exist_ok=True)
    lo, hi, n_months = scope.lo, scope.window.end, scope.n_months
    con.register("scope_codes", scope.table("scope_codes"))
    con.register("hs_bridge", scope.table("hs_bridge"))
    try:
        con.execute(CORRIDOR_SIDES_SQL.format(kept=KEPT_WITH_BREAKDOWNS if scope.breakdowns else KEPT_ALL),
                    {"lo": lo, "hi": hi})
        con.execute(CORRIDOR_KEYS_SQL)
        con.execute(CORRIDOR_CELLS_SQL)
        con.execute("DROP TABLE corridor_sides")  # all in corridor_cells now
        keys = con.sql("SELECT series_no, hs_code, exporter, importer FROM corridor_keys ORDER BY series_no").pl()
        published = grid.Publication(scope.table("published"), pl.concat([keys["exporter"], keys["importer"]]),
                                     n_months)
        files, sides = grid.write_grid(
            lambda first, last: grid.fetch_columns(
                con, "SELECT * FROM corridor_cells WHERE series_no >= $first AND series_no < $last",
                {"first": first, "last": last}),
            keys, published, folder, lo, n_months)
        con.execute("DROP TABLE corridor_cells")
        con.execute("DROP TABLE corridor_keys")
        keys = keys.with_columns(pl.Series("side", sides, dtype=pl.String))
        consignments = con.sql(CONSIGNMENTS_SQL, params={"lo": lo, "hi": hi}).pl()
    finally:
        con.unregister("scope_codes")
        con.unregister("hs_bridge")
    baselines = Baselines(scope, folder, files, keys, consignments)
    commodity_stats = _commodity_stats(baselines)
    baselines.close_connection()  # opened again with the commodity series
    baselines.commodity_stats = commodity_stats
    return baselines


def _commodity_stats(baselines: Baselines) -> pl.DataFrame:
    """The corridors of each watched commodity summed (few series: one block)."""
    scope = baselines.scope
    months = baselines.sql(COMMODITY_MONTHS_SQL, {"lo": scope.lo})
    keys = (months.group_by("commodity", "exporter", "importer").agg(pl.col("side").min())
            .sort("commodity", "exporter", "importer").with_row_index("series_no"))
    cells = months.drop("side").join(keys.drop("side"), on=["commodity", "exporter", "importer"])
    columns = {c: cells[c].to_numpy() for c in ("series_no", "month_no", "usd", "kg_row")}
    return grid.series_grid(keys.drop("side"), columns, (keys["side"] == "M").to_numpy(), scope.lo, scope.n_months)


def prepare(wh, window: Window, all_codes: bool = False, scope: Scope | None = None) -> Baselines:
    """The baselines of a warehouse's flows for `window`, in its scratch folder: every code in
    scope with `all_codes`, else the watchlist's. The caller closes them."""
    scope = scope or plan_warehouse(wh.con, window, all_codes)
    with wh.lend_memory():  # the blocks' arrays live on the Python side
        return build(wh.con, scope, _new_folder(wh))


def for_declarations(wh, scope: Scope) -> Baselines:
    """Baselines holding the declaration lines alone (for detectors that read no corridor)."""
    folder = _new_folder(wh)
    empty = pl.DataFrame(schema={"series_no": pl.Int64, "hs_code": pl.String, "exporter": pl.String,
                                 "importer": pl.String, "side": pl.String})
    return Baselines(scope, folder, [], empty, pl.DataFrame(), _declarations_file(wh.con, scope.window, folder))


def _new_folder(wh) -> Path:
    folder = wh.scratch() / f"baselines-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    return folder


def _declarations_file(con: duckdb.DuckDBPyConnection, window: Window, folder: Path) -> str | None:
    """The declaration lines up to the window's end as a Parquet file in `folder` (None: none loaded)."""
    if not con.execute("SELECT EXISTS (SELECT 1 FROM declarations WHERE period <= ?)", [window.end]).fetchall()[0][0]:
        return None
    path = str(Path(folder) / "declarations.parquet")
    quoted = path.replace("'", "''")
    con.execute(f"COPY (SELECT * FROM declarations WHERE period <= DATE '{window.end.isoformat()}') "
                f"TO '{quoted}' (FORMAT parquet)")
    return path
