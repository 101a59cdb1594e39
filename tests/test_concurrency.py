"""Two processes on one warehouse: a second writer gets a one-line "in use" error and changes
nothing; readers (report, export) share the file with each other while nothing writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from detector.cli import main
from detector.ingest.comtrade import load_comtrade
from detector.warehouse import Warehouse
from tests.comtrade_files import row, write

ROOT = Path(__file__).resolve().parents[1]
HOLD = """
import sys, time
from detector.warehouse import Warehouse
wh = Warehouse.open(sys.argv[1], read_only=sys.argv[2] == "ro")
print("open", flush=True)
time.sleep(60)
"""


def hold(db: Path, mode: str) -> subprocess.Popen:
    """Another process holding the warehouse open (rw: as a writer, ro: as a reader) until killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(db), mode], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT)
    assert proc.stdout.readline().strip() == "open"
    return proc


def warehouse(tmp_path) -> Path:
    db = tmp_path / "w.duckdb"
    with Warehouse.open(db) as wh:
        load_comtrade(wh, [write(tmp_path / "a.csv", [row(), row(partner="THA")])])
    return db


def counts(db: Path):
    with Warehouse.open(db, read_only=True) as wh:
        return wh.con.execute("SELECT (SELECT count(*) FROM flows), (SELECT count(*) FROM loads)").fetchone()


def test_second_writer_gets_one_line_busy_error_and_changes_nothing(tmp_path):
    db = warehouse(tmp_path)
    other = write(tmp_path / "b.csv", [row(reporter="FRA")])
    writer = hold(db, "rw")
    try:
        for args in (["ingest", "comtrade", str(other)], ["run"], ["report"], ["export", "--out", str(tmp_path / "o")]):
            result = CliRunner().invoke(main, ["--db", str(db), *args])
            assert result.exit_code == 1, (args, result.output)
            message = result.output.strip()
            assert message == (f"Error: {db}: warehouse is in use by another process; wait for it to finish "
                               "and retry"), args
    finally:
        writer.kill()
        writer.wait()
    assert counts(db) == (2, 1)
    assert CliRunner().invoke(main, ["--db", str(db), "ingest", "comtrade", str(other)]).exit_code == 0
    assert counts(db) == (3, 2)


def test_several_readers_at_once(tmp_path):
    db = warehouse(tmp_path)
    readers = [hold(db, "ro"), hold(db, "ro")]
    try:
        report = CliRunner().invoke(main, ["--db", str(db), "report", "--format", "json"])
        assert report.exit_code == 0, report.output
        out = tmp_path / "parquet"
        exported = CliRunner().invoke(main, ["--db", str(db), "export", "--out", str(out)])
        assert exported.exit_code == 0, exported.output
        assert list(out.glob("flows/period=*"))
        # a writer waits for the readers to go: it is refused, cleanly, while they hold the file
        busy = CliRunner().invoke(main, ["--db", str(db), "ingest", "comtrade",
                                         str(write(tmp_path / "c.csv", [row(reporter="IND")]))])
        assert busy.exit_code == 1 and "warehouse is in use by another process" in busy.output
    finally:
        for r in readers:
            r.kill()
            r.wait()
    assert counts(db) == (2, 1)


def test_writers_racing_never_corrupt(tmp_path):
    """Two ingest commands started together: each either loads or is refused as busy; the file opens."""
    db = warehouse(tmp_path)
    files = [write(tmp_path / f"r{i}.csv", [row(reporter=r)]) for i, r in enumerate(["FRA", "IND"])]
    procs = [subprocess.Popen([sys.executable, "-m", "detector", "--db", str(db), "ingest", "comtrade", str(f)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT) for f in files]
    outcomes = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    for code, err in outcomes:
        assert code == 0 or (code == 1 and "warehouse is in use by another process" in err
                             and err.count("\n") == 1), err
    loaded = sum(code == 0 for code, _ in outcomes)
    assert loaded >= 1
    assert counts(db) == (2 + loaded, 1 + loaded)
