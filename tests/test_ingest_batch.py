"""A batch of files loaded in one call: every guarantee holds per file (whole or not at all, skipped
when already loaded, later files replace earlier rows, a broken file refused with its one-line
error while the good files load, rejects keep their file and line), on the group path and on
the one-file fallback alike."""

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


def flows(wh):
    return wh.con.execute(
        "SELECT reporter, partner, hs_code, value_usd, load_id FROM flows ORDER BY ALL").fetchall()


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


@pytest.mark.parametrize("grouped", [True, False], ids=["groups", "one-by-one"])
def test_mixed_batch_keeps_every_guarantee_per_file(tmp_path, monkeypatch, grouped):
    if not grouped:
        monkeypatch.setattr(batch_module.Batch, "key", lambda self, path: None)
    groups = []
    load_group = batch_module.Batch.load_group

    def spy(self, wh, group, done):
        groups.append(([item.path.name for item in group], load_group(self, wh, group, done)))
        return groups[-1][1]

    monkeypatch.setattr(batch_module.Batch, "load_group", spy)
    f = _batch(tmp_path)
    with Warehouse.open(tmp_path / "w.duckdb") as wh:
        (first,) = load_comtrade(wh, [f["ind"]])  # loaded before the batch
        with pytest.raises(FilesRefused) as refused:
            load_comtrade(wh, [f["old"], f["fra"], f["bad_header"], f["rejects"], f["revised"], f["empty"],
                               f["ind"], f["fra"]])
        by = {}
        for s in refused.value.summaries:
            by.setdefault(Path(s.file).name, []).append(s)
        # broken files: refused with their one-line error naming file, line and problem; nothing of them kept
        (bad,) = by["c_bad.csv"]
        assert bad.status == "refused" and bad.error.startswith(f"{f['bad_header']}:1: not a UN Comtrade file")
        (empty,) = by["f_empty.csv"]
        assert empty.status == "refused" and empty.error == f"{f['empty']}:1: empty file (no header line)"
        assert "2 of 8 files refused" in str(refused.value)
        assert str(refused.value).startswith(f"{f['bad_header']}:1: not a UN Comtrade file")
        files = {r[0] for r in wh.con.execute("SELECT file FROM loads").fetchall()}
        assert str(f["bad_header"]) not in files and str(f["empty"]) not in files
        # already loaded (before, or earlier in the same batch): skipped, nothing changed
        assert by["g_ind.csv"][0].status == "skipped" and by["g_ind.csv"][0].load_id == first.load_id
        assert [s.status for s in by["b_fra.csv"]] == ["loaded", "skipped"]
        # the revision replaces the older file's row of the same key, the unchanged key too
        (revised,) = by["e_usa_new.csv"]
        assert (revised.rows_loaded, revised.rows_replaced) == (0, 2)
        usa = [r for r in flows(wh) if r[0] == "USA"]
        assert [(r[1], r[3]) for r in usa] == [("CHN", 130.0), ("THA", 5.0)]
        assert {r[4] for r in usa} == {revised.load_id}
        # good files whole, counted per file; rejects keep their file and line
        assert (by["a_usa_old.csv"][0].rows_read, by["a_usa_old.csv"][0].rows_loaded) == (2, 2)
        (mex,) = by["d_mex.csv"]
        assert (mex.rows_read, mex.rows_loaded, mex.rows_rejected, mex.aggregates) == (3, 1, 2, 1)
        assert wh.con.execute("SELECT file, line, reason FROM rejects ORDER BY line").fetchall() == [
            (str(f["rejects"]), 3, "partner is the World aggregate, not a country"),
            (str(f["rejects"]), 4, "wrong HS length: '12' has 2 digits (need 6, 8 or 10)")]
        loads = dict(wh.con.execute("SELECT file, rows_loaded FROM loads").fetchall())
        assert loads == {str(f["ind"]): 1, str(f["old"]): 2, str(f["fra"]): 2, str(f["rejects"]): 1,
                         str(f["revised"]): 0}
        assert len(flows(wh)) == 1 + 2 + 2 + 1  # IND, USA (revised), FRA, MEX
        # grouped: the good files loaded in groups of consecutive files, the revision's group replacing
        # the rows of the group before it
        assert groups == ([(["a_usa_old.csv", "b_fra.csv"], True), (["d_mex.csv", "e_usa_new.csv"], True)]
                          if grouped else [])
        # the same batch again changes nothing
        before = (flows(wh), wh.con.execute("SELECT count(*) FROM rejects").fetchone())
        with pytest.raises(FilesRefused):
            load_comtrade(wh, [f["old"], f["fra"], f["bad_header"], f["rejects"], f["revised"], f["empty"]])
        assert (flows(wh), wh.con.execute("SELECT count(*) FROM rejects").fetchone()) == before


def test_group_and_one_by_one_load_the_same(tmp_path, monkeypatch):
    f = _batch(tmp_path)
    files = [f[k] for k in ("old", "fra", "rejects", "revised", "ind")]
    tables = []
    for grouped in (True, False):
        if not grouped:
            monkeypatch.setattr(batch_module.Batch, "key", lambda self, path: None)
        with Warehouse.open(tmp_path / f"w{grouped}.duckdb") as wh:
            summaries = load_comtrade(wh, files)
            tables.append(([s.line().rsplit(" in ", 1)[0] for s in summaries], flows(wh),
                           wh.con.execute("SELECT load_id, file, line, raw, reason FROM rejects ORDER BY ALL").fetchall(),
                           wh.con.execute("SELECT * FROM reporting ORDER BY ALL").fetchall()))
    assert tables[0] == tables[1]


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
