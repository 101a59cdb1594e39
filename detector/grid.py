"""The dense corridor grid: every corridor's monthly figures and trailing statistics as
(series x month) matrices, built and stored a block of whole HS codes at a time.

A block's statistics depend on its own series and the reporting calendar only, so blocks (and
whole partitions of codes) can be built anywhere in any order and give the same numbers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from detector import trailing
from detector.months import months_ahead
from detector.trailing import STAT_NAMES

# Series x months handled at once: bounds the arrays in memory whatever the size of the world.
BLOCK_CELLS = 2_000_000

# Blocks computed at once (each on its own thread: NumPy, Numba and Parquet writing release the GIL).
BUILD_THREADS = 2

# What the detectors read of the statistics (the others are steps towards these).
STORED_STATS = [
    "lv", "lw", "n_hist", "lv_mad", "lw_mad", "usd_max_before", "last_trade_before", "usd_avg3", "z_value",
    "z_weight", "usd_expected", "kg_expected",
]


def matrix(cells: dict[str, np.ndarray], column: str, n_series: int, n_months: int) -> np.ndarray:
    """A sparse (series_no, month_no, value) column scattered onto the dense grid, NaN elsewhere."""
    grid = np.full((n_series, n_months), np.nan)
    grid[cells["series_no"].astype(np.int64), cells["month_no"].astype(np.int64)] = cells[column]
    return grid


def fetch_columns(con, sql: str, params=None) -> dict[str, np.ndarray]:
    """A query's columns as NumPy arrays (NULL -> NaN for numbers)."""
    con.complete()  # an earlier execute() must be finished before a relation query
    frame = con.sql(sql, params=params).pl()
    return {c: frame[c].to_numpy() for c in frame.columns}


class Publication:
    """Which reporter published which flow in which month of the grid, as boolean matrices.

    `published`: (reporter, flow, month_no) rows of the run's reporting calendar; `places`: every
    country that appears as exporter or importer of a corridor."""

    def __init__(self, published: pl.DataFrame, places: pl.Series, n_months: int):
        names = pl.concat([places, published["reporter"]]).unique().sort()
        self.place_no = {p: i for i, p in enumerate(names.to_list())}
        self.by_flow = {flow: np.zeros((len(names), n_months), bool) for flow in ("M", "X")}
        for (flow,), rows in published.partition_by("flow", as_dict=True).items():
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
    grid = {name: matrix(cells, name, n, n_months) for name in ("m_usd_row", "m_kg_row", "x_usd_row", "x_kg_row")}
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


def write_grid(cells_of: Callable[[int, int], dict[str, np.ndarray]], keys: pl.DataFrame,
               published: Publication, folder: Path, lo: date, n_months: int
               ) -> tuple[list[tuple[str, int, int]], np.ndarray]:
    """The grid's Parquet files in `folder`, one per block of whole codes: (path, first series,
    end series) each, and the side each series reads ('M' or 'X'). `cells_of(first, end)` gives the block's reported figures (series_no, month_no
    and the four m/x usd/kg columns); `keys` holds series_no, hs_code, exporter, importer in series
    order.

    A Parquet file is written about three times faster than the same rows are appended to a DuckDB
    table, and blocks are independent: the caller's thread reads each block's cells while workers
    compute and write the blocks before it."""

    sides = np.full(keys.height, "M", dtype=object)

    def build(first: int, last: int, cells: dict[str, np.ndarray], path: str) -> None:
        block_keys = keys.slice(first, last - first)
        side_m, columns = _corridor_block(cells, block_keys, published, n_months)
        sides[first:last] = np.where(side_m, "M", "X")
        columns |= trailing.series_stats(columns["usd"], columns["kg_row"])
        _stats_frame(block_keys, lo, side_m, columns).write_parquet(path, compression="lz4")

    files = []
    with ThreadPoolExecutor(BUILD_THREADS) as pool:
        building: deque = deque()
        for first, last in code_blocks(keys["hs_code"], n_months, BLOCK_CELLS) or [(0, 0)]:  # no corridor: one empty file
            cells = cells_of(first, last)
            cells["series_no"] = cells["series_no"] - first
            files.append((str(folder / f"corridor_stats-{len(files):06d}.parquet"), first, last))
            if len(building) == BUILD_THREADS:  # at most this many blocks in memory, plus the next one's cells
                building.popleft().result()
            building.append(pool.submit(build, first, last, cells, files[-1][0]))
            del cells
        for future in building:
            future.result()
    return files, sides


def series_grid(keys: pl.DataFrame, cells: dict[str, np.ndarray], side_m: np.ndarray, lo: date,
                n_months: int) -> pl.DataFrame:
    """A small set of series (usd and kg_row cells) and their statistics, in one frame."""
    usd, kg = matrix(cells, "usd", keys.height, n_months), matrix(cells, "kg_row", keys.height, n_months)
    return _stats_frame(keys, lo, side_m, {"usd": usd, "kg_row": kg} | trailing.series_stats(usd, kg))


class GridBlock:
    """Whole codes' corridors on the dense series x month grid: `keys` (series_no, hs_code,
    exporter, importer, one row per series), `months` (the grid's months) and `columns`, each a
    (series x month) matrix with NaN for NULL."""

    def __init__(self, keys: pl.DataFrame, months: np.ndarray, columns: dict[str, np.ndarray]):
        self.keys, self.months, self.columns = keys, months, columns

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]


def code_blocks(hs_codes: pl.Series, n_months: int, block_cells: int) -> list[tuple[int, int]]:
    """(first, end) row ranges of series sorted by code: whole codes, about `block_cells` cells each
    (a code larger than that alone)."""
    code_starts = np.flatnonzero(hs_codes.ne_missing(hs_codes.shift(1)).to_numpy())
    # a block ends where a code starts and the block would exceed block_cells
    block_of_code = code_starts * n_months // max(block_cells, n_months)
    cuts = code_starts[np.flatnonzero(np.diff(block_of_code, prepend=-1))].tolist()
    return list(zip(cuts, [*cuts[1:], len(hs_codes)], strict=True)) if cuts else []


def read_blocks(files: list[tuple[str, int, int]], keys: pl.DataFrame, months: np.ndarray, columns: list[str],
                block_cells: int = BLOCK_CELLS) -> Iterator[GridBlock]:
    """The grid of the series in `keys` (a subset of the files' series, in series order) as dense
    matrices, whole codes at a time (so a figure summed over a code's corridors, such as an
    importer's supply, is complete in one block).

    Read straight from the Parquet files, which hold whole codes in grid order (series by month):
    no query, sort or scatter, only the conversion of NULL to NaN."""
    n_months = len(months)
    wanted = keys["series_no"].to_numpy()
    for path, first, end in files:
        low, high = np.searchsorted(wanted, [first, end])
        if low == high:
            continue
        file_keys = keys.slice(low, high - low)
        rows = wanted[low:high] - first
        frame = pl.read_parquet(path, columns=columns)
        if frame.height != (end - first) * n_months:
            raise RuntimeError(f"{path}: {frame.height} rows, not the {end - first} x {n_months} grid it was written as")
        every = len(rows) == end - first  # all the file's series are wanted (every code in scope): no copy
        grid = {}
        for name in columns:  # NULL comes out as NaN
            values = frame[name].to_numpy().astype(float, copy=False).reshape(end - first, n_months)
            grid[name] = values if every else values[rows]
        del frame
        for a, b in code_blocks(file_keys["hs_code"], n_months, block_cells):
            yield GridBlock(file_keys.slice(a, b - a), months, {name: values[a:b] for name, values in grid.items()})


def map_blocks(blocks: Iterator[GridBlock], work: Callable[[GridBlock], object]) -> list:
    """`work(block)` for every block, BUILD_THREADS blocks at a time (array work releases the GIL),
    the results in block order; at most that many blocks in memory, plus the one being read."""
    results, running = [], deque()
    with ThreadPoolExecutor(BUILD_THREADS) as pool:
        for block in blocks:
            if len(running) == BUILD_THREADS:
                results.append(running.popleft().result())
            running.append(pool.submit(work, block))
            del block
        results.extend(future.result() for future in running)
    return results
