"""A process killed with SIGKILL in the middle of a load, a detector run or an export leaves the
warehouse and the Parquet folder as they were after the last completed step, and running the
same command again finishes the work.

Kill points are fractions of the time a complete run of the same command takes here, so some
land before the work starts, some in the middle and some maybe after it ended: every outcome
must be one of the two whole states, whichever it is.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from detector.ingest.comtrade import load_comtrade
from detector.sample import generate_world
from detector.warehouse import Warehouse
from tests.comtrade_files import row, write

ROOT = Path(__file__).resolve().parents[1]
FRACTIONS = (0.4, 0.75)
RUN_ARGS = ["run", "--from", "2025-01", "--to", "2025-03", "--detector", "third_country_surge",
            "--detector", "mirror_gap"]


def _bench():
    spec = importlib.util.spec_from_file_location("memory_load", ROOT / "bench" / "memory_load.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cli(db: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "detector", "--db", str(db), *args]


def timed(cmd: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return time.perf_counter() - started


def killed_after(cmd: list[str], seconds: float) -> None:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def state(db: Path, sql: str):
    with Warehouse.open(db) as wh:  # opening also replays or discards what the killed process left
        return wh.con.execute(sql).fetchone()


# ---------------------------------------------------------------- ingest

def test_killed_ingest_keeps_the_last_complete_load(tmp_path):
    db = tmp_path / "w.duckdb"
    with Warehouse.open(db) as wh:
        load_comtrade(wh, [write(tmp_path / "first.csv", [row(), row(partner="THA")])])
    big = tmp_path / "big.csv"
    _bench().generate(big, 150_000)
    counts = "SELECT (SELECT count(*) FROM flows), (SELECT count(*) FROM loads), (SELECT count(*) FROM rejects)"
    before = state(db, counts)
    assert before[:2] == (2, 1)

    reference = tmp_path / "reference.duckdb"  # the same load, to completion, elsewhere
    full = timed(cli(reference, "ingest", "comtrade", str(big)))
    loaded = state(reference, "SELECT (SELECT count(*) FROM flows), (SELECT count(*) FROM rejects)")
    after = (before[0] + loaded[0], 2, before[2] + loaded[1])

    for fraction in FRACTIONS:
        killed_after(cli(db, "ingest", "comtrade", str(big)), full * fraction)
        now = state(db, counts)
        assert now in (before, after)
    subprocess.run(cli(db, "ingest", "comtrade", str(big)), check=True, capture_output=True, cwd=ROOT)
    assert state(db, counts) == after


# ---------------------------------------------------------------- detector run and export

@pytest.fixture(scope="module")
def world_db(tmp_path_factory):
    """A loaded sample world (three years, the shortest the generator plans cases in)."""
    folder = tmp_path_factory.mktemp("world")
    world = generate_world(folder / "world", seed=7, start="2023-01", end="2025-12")
    db = folder / "w.duckdb"
    with Warehouse.open(db) as wh:
        load_comtrade(wh, [world["paths"]["comtrade"]])
    return db


def alerts_state(db: Path):
    with Warehouse.open(db) as wh:
        runs = wh.con.execute("SELECT run_id, row_counts FROM runs ORDER BY started").fetchall()
        by_run = dict(wh.con.execute("SELECT run_id, count(*) FROM alerts GROUP BY run_id").fetchall())
    return runs, by_run


def test_killed_run_keeps_previous_alerts_or_the_complete_new_ones(world_db):
    full = timed(cli(world_db, *RUN_ARGS))  # the previous complete run, and the timing
    runs, by_run = alerts_state(world_db)
    for fraction in FRACTIONS:
        killed_after(cli(world_db, *RUN_ARGS), full * fraction)
        before_runs = runs
        runs, by_run = alerts_state(world_db)
        assert runs[:len(before_runs)] == before_runs and len(runs) - len(before_runs) in (0, 1)
        last_id, last_counts = runs[-1]
        # every stored alert belongs to the last recorded run, and all of its alerts are there
        assert by_run == {last_id: sum(json.loads(last_counts).values())}
    subprocess.run(cli(world_db, *RUN_ARGS), check=True, capture_output=True, cwd=ROOT)
    runs_after, by_run = alerts_state(world_db)
    assert len(runs_after) == len(runs) + 1
    assert by_run == {runs_after[-1][0]: sum(json.loads(runs_after[-1][1]).values())}


def test_a_killed_run_loses_no_verdict(world_db, tmp_path):
    """Verdicts are their own transactions in an append-only table: a run killed at any point
    (it rewrites the window's alerts and leads) leaves every verdict as it was."""
    subprocess.run(cli(world_db, *RUN_ARGS), check=True, capture_output=True, cwd=ROOT)
    with Warehouse.open(world_db, read_only=True) as wh:
        leads = [r[0] for r in wh.con.execute(
            "SELECT lead_id FROM alerts GROUP BY lead_id ORDER BY max(lead_score) DESC, lead_id LIMIT 2").fetchall()]
    assert len(leads) == 2
    verdicts = tmp_path / "verdicts.csv"
    verdicts.write_text(f"lead_id,verdict,note\n{leads[0]},confirmed,seen\n{leads[1]},dismissed,paperwork\n")
    done = subprocess.run(cli(world_db, "review", "--file", str(verdicts)), capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    recorded = "SELECT count(*), string_agg(lead_id || ':' || verdict, ',' ORDER BY lead_id) FROM verdicts"
    before = state(world_db, recorded)
    assert before[0] == 2
    full = timed(cli(world_db, *RUN_ARGS))
    for fraction in FRACTIONS:
        killed_after(cli(world_db, *RUN_ARGS), full * fraction)
        assert state(world_db, recorded) == before


def partitions_readable(out: Path) -> int:
    con = duckdb.connect()
    n = 0
    for part in out.glob("*/period=*"):
        files = list(part.iterdir())
        assert files and all(f.suffix == ".parquet" for f in files), part
        con.execute("SELECT count(*) FROM read_parquet(?)", [[str(f) for f in files]]).fetchone()
        n += 1
    return n


def test_killed_export_leaves_whole_partitions_and_the_next_cleans_up(world_db, tmp_path):
    out = tmp_path / "parquet"
    full = timed(cli(world_db, "export", "--out", str(out)))
    complete = partitions_readable(out)
    assert complete > 0
    for fraction in FRACTIONS:
        killed_after(cli(world_db, "export", "--out", str(out)), full * fraction)
        partitions_readable(out)
    subprocess.run(cli(world_db, "export", "--out", str(out)), check=True, capture_output=True, cwd=ROOT)
    assert partitions_readable(out) == complete
    assert not list(out.glob(".tmp-*"))
