"""Three ways to run, one result: in-process DuckDB, local worker processes over partitions of
HS codes, and Apache Spark in local mode give the same alerts on the same warehouse."""

from __future__ import annotations

import ast
import shutil
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from detector.engine.partitions import assign_buckets, partition_codes
from detector.ingest.comtrade import load_comtrade
from detector.months import Window
from detector.runner import run_detectors
from detector.sample import generate_world
from detector.scope import plan_warehouse
from detector.warehouse import Warehouse

WINDOW = Window(date(2023, 1, 1), date(2025, 6, 1))


@pytest.fixture(scope="module")
def world_db(tmp_path_factory):
    folder = tmp_path_factory.mktemp("engines")
    generate_world(folder, seed=11, start="2021-01", end="2025-06")
    db = folder / "w.duckdb"
    with Warehouse.open(db) as wh:
        load_comtrade(wh, [folder / "comtrade_monthly.csv"])
    return db


def _run(world_db, tmp_path, name, **how) -> pl.DataFrame:
    copy = tmp_path / f"{name}.duckdb"
    shutil.copy(world_db, copy)
    with Warehouse.open(copy) as wh:
        run_detectors(wh, WINDOW, all_codes=True, **how)
        return wh.frame("SELECT alert_id, detector, score, lead_id, lead_rank FROM alerts ORDER BY alert_id")


def _assert_same(expected: pl.DataFrame, got: pl.DataFrame):
    assert expected.height > 100
    assert got["alert_id"].to_list() == expected["alert_id"].to_list()
    assert (got["score"] - expected["score"]).abs().max() <= 1e-9
    assert got["lead_id"].to_list() == expected["lead_id"].to_list()
    assert got["lead_rank"].to_list() == expected["lead_rank"].to_list()
    assert expected["detector"].n_unique() >= 6  # the comparison covers most detectors


@pytest.fixture(scope="module")
def in_process(world_db, tmp_path_factory):
    return _run(world_db, tmp_path_factory.mktemp("default"), "default")


def test_local_workers_give_the_in_process_alerts(world_db, tmp_path, in_process):
    _assert_same(in_process, _run(world_db, tmp_path, "workers", workers=2))


def test_spark_in_local_mode_gives_the_in_process_alerts(world_db, tmp_path, in_process):
    if shutil.which("java") is None:
        pytest.skip("Java is not installed (make java installs Debian's openjdk-17-jre-headless): "
                    "the Spark engine was NOT tested")
    _assert_same(in_process, _run(world_db, tmp_path, "spark", engine="spark", spark_master="local[2]"))


def test_partitions_keep_what_detectors_read_together(world_db):
    with Warehouse.open(world_db, read_only=True) as wh:
        scope = plan_warehouse(wh.con, WINDOW, all_codes=True)
        codes = wh.frame("SELECT DISTINCT left(hs_code, 6) AS hs6 FROM flows")["hs6"]
    parts = partition_codes(scope, codes, extra_pairs=("811292:999999",))
    part = dict(zip(parts["hs6"].to_list(), parts["partition"].to_list(), strict=True))
    watched = scope.table("scope_codes").filter(pl.col("commodity").is_not_null())
    for _, group in watched.group_by("commodity"):  # a commodity's codes are one partition
        assert len({part[c] for c in group["hs_code"]}) == 1
    for pair in scope.table("code_shift_pairs").iter_rows(named=True):  # and a code-shift pair
        assert part[pair["from_code"]] == part[pair["to_code"]]
    assert part["811292"] == part["999999"]  # pairs from the settings too
    assert parts["partition"].n_unique() > 5  # codes with no link stand alone
    sizes = parts.group_by("partition").len().rename({"len": "rows"})
    buckets = assign_buckets(sizes, 3)
    assert set(buckets["bucket"]) == {0, 1, 2} and buckets.height == sizes.height


def test_detectors_see_no_warehouse_and_keep_no_module_state():
    """A detector is a function of its baselines: it imports neither the warehouse nor the runner
    nor DuckDB, and changes no module-level variable."""
    folder = Path(__file__).parents[1] / "detector" / "detectors"
    for path in folder.glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
            a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not imported & {"detector.warehouse", "detector.runner", "duckdb", "detector.engine"}, path.name
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.Global)], path.name
        source = path.read_text()
        for pattern in ("wh.", "Warehouse", "TEMP TABLE", ".register(", "id(wh"):
            assert pattern not in source, f"{path.name}: {pattern}"
