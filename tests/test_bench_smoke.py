"""The world-scale benchmark on a tiny world, so that `make bench` keeps working."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_runs_every_step_and_writes_its_table(tmp_path):
    out = tmp_path / "results.md"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--rows", "40000", "--scales", "40000", "--repeat", "1",
         "--out", str(out), "--data", str(tmp_path / "data"), "--work", str(tmp_path / "work")],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    for step in ("ingest comtrade", "run --all-codes", "report (html)", "export", "pandas peer"):
        assert f"| {step}" in text, step
    assert "Machine: CPU" in text and "duckdb" in text
    generated = next((tmp_path / "data").glob("comtrade_world_*.csv"))
    header = generated.read_text().splitlines()[0].split(",")
    assert {"cmdCode", "reporterCode", "partnerCode", "flowCode", "period", "primaryValue"} <= set(header)
