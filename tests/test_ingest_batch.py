"""A batch of UN Comtrade files loaded in one call: when a group falls back to one file at a time,
a broken file's own error, the command line's account of a batch, and a batch killed midway.
The per-file guarantees of a mixed batch, for Comtrade and every other source, are in
tests/test_ingest_batch_sources.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from detector.cli import main
from detector.errors import InputError
from detector.ingest import batch as batch_module
from detector.ingest.common import FilesRefused
from detector.ingest.comtrade import load_comtrade
from detector.warehouse import Warehouse
from tests.comtrade_files import row, write

ROOT = Path(__file__).resolve().parents[1]


def _batch(tmp_path: Path) -> dict[str, Path]:
    """Good files, one already loaded, a revision, two broken ones, a file with rejects."""
    f = {}
    f["old"] = write(tmp_path / "a_usa_old.csv", [row(value=100.0), row(partner="THA", value=5.0)])
    f["fra"] = write(tmp_path / "b_fra.csv", [row(reporter="FRA"), row(reporter="FRA", partner="IND")])
    f["bad_header"] = write(tmp_path / "c_bad.csv", [row(reporter="IND")], columns=["cmdCode", "flowCode", "qty"])
    f["rejects"] = write(tmp_path / "d_mex.csv", [row(reporter="MEX"), row(reporter="MEX", partner="W00"),
                                                  row(reporter="MEX", partner="THA", cmd="12")])
    f["revised"] = write(tmp_path / "e_usa_new.csv", [row(value=130.0), row(partner="THA", value=5.0)])
    f["empty"] = tmp_path / "f_empty.csv"
    f["empty"].write_text("")
    f["ind"] = write(tmp_path / "g_ind.csv", [row(reporter="IND", partner="CHN", value=7.0)])
    return f


def test_a_repeated_key_or_broken_line_sends_the_group_one_by_one(tmp_path):
    dup = write(tmp_path / "dup.csv", [row(), row()])  # the second line repeats the first's key
    other = write(tmp_path / "other.csv", [row(reporter="FRA")])
    broken = tmp_path / "broken.csv"
    write(broken, [row(reporter="MEX"), row(reporter="MEX", partner="THA")])
    broken.write_text(broken.read_text().replace("\n", "\n,,extra,,\n", 1))  # a line of the wrong width
    with Warehouse.open(tmp_path / "w.duckdb") as wh:
        summaries = load_comtrade(wh, [dup, other, broken])
        assert [(s.rows_loaded, s.rows_rejected) for s in summaries] == [(1, 1), (1, 0), (2, 1)]
        assert wh.con.execute("SELECT file, line FROM rejects ORDER BY file").fetchall() == [
            (str(broken), 2), (str(dup), 3)]


def test_a_single_broken_file_raises_its_own_error(tmp_path):
    bad = write(tmp_path / "bad.csv", [row()], columns=["cmdCode", "flowCode"])
    with Warehouse.open(tmp_path / "w.duckdb") as wh, pytest.raises(InputError) as exc:
        load_comtrade(wh, [bad])
    assert not isinstance(exc.value, FilesRefused)
    assert str(exc.value).startswith(f"{bad}:1: not a UN Comtrade file")


def test_cli_loads_the_good_files_and_exits_non_zero_naming_the_broken_one(tmp_path):
    f = _batch(tmp_path)
    db = tmp_path / "w.duckdb"
    runner = CliRunner()
    result = runner.invoke(main, ["--db", str(db), "ingest", "comtrade", str(f["old"]), str(f["bad_header"]),
                                  str(f["fra"])])
    assert result.exit_code == 1
    assert f"{f['old']}: read 2, loaded 2" in result.output
    assert f"{f['bad_header']}:1: not a UN Comtrade file" in result.output
    assert "3 files: 2 loaded, 0 skipped (already loaded), 1 refused" in result.output
    quiet = runner.invoke(main, ["--db", str(db), "ingest", "comtrade", "--quiet", str(f["old"]), str(f["fra"])])
    assert quiet.exit_code == 0
    assert quiet.output.strip().splitlines() == [quiet.output.strip().splitlines()[-1]]
    assert quiet.output.startswith("2 files: 0 loaded, 2 skipped")
    many = [write(tmp_path / f"m{i:02d}.csv", [row(reporter="KOR", partner="CHN", period=f"2024{i:02d}")])
            for i in range(1, 13)] + [write(tmp_path / f"n{i:02d}.csv", [row(reporter="JPN", period=f"2024{i:02d}")])
                                      for i in range(1, 13)]
    table = runner.invoke(main, ["--db", str(db), "ingest", "comtrade", *map(str, many)])
    assert table.exit_code == 0, table.output
    assert table.output.startswith("status") and "24 files: 24 loaded" in table.output
    assert f"{many[0]}:" not in table.output  # a table, not a line per file


def test_killed_batch_leaves_whole_files_only(tmp_path):
    """SIGKILL at points through a batch of many files: every file is in the warehouse whole (its
    loads row and all its flows) or not at all; the same command again loads the rest."""
    files = []
    for reporter in ["USA", "FRA", "IND", "MEX", "KOR", "DEU", "JPN", "BRA"]:
        for year in range(2015, 2025):
            files.append(write(tmp_path / f"{reporter}_{year}.csv", [
                row(reporter=reporter, partner=p, period=f"{year}{m:02d}", cmd=c, value=1.0 + m)
                for p in ("CHN", "THA", "VNM") if p != reporter for m in range(1, 13)
                for c in ("282580", "811010", "260900")]))
    expected = {str(f): 3 * 12 * 3 for f in files}
    cmd = [sys.executable, "-m", "detector", "--db", str(tmp_path / "full.duckdb"), "ingest", "comtrade", "--quiet",
           *map(str, files)]
    started = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    full = time.perf_counter() - started
    old = batch_module.GROUP_BYTES
    for fraction in (0.5, 0.8):
        db = tmp_path / f"k{fraction}.duckdb"
        cmd[4] = str(db)
        # groups of a few files, so that a kill lands between commits as well as inside one
        env = {**os.environ, "PYTHONPATH": str(ROOT), "DETECTOR_BATCH_GROUP_BYTES": str(120_000)}
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, env=env)
        try:
            proc.wait(timeout=full * fraction)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        with Warehouse.open(db) as wh:
            per_file = dict(wh.con.execute(
                "SELECT l.file, count(f.load_id) FROM loads l LEFT JOIN flows f USING (load_id) GROUP BY l.file"
            ).fetchall())
            orphans = wh.con.execute("SELECT count(*) FROM flows WHERE load_id NOT IN (SELECT load_id FROM loads)"
                                     ).fetchone()[0]
        assert orphans == 0
        assert all(per_file[f] == expected[f] for f in per_file), per_file
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
        assert done.returncode == 0, done.stderr
        assert f"{len(files)} files: {len(files) - len(per_file)} loaded, {len(per_file)} skipped" in done.stdout
        with Warehouse.open(db) as wh:
            assert wh.con.execute("SELECT count(*) FROM flows").fetchone()[0] == sum(expected.values())
    assert batch_module.GROUP_BYTES == old
