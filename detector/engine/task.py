"""One partition's work, the same wherever it runs: baselines from its share of the flows, then
every partitioned detector (or its map step), all inside one in-memory DuckDB and this process."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import duckdb
import polars as pl
import pyarrow as pa

from detector import baselines as baselines_module
from detector.baselines import Baselines
from detector.detectors import registry
from detector.detectors.base import DETECTOR_OUTPUT_SCHEMA, conform
from detector.scope import Scope
from detector.settings import Settings
from detector.warehouse import view_sql

# The flows' columns the baselines read, with their warehouse types.
FLOW_COLUMNS = {
    "source": "VARCHAR", "period": "DATE", "freq": "VARCHAR", "reporter": "VARCHAR", "partner": "VARCHAR",
    "partner2": "VARCHAR", "flow": "VARCHAR", "hs_code": "VARCHAR", "hs_revision": "VARCHAR",
    "value_usd": "DOUBLE", "net_weight_kg": "DOUBLE",
}

# DuckDB's memory in a partition's process (a worker or a Spark task shares its machine).
PARTITION_MEMORY_LIMIT = "1GB"


@dataclass
class PartitionResult:
    """A partition's alerts (detectors without a reduce step), its map parts (by detector), and
    the time each detector took in it."""

    alerts: pl.DataFrame
    parts: dict[str, object] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    tests: pl.DataFrame | None = None   # corridor-months tested per month (period, watched, n): additive


# The corridor-months a detector tests: every scored corridor-month of the window with trade.
TESTS_SQL = """
SELECT cm.period, sc.commodity IS NOT NULL AS watched, count(*) AS n
FROM corridor_months cm JOIN scope_codes sc USING (hs_code)
WHERE sc.scored AND cm.usd > 0 AND cm.period BETWEEN $start AND $end
GROUP BY ALL
"""


def count_tests(baselines: Baselines) -> pl.DataFrame:
    """The partition's tests per month, watched codes apart (summed over partitions on the driver)."""
    if not baselines.grid_files:
        return pl.DataFrame(schema={"period": pl.Date, "watched": pl.Boolean, "n": pl.Int64})
    return baselines.sql(TESTS_SQL).with_columns(pl.col("n").cast(pl.Int64))


def detect_partition(baselines: Baselines, names: list[str], settings: Settings,
                     split: bool = True) -> PartitionResult:
    """Every named partitioned detector over one partition's baselines. `split`: run the map step
    of detectors that have one (their reduce comes later, over all partitions); else their whole
    `detect` (a run over everything is one partition)."""
    window = baselines.window
    frames, parts, seconds = [], {}, {}
    for name in names:
        spec = registry.get(name)
        t0 = time.perf_counter()
        if split and spec.map_partition is not None:
            parts[name] = spec.map_partition(baselines, window, settings.for_detector(spec))
        else:
            found = conform(spec.detect(baselines, window, settings.for_detector(spec)))
            frames.append(found.filter(pl.col("period").is_between(window.start, window.end)))
        seconds[name] = time.perf_counter() - t0
    alerts = pl.concat(frames) if frames else pl.DataFrame(schema=DETECTOR_OUTPUT_SCHEMA)
    # the tests are counted only for the false discovery rate (rate 0: off)
    return PartitionResult(alerts, parts, seconds, count_tests(baselines) if settings.fdr.rate > 0 else None)


def partition_connection(flows: pa.Table | str, scope: Scope) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB holding a partition's flows (an Arrow table or Parquet files) and the
    run's source choice, with the warehouse's flows_hs6 and flows_preferred views over them."""
    con = duckdb.connect(config={"memory_limit": PARTITION_MEMORY_LIMIT})
    columns = ", ".join(f"CAST({name} AS {kind}) AS {name}" for name, kind in FLOW_COLUMNS.items())
    if isinstance(flows, str):
        con.execute(f"CREATE TABLE flows AS SELECT {columns} FROM read_parquet(?)", [flows])
    else:
        con.register("flows_in", flows)
        con.execute(f"CREATE TABLE flows AS SELECT {columns} FROM flows_in")
        con.unregister("flows_in")
    con.register("source_choice_in", scope.table("source_choice"))
    con.execute("CREATE TABLE source_choice AS SELECT * FROM source_choice_in")
    con.unregister("source_choice_in")
    con.execute(view_sql("flows_hs6", "flows_preferred"))
    return con


def run_partition(flows: pa.Table | str, scope: Scope, names: list[str], settings: Settings) -> PartitionResult:
    """Baselines of a partition's flows, then its detectors (map steps where they have a reduce)."""
    t0 = time.perf_counter()
    con = partition_connection(flows, scope)
    try:
        with baselines_module.build(con, scope) as baselines:
            built = time.perf_counter() - t0
            result = detect_partition(baselines, names, settings)
    finally:
        con.close()
    result.seconds["baselines"] = built
    return result
