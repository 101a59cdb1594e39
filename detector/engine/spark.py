"""The partitioned engine on Apache Spark: flows read from Hive-partitioned Parquet, each task a
group of whole partitions of HS codes (`groupBy(bucket).applyInArrow`), run by the same
`run_partition` as the local workers, with DuckDB and Polars inside the task.

The run's scope (a few small tables) travels with the task function; each task sends back its
alerts and map parts as one pickled payload, and the reduce steps run on the driver. Workers
need Python with this package installed (`pip install 'detector[spark]'`) and Java for Spark.
"""

from __future__ import annotations

import os
import pickle
import shutil
import sys

import polars as pl
import pyarrow as pa

from detector.engine.partitions import assign_buckets, partition_codes
from detector.engine.task import FLOW_COLUMNS, PartitionResult, run_partition
from detector.errors import DetectorError
from detector.scope import Scope
from detector.settings import Settings

# Tasks per core of the cluster: more, smaller tasks even out partitions of very different sizes.
TASKS_PER_CORE = 2

RESULT_SCHEMA = "bucket long, payload binary"


def spark_session(master: str | None = None):
    """A Spark session: `master` if given (sc://host:15002 for Spark Connect), else the one
    spark-submit launched this driver with, else local[*]. Local workers run this interpreter
    unless PYSPARK_PYTHON says otherwise."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise DetectorError("the Spark engine needs PySpark: pip install 'detector[spark]'") from None
    builder = SparkSession.builder.appName("detector")
    if master and master.startswith("sc://"):
        return builder.remote(master).getOrCreate()
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise DetectorError("the Spark engine needs Java (a JRE 17 or 21, e.g. Debian's openjdk-17-jre-headless)")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if master:
        builder = builder.master(master)
    elif not os.environ.get("PYSPARK_GATEWAY_PORT"):  # not started by spark-submit
        builder = builder.master("local[*]")
    spark = (builder.config("spark.sql.execution.arrow.pyspark.enabled", "true")
             .config("spark.sql.session.timeZone", "UTC")
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _parallelism(spark) -> int:
    """Cores the cluster offers (Spark Connect hides the context: its configured default, else 16)."""
    try:
        return spark.sparkContext.defaultParallelism
    except NotImplementedError:
        return int(spark.conf.get("spark.default.parallelism", "16"))


def detect_on_spark(scope: Scope, names: list[str], settings: Settings, master: str | None, flows_path: str,
                    extra_pairs: tuple[str, ...] = ()) -> list[PartitionResult]:
    """Every partition's detectors (map steps where a reduce follows) as Spark tasks."""
    from pyspark.sql import functions as F

    spark = spark_session(master)
    flows = (spark.read.option("basePath", flows_path).parquet(flows_path)
             .where((F.col("freq") == "M") & F.col("period").between(scope.lo, scope.window.end))
             .select(*FLOW_COLUMNS))
    rows = pl.from_arrow(flows.groupBy(F.substring("hs_code", 1, 6).alias("hs6")).count().toArrow())
    if rows.height == 0:
        return []
    codes = partition_codes(scope, rows["hs6"], extra_pairs)
    sizes = codes.join(rows.rename({"count": "rows"}), on="hs6", how="left").group_by("partition").agg(
        pl.col("rows").sum().fill_null(0))
    buckets = assign_buckets(sizes, _parallelism(spark) * TASKS_PER_CORE)
    code_buckets = codes.join(buckets, on="partition").select("hs6", "bucket")
    bucket_of = spark.createDataFrame(code_buckets.to_pandas())
    tagged = flows.join(F.broadcast(bucket_of), F.substring(flows["hs_code"], 1, 6) == bucket_of["hs6"]).drop("hs6")

    def task(key, table):  # no type hints: PySpark would read them to choose the UDF kind
        result = run_partition(table.drop_columns(["bucket"]), scope, names, settings)
        return pa.table({"bucket": [key[0].as_py()], "payload": [pickle.dumps(result)]})

    payloads = tagged.groupBy("bucket").applyInArrow(task, RESULT_SCHEMA).toArrow()
    order = payloads.column("bucket").to_pylist()
    results = [pickle.loads(p) for p in payloads.column("payload").to_pylist()]
    return [result for _, result in sorted(zip(order, results, strict=True), key=lambda pair: pair[0])]
