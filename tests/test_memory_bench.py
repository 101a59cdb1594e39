"""Bounded memory: the connection's memory_limit and spill folder, and a smoke run of the benchmark."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from detector.errors import DetectorError
from detector.warehouse import Warehouse, _size_bytes

ROOT = Path(__file__).resolve().parents[1]


def test_connection_caps_memory_and_spills_next_to_the_warehouse(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTOR_MEMORY_LIMIT", "512MB")
    db = tmp_path / "w.duckdb"
    with Warehouse.open(db) as wh:
        limit, spill = wh.con.execute(
            "SELECT current_setting('memory_limit'), current_setting('temp_directory')").fetchone()
    assert limit == "488.2 MiB"  # 512 MB as DuckDB prints it
    assert Path(spill) == Path(f"{db}.tmp")


def test_memory_benchmark_runs_and_prints_its_figures(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "memory_load.py"), "--rows", "20000",
                           "--memory-limit", "1GB", "--keep", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "read 20,000, loaded" in out and "rows 20,000" in out
    assert "rows/s" in out and "peak RSS" in out and "memory_limit 1GB" in out


def _limit(con) -> str:
    return con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]


def test_lent_memory_drops_duckdbs_share_and_gives_it_back(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTOR_MEMORY_LIMIT", "4GB")
    with Warehouse.open(tmp_path / "w.duckdb") as wh:
        with wh.lend_memory(0.25):
            assert abs(_size_bytes(_limit(wh.con)) / 10**9 - 1) < 0.01  # a quarter of 4 GB
        assert _limit(wh.con) == "3.7 GiB"
        try:
            with wh.lend_memory(0.25):
                raise RuntimeError("a detector failed")
        except RuntimeError:
            pass
        assert _limit(wh.con) == "3.7 GiB"  # given back on failure too


def test_lent_memory_never_leaves_duckdb_less_than_it_needs_to_work(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTOR_MEMORY_LIMIT", "1GB")
    with Warehouse.open(tmp_path / "w.duckdb") as wh, wh.lend_memory(0.1):
        assert _limit(wh.con) == "512.0 MiB"  # the floor, not a tenth


def test_sizes_are_read_as_duckdb_prints_them():
    assert _size_bytes("3.7 GiB") == int(3.7 * 2**30)
    assert _size_bytes("488.2 MiB") == int(488.2 * 2**20)
    assert _size_bytes("1000 bytes") == 1000
    assert _size_bytes("2 GB") == 2 * 10**9
    with pytest.raises(DetectorError, match="as a size"):
        _size_bytes("lots")


def test_a_limit_it_cannot_read_is_kept_rather_than_failing_the_run(tmp_path):
    with Warehouse.open(tmp_path / "w.duckdb", memory_limit="1GB") as wh:
        wh.memory_limit = "80%"  # a form DuckDB may accept that has no size in bytes here
        with wh.lend_memory(0.25):
            assert _limit(wh.con) == "953.6 MiB"  # unchanged
