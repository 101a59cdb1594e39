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
    for step in ("ingest comtrade", "floor: Polars read", "floor: insert of the valid rows", "run --all-codes",
                 "floor: DuckDB 12-month trailing median/MAD z per series",
                 "floor: the same over the last 12 reported months", "report (html)", "export", "pandas peer"):
        assert f"| {step}" in text, step
    # the run against its floor, in the targets
    assert "| run --all-codes / floor: DuckDB 12-month trailing median/MAD z per series <= 1.5x" in text
    assert "(the floor under it: reading the file alone + storing its valid rows alone)" in text
    assert "Machine: CPU" in text and "duckdb" in text
    generated = next((tmp_path / "data").glob("comtrade_world_*.csv"))
    header = generated.read_text().splitlines()[0].split(",")
    assert {"cmdCode", "reporterCode", "partnerCode", "flowCode", "period", "primaryValue"} <= set(header)


def test_profile_names_the_functions_where_ingest_and_run_spend_their_time(tmp_path):
    out = tmp_path / "profile.md"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "profile.py"), "--rows", "40000", "--out", str(out),
         "--data", str(tmp_path / "data"), "--min-seconds", "0.01"],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    ingest, run = text.split("### ingest comtrade")[1].split("### run --all-codes")
    assert "`detector.ingest.comtrade._load_one:" in ingest
    assert "`detector.runner." in run and "`detector.baselines.prepare:" in run
    # largest cumulative time first
    seconds = [float(line.split("|")[3].strip().removesuffix(" s")) for line in run.splitlines()
               if line.startswith("| `")]
    assert len(seconds) > 5 and seconds == sorted(seconds, reverse=True)
