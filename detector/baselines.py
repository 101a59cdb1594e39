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

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from detector import trailing
from detector.months import Window, months_ahead, months_back
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

# Every corridor once, numbered in key order (a code's corridors are consecutive).
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

# The corridor figures alone (the detectors that need no statistics read these).
CORRIDOR_MONTHS_VIEW = """
CREATE OR REPLACE TEMP VIEW corridor_months AS
SELECT hs_code, exporter, importer, period, side, m_usd, x_usd, usd, kg_row FROM corridor_stats
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

# Series x months handled at once: bounds the arrays in memory whatever the size of the world.
BLOCK_CELLS = 2_000_000

# The corridors' reported figures, numbered by series, in series order (blocks read ranges of it).
CORRIDOR_CELLS_SQL = """
CREATE OR REPLACE TEMP TABLE corridor_cells AS
SELECT k.series_no, s.month_no, s.m_usd_row, s.m_kg_row, s.x_usd_row, s.x_kg_row
FROM corridor_sides s JOIN corridor_keys k USING (hs_code, exporter, importer)
ORDER BY k.series_no
"""

# What the detectors read of the statistics (the others are steps towards these).
STORED_STATS = [
    "lv", "lw", "n_hist", "lv_mad", "lw_mad", "usd_max_before", "last_trade_before", "usd_avg3", "z_value",
    "z_weight", "usd_expected", "kg_expected",
]


def _matrix(cells: dict[str, np.ndarray], column: str, n_series: int, n_months: int) -> np.ndarray:
    """A sparse (series_no, month_no, value) column scattered onto the dense grid, NaN elsewhere."""
    grid = np.full((n_series, n_months), np.nan)
    grid[cells["series_no"].astype(np.int64), cells["month_no"].astype(np.int64)] = cells[column]
    return grid


def _fetch(con, sql: str, params=None) -> dict[str, np.ndarray]:
    """A query's columns as NumPy arrays (NULL -> NaN for numbers)."""
    con.complete()  # an earlier execute() must be finished before a relation query
    frame = con.sql(sql, params=params).pl()
    return {c: frame[c].to_numpy() for c in frame.columns}


class Publication:
    """Which reporter published which flow in which month of the grid, as boolean matrices."""

    def __init__(self, con, lo: date, n_months: int):
        reported = con.sql(REPORTED_SQL, params={"lo": lo, "hi": months_ahead(lo, n_months - 1)}).pl()
        places = con.sql("""SELECT DISTINCT p FROM (SELECT exporter FROM corridor_keys UNION ALL
                                                     SELECT importer FROM corridor_keys) t(p)""").pl()
        names = pl.concat([places["p"], reported["reporter"]]).unique().sort()
        self.place_no = {p: i for i, p in enumerate(names.to_list())}
        self.by_flow = {flow: np.zeros((len(names), n_months), bool) for flow in ("M", "X")}
        for (flow,), rows in reported.partition_by("flow", as_dict=True).items():
            self.by_flow[flow][rows["reporter"].replace_strict(self.place_no).to_numpy(),
                               rows["month_no"].to_numpy()] = True

    def of(self, flow: str, reporters: pl.Series) -> np.ndarray:
        rows = reporters.replace_strict(self.place_no, return_dtype=pl.Int64).to_numpy().astype(np.int64)
        return self.by_flow[flow][rows]


def _corridor_block(cells: dict[str, np.ndarray], keys: pl.DataFrame, published: Publication,
                    n_months: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Both sides' reports of a block of corridors on the dense grid, and the side each series reads.

    Missing is not zero: a month the side did not publish is NaN; a month it published without a
    row for this corridor is 0 (value) and NaN (weight: unknown).
    """
    n = keys.height
    m_reported, x_reported = published.of("M", keys["importer"]), published.of("X", keys["exporter"])
    side_m = m_reported.sum(axis=1) >= x_reported.sum(axis=1)  # the side reporting more months
    grid = {name: _matrix(cells, name, n, n_months) for name in ("m_usd_row", "m_kg_row", "x_usd_row", "x_kg_row")}
    out = {
        "m_usd": np.where(m_reported, np.nan_to_num(grid["m_usd_row"]), np.nan),
        "x_usd": np.where(x_reported, np.nan_to_num(grid["x_usd_row"]), np.nan),
    }
    out["usd"] = np.where(side_m[:, None], out["m_usd"], out["x_usd"])
    out["kg_row"] = np.where(side_m[:, None], np.where(m_reported, grid["m_kg_row"], np.nan),
                             np.where(x_reported, grid["x_kg_row"], np.nan))
    return side_m, out


def _stats_frame(keys: pl.DataFrame, lo: date, side_m: np.ndarray, columns: dict[str, np.ndarray]) -> pl.DataFrame:
    """A block's figures and stored statistics, one row per series and month: the series' keys
    (`keys`: its number and key columns, one row per series of the block), month, side, number."""
    n, n_months = columns["usd"].shape
    months = np.array([months_ahead(lo, m) for m in range(n_months)], dtype="datetime64[D]")
    key_columns = [c for c in keys.columns if c != "series_no"]
    # the side is a key of the series too: gathered with the keys (strings made per cell cost more)
    per_series = keys.select(key_columns).with_columns(pl.Series("side", np.where(side_m, "M", "X")))
    frame = per_series.select(pl.all().gather(np.repeat(np.arange(n), n_months))).with_columns(
        pl.Series("period", np.tile(months, n)),
        pl.Series("series_no", np.repeat(keys["series_no"].to_numpy(), n_months))).select(
        *key_columns, "period", "side", "series_no")
    stats = {}
    for name, grid in columns.items():
        if name in STAT_NAMES and name not in STORED_STATS:
            continue
        flat = grid.ravel()
        if name == "last_trade_before":
            stats[name] = pl.Series(name, np.where(flat >= 0, months[np.maximum(flat, 0)], np.datetime64("NaT")))
        elif flat.dtype.kind == "f":
            stats[name] = pl.Series(name, flat, nan_to_null=True)
        else:
            stats[name] = pl.Series(name, flat)
    return frame.with_columns(**stats)


# Blocks computed at once (each on its own thread: NumPy, Numba and Parquet writing release the GIL).
BUILD_THREADS = 2


def _corridor_stats(con, folder: Path, lo: date, n_months: int) -> None:
    """corridor_stats, built a block of corridors at a time as Parquet files in `folder`, read
    through a view.

    A Parquet file is written about three times faster than the same rows are appended to a
    DuckDB table, and blocks are independent: the main thread reads each block's cells while
    workers compute and write the blocks before it."""
    con.execute(CORRIDOR_CELLS_SQL)
    con.execute("DROP TABLE corridor_sides")  # all in corridor_cells now
    keys = con.sql("SELECT series_no, hs_code, exporter, importer FROM corridor_keys ORDER BY series_no").pl()
    published = Publication(con, lo, n_months)
    for old in folder.glob("corridor_stats-*.parquet"):  # an earlier build of this connection
        old.unlink()

    def build(first: int, last: int, cells: dict[str, np.ndarray], path: str) -> None:
        block_keys = keys.slice(first, last - first)
        side_m, columns = _corridor_block(cells, block_keys, published, n_months)
        columns |= trailing.series_stats(columns["usd"], columns["kg_row"])
        _stats_frame(block_keys, lo, side_m, columns).write_parquet(path, compression="lz4")

    files = []
    with ThreadPoolExecutor(BUILD_THREADS) as pool:
        building: deque = deque()
        for first, last in _code_blocks(keys["hs_code"], n_months, BLOCK_CELLS) or [(0, 0)]:  # no corridor: one empty file
            cells = _fetch(con, "SELECT * FROM corridor_cells WHERE series_no >= $first AND series_no < $last",
                           {"first": first, "last": last})
            cells["series_no"] = cells["series_no"] - first
            files.append((str(folder / f"corridor_stats-{len(files):06d}.parquet"), first, last))
            if len(building) == BUILD_THREADS:  # at most this many blocks in memory, plus the next one's cells
                building.popleft().result()
            building.append(pool.submit(build, first, last, cells, files[-1][0]))
            del cells
        for future in building:
            future.result()
    con.execute("DROP TABLE corridor_cells")
    con.execute("CREATE OR REPLACE TEMP TABLE corridor_stats_files "
                "(path VARCHAR, first_series BIGINT, end_series BIGINT, first_month DATE, n_months INTEGER)")
    con.executemany("INSERT INTO corridor_stats_files VALUES (?, ?, ?, ?, ?)",
                    [[path, first, last, lo, n_months] for path, first, last in files])
    listed = ", ".join("'" + path.replace("'", "''") + "'" for path, _, _ in files)
    con.execute(f"CREATE OR REPLACE TEMP VIEW corridor_stats AS SELECT * FROM read_parquet([{listed}])")


def _commodity_stats(con, lo: date, n_months: int) -> None:
    """commodity_stats: the corridors of each watched commodity summed (few series: one block)."""
    con.execute(COMMODITY_MONTHS_SQL, {"lo": lo})
    con.execute(COMMODITY_KEYS_SQL)
    keys = con.sql("SELECT series_no, commodity, exporter, importer, side FROM commodity_keys ORDER BY series_no").pl()
    cells = _fetch(con, """SELECT k.series_no, c.month_no, c.usd, c.kg_row
                           FROM commodity_months c JOIN commodity_keys k USING (commodity, exporter, importer)""")
    usd, kg = _matrix(cells, "usd", keys.height, n_months), _matrix(cells, "kg_row", keys.height, n_months)
    frame = _stats_frame(keys.drop("side"), lo, (keys["side"] == "M").to_numpy(),
                         {"usd": usd, "kg_row": kg} | trailing.series_stats(usd, kg))
    con.register("commodity_frame", frame)
    con.execute("CREATE OR REPLACE TEMP TABLE commodity_stats AS SELECT * FROM commodity_frame")
    con.unregister("commodity_frame")


class GridBlock:
    """Whole codes' corridors on the dense series x month grid: `keys` (series_no, hs_code,
    exporter, importer, one row per series), `months` (the grid's months) and `columns`, each a
    (series x month) matrix with NaN for NULL."""

    def __init__(self, keys: pl.DataFrame, months: np.ndarray, columns: dict[str, np.ndarray]):
        self.keys, self.months, self.columns = keys, months, columns

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]


# The scored codes' corridors, numbered as in corridor_stats.
SCORED_KEYS_SQL = """
SELECT k.series_no, k.hs_code, k.exporter, k.importer
FROM corridor_keys k SEMI JOIN scope_codes sc ON sc.hs_code = k.hs_code AND sc.scored
ORDER BY k.series_no
"""


def _code_blocks(hs_codes: pl.Series, n_months: int, block_cells: int) -> list[tuple[int, int]]:
    """(first, end) row ranges of series sorted by code: whole codes, about `block_cells` cells each
    (a code larger than that alone)."""
    code_starts = np.flatnonzero(hs_codes.ne_missing(hs_codes.shift(1)).to_numpy())
    # a block ends where a code starts and the block would exceed block_cells
    block_of_code = code_starts * n_months // max(block_cells, n_months)
    cuts = code_starts[np.flatnonzero(np.diff(block_of_code, prepend=-1))].tolist()
    return list(zip(cuts, [*cuts[1:], len(hs_codes)], strict=True)) if cuts else []


def corridor_blocks(con, columns: list[str], block_cells: int = BLOCK_CELLS):
    """corridor_stats of the scored codes as dense matrices, whole codes at a time (so a figure
    summed over a code's corridors, such as an importer's supply, is complete in one block), for
    detectors whose windows are array operations rather than SQL windows.

    Read straight from the grid's Parquet files, which hold whole codes in grid order (series by
    month): no query, sort or scatter, only the conversion of NULL to NaN."""
    files = con.sql("SELECT * FROM corridor_stats_files ORDER BY first_series").fetchall()
    months = grid_months(con)
    keys = con.sql(SCORED_KEYS_SQL).pl()
    scored = keys["series_no"].to_numpy()
    for path, first, end, _, n_months in files:
        low, high = np.searchsorted(scored, [first, end])
        if low == high:
            continue
        file_keys = keys.slice(low, high - low)
        rows = scored[low:high] - first
        frame = pl.read_parquet(path, columns=columns)
        if frame.height != (end - first) * n_months:
            raise RuntimeError(f"{path}: {frame.height} rows, not the {end - first} x {n_months} grid it was written as")
        every = len(rows) == end - first  # all the file's series are scored (every code in scope): no copy
        grid = {}
        for name in columns:  # NULL comes out as NaN
            values = frame[name].to_numpy().astype(float, copy=False).reshape(end - first, n_months)
            grid[name] = values if every else values[rows]
        del frame
        for a, b in _code_blocks(file_keys["hs_code"], n_months, block_cells):
            yield GridBlock(file_keys.slice(a, b - a), months, {name: values[a:b] for name, values in grid.items()})


def grid_months(con) -> np.ndarray:
    """The months of the corridor grid (corridor_stats), first to last."""
    lo, n_months = con.execute("SELECT min(first_month), max(n_months) FROM corridor_stats_files").fetchall()[0]
    return np.array([months_ahead(lo, m) for m in range(n_months or 0)], dtype="datetime64[D]")


def map_corridor_blocks(con, columns: list[str], work, block_cells: int = BLOCK_CELLS) -> list:
    """`work(block)` for every block of corridor_blocks, BUILD_THREADS blocks at a time (array work
    releases the GIL), the results in block order; at most that many blocks in memory, plus the
    one being read."""
    results, running = [], deque()
    with ThreadPoolExecutor(BUILD_THREADS) as pool:
        for block in corridor_blocks(con, columns, block_cells):
            if len(running) == BUILD_THREADS:
                results.append(running.popleft().result())
            running.append(pool.submit(work, block))
            del block
        results.extend(future.result() for future in running)
    return results


def prepare(wh: Warehouse, window: Window, all_codes: bool = False, fresh: bool = False) -> None:
    """Build scope_codes, commodity_stats (temp tables) and corridor_stats (a temp view of Parquet
    files in the warehouse's scratch folder, see Warehouse.scratch) with its view corridor_months.

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
    with wh.lend_memory():  # the blocks' arrays live on the Python side
        _corridor_stats(con, wh.scratch(), lo, n_months)
    con.execute(CORRIDOR_MONTHS_VIEW)
    _commodity_stats(con, lo, n_months)
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
