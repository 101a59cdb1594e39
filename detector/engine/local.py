"""The detectors on this machine: in this process over the whole warehouse (the default), or on
N worker processes, each taking whole partitions of HS codes written out as Parquet files."""

from __future__ import annotations

import multiprocessing
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import polars as pl

from detector import baselines as baselines_module
from detector.engine.task import FLOW_COLUMNS, PartitionResult, detect_partition, run_partition
from detector.scope import Scope
from detector.settings import Settings

# Tasks per worker: more, smaller tasks even out partitions of very different sizes.
TASKS_PER_WORKER = 2

# Each partition's flows: the monthly rows of the grid's months, with the task they go to.
BUCKETED_FLOWS_SQL = """
COPY (
    SELECT {columns}, m.bucket
    FROM flows f JOIN flow_buckets m ON m.hs6 = left(f.hs_code, 6)
    WHERE f.freq = 'M' AND f.period BETWEEN $lo AND $hi
) TO '{folder}' (FORMAT parquet, PARTITION_BY (bucket), OVERWRITE_OR_IGNORE)
"""

CODE_ROWS_SQL = """
SELECT left(hs_code, 6) AS hs6, count(*) AS rows FROM flows
WHERE freq = 'M' AND period BETWEEN $lo AND $hi GROUP BY ALL
"""


# The grid's monthly flows as Hive-partitioned Parquet, for an engine that reads files.
FLOWS_PARQUET_SQL = """
COPY (SELECT {columns} FROM flows WHERE freq = 'M' AND period BETWEEN $lo AND $hi)
TO '{folder}' (FORMAT parquet, PARTITION_BY (period), OVERWRITE_OR_IGNORE)
"""


def write_flows(wh, scope: Scope, folder: Path) -> str:
    """The flows a run reads, written as Parquet in `folder` (month partitions), for Spark."""
    shutil.rmtree(folder, ignore_errors=True)
    columns = ", ".join(FLOW_COLUMNS)
    wh.con.execute(FLOWS_PARQUET_SQL.format(columns=columns, folder=str(folder).replace("'", "''")),
                   {"lo": scope.lo, "hi": scope.window.end})
    return str(folder)


def detect_in_process(wh, scope: Scope, names: list[str], settings: Settings) -> PartitionResult:
    """The default engine: the whole warehouse is one partition, built and scored here."""
    t0 = time.perf_counter()
    with baselines_module.prepare(wh, scope.window, scope=scope) as baselines:
        built = time.perf_counter() - t0
        with wh.lend_memory():  # the detectors' arrays live on the Python side
            result = detect_partition(baselines, names, settings, split=False)
    result.seconds["baselines"] = built
    return result


def detect_with_workers(wh, scope: Scope, names: list[str], settings: Settings, workers: int,
                        extra_pairs: tuple[str, ...] = ()) -> list[PartitionResult]:
    """The partitioned engine on `workers` local processes: the flows of each task's partitions
    are written as Parquet once, then every task builds its baselines and runs the detectors."""
    from detector.engine.partitions import (  # SciPy: only the partitioned engine
        assign_buckets,
        partition_codes,
    )

    folder = wh.scratch() / "partitions"
    shutil.rmtree(folder, ignore_errors=True)
    params = {"lo": scope.lo, "hi": scope.window.end}
    rows = wh.con.sql(CODE_ROWS_SQL, params=params).pl()
    codes = partition_codes(scope, rows["hs6"], extra_pairs)
    sizes = (codes.join(rows, on="hs6", how="left").group_by("partition")
             .agg(pl.col("rows").sum().fill_null(0)))
    buckets = assign_buckets(sizes, max(workers, 1) * TASKS_PER_WORKER)
    wh.con.register("flow_buckets", codes.join(buckets, on="partition").select("hs6", "bucket"))
    try:
        columns = ", ".join(f"f.{name}" for name in FLOW_COLUMNS)
        wh.con.execute(BUCKETED_FLOWS_SQL.format(columns=columns, folder=str(folder).replace("'", "''")), params)
    finally:
        wh.con.unregister("flow_buckets")
    tasks = sorted(str(path / "*.parquet") for path in folder.glob("bucket=*"))
    try:
        with ProcessPoolExecutor(max(workers, 1), mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(run_partition, task, scope, names, settings) for task in tasks]
            return [future.result() for future in futures]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
