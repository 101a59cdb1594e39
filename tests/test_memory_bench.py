"""Bounded memory: the connection's memory_limit and spill folder, and a smoke run of the benchmark."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from detector.warehouse import Warehouse

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
