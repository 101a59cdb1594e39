"""Hive-partitioned Parquet export, read back by DuckDB, Polars and pyarrow."""

import datetime as dt
import math
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from detector.errors import DetectorError
from detector.export import export_parquet
from tests.conftest_reports import make_warehouse

ROOT = Path(__file__).resolve().parents[1]
# The contract's own checker, kept beside the repository (../shared/tools/check_alerts.py).
CHECK = ROOT.parent / "shared" / "tools" / "check_alerts.py"
JAN = dt.date(2025, 1, 1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    base = tmp_path_factory.mktemp("export")
    wh = make_warehouse(base / "w.duckdb")
    summary = export_parquet(wh, base / "out")
    yield wh, base / "out", summary
    wh.close()


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()}


def test_layout_and_summary(exported):
    wh, out, summary = exported
    assert summary["alerts"] == {"rows": 20, "partitions": 15}
    assert summary["flows"]["rows"] == wh.con.sql("SELECT count(*) FROM flows").fetchall()[0][0]
    assert summary["series"]["partitions"] == 30
    for name in ("alerts", "flows", "series"):
        parts = sorted(p.name for p in (out / name).iterdir())
        assert parts and all(re.fullmatch(r"period=\d{4}-\d{2}-01", p) for p in parts)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_contract_checker_accepts_alerts(exported):
    assert CHECK.is_file(), f"{CHECK}: the alert contract checker is missing"
    _, out, _ = exported
    done = subprocess.run([sys.executable, str(CHECK), str(out / "alerts")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "20 alerts in 15 partitions" in done.stdout


def test_duckdb_reads_period_as_date_and_prunes(exported):
    _, out, _ = exported
    con = duckdb.connect()
    glob = f"{(out / 'alerts').as_posix()}/*/*.parquet"
    types = dict((n, t) for n, t, *_ in con.sql(
        f"DESCRIBE SELECT * FROM read_parquet('{glob}', hive_partitioning = true)").fetchall())
    assert types["period"] == "DATE"
    query = f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning = true) WHERE period = DATE '2025-01-01'"
    assert con.sql(query).fetchall()[0][0] == 4
    plan = "\n".join(row[1] for row in con.sql("EXPLAIN " + query).fetchall())
    scanned, total = map(int, re.search(r"Scanning Files:\s*(\d+)/(\d+)", plan).groups())
    assert scanned == 1 and total == 15
    # Inside the files there is no period column: it lives in the folder name only.
    inside = [r[0] for r in con.sql(
        f"DESCRIBE SELECT * FROM read_parquet('{glob}', hive_partitioning = false)").fetchall()]
    assert "period" not in inside


def test_polars_reads_period_as_date(exported):
    wh, out, _ = exported
    lf = pl.scan_parquet(out / "alerts", hive_partitioning=True)
    assert lf.collect_schema()["period"] == pl.Date
    jan = lf.filter(pl.col("period") == JAN).collect()
    assert sorted(jan["alert_id"]) == sorted(
        r[0] for r in wh.con.sql("SELECT alert_id FROM alerts WHERE period = DATE '2025-01-01'").fetchall())
    flows = pl.scan_parquet(out / "flows", hive_partitioning=True).collect()
    assert flows.schema["period"] == pl.Date and flows.schema["hs_code"] == pl.String
    assert flows.height == 660


def test_pyarrow_dataset_hive(exported):
    _, out, _ = exported
    plain = ds.dataset(out / "alerts", format="parquet", partitioning="hive")
    assert "period" in plain.schema.names
    typed = ds.dataset(out / "alerts", format="parquet",
                       partitioning=ds.partitioning(pa.schema([("period", pa.date32())]), flavor="hive"))
    assert typed.schema.field("period").type == pa.date32()
    table = typed.to_table(filter=ds.field("period") == pa.scalar(JAN, pa.date32()))
    assert table.num_rows == 4 and set(table.column("lead_rank").to_pylist()) == {1, 2}


def _documented() -> dict[str, dict[str, str]]:
    """{dataset: {column: type}} from the tables in docs/parquet.md."""
    text = (ROOT / "docs" / "parquet.md").read_text()
    found: dict[str, dict[str, str]] = {}
    for section in re.split(r"^## ", text, flags=re.M)[1:]:
        name = section.split("\n", 1)[0].strip()
        rows = re.findall(r"^\| (\w+) \| ([A-Z]+) \|", section, flags=re.M)
        if rows:
            found[name] = dict(rows)
    return found


def test_schema_matches_documentation(exported):
    _, out, _ = exported
    documented = _documented()
    assert set(documented) == {"alerts", "flows", "series", "declaration_scores", "verdicts"}
    con = duckdb.connect()
    for name, columns in documented.items():
        if name in ("declaration_scores", "verdicts"):
            continue  # no declarations or verdicts here: checked in tests/test_declarations.py, test_verdicts.py
        actual = dict((n, t) for n, t, *_ in con.sql(
            f"DESCRIBE SELECT * FROM read_parquet('{(out / name).as_posix()}/*/*.parquet', "
            "hive_partitioning = true)").fetchall())
        assert actual == columns, name


def test_series_baseline_has_no_look_ahead(exported):
    wh, out, _ = exported
    series = (pl.scan_parquet(out / "series", hive_partitioning=True)
              .filter(reporter="USA", partner="THA", flow="M", hs_code="282580").sort("period").collect())
    values = series["value_usd"].to_numpy()
    row = series.row(24, named=True)  # 2025-01: the surge month, baseline 2024-01..2024-12
    assert row["period"] == JAN
    history = np.log(values[12:24])
    median = np.median(history)
    mad = np.median(np.abs(history - median))
    assert row["baseline_months"] == 12
    assert math.isclose(row["median_log_value"], median, rel_tol=1e-12)
    assert math.isclose(row["mad_log_value"], mad, rel_tol=1e-12)
    assert math.isclose(row["robust_z"], (math.log(values[24]) - median) / (1.4826 * mad), rel_tol=1e-9)
    assert row["robust_z"] > 5
    first = series.row(0, named=True)
    assert first["baseline_months"] == 0 and first["robust_z"] is None


def test_rewriting_one_period_replaces_only_that_partition(tmp_path):
    wh = make_warehouse(tmp_path / "w.duckdb")
    out = tmp_path / "out"
    export_parquet(wh, out)
    before = _files(out)
    with wh.transaction() as con:
        con.execute("UPDATE alerts SET score = 0.99, severity = 'high' WHERE alert_id = 'a0003-mirror_gap'")
        con.execute("DELETE FROM alerts WHERE period = DATE '2024-12-01'")
    summary = export_parquet(wh, out, periods=["2025-01", dt.date(2024, 12, 1)])
    assert summary["periods"] == ["2024-12-01", "2025-01-01"]
    after = _files(out)
    rewritten = ("period=2025-01-01", "period=2024-12-01")
    for path, stamp in before.items():
        if any(part in path for part in rewritten):
            continue
        assert after.get(path) == stamp, f"{path} was touched"
    assert not (out / "alerts" / "period=2024-12-01").exists()  # no alerts left: stale partition gone
    assert (out / "flows" / "period=2024-12-01").is_dir()
    jan = pl.read_parquet(out / "alerts" / "period=2025-01-01")
    assert jan.filter(pl.col("alert_id") == "a0003-mirror_gap")["score"].item() == 0.99
    assert [p.name for p in (out / "alerts" / "period=2025-01-01").iterdir()] == ["data_0.parquet"]
    assert not [p for p in out.rglob(".*")], "temporary folders left behind"
    done = subprocess.run([sys.executable, str(CHECK), str(out / "alerts")], capture_output=True, text=True)
    assert done.returncode == 0 or not CHECK.exists(), done.stdout
    wh.close()


def test_refuses_dangerous_output_folders(tmp_path, monkeypatch, exported):
    wh, _, _ = exported
    a_file = tmp_path / "report.txt"
    a_file.write_text("keep me")
    with pytest.raises(DetectorError, match="is a file"):
        export_parquet(wh, a_file)
    assert a_file.read_text() == "keep me"
    with pytest.raises(DetectorError, match="filesystem root"):
        export_parquet(wh, "/")
    home = tmp_path / "home"
    (home / "notes").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    with pytest.raises(DetectorError, match="home directory"):
        export_parquet(wh, "~")
    assert sorted(p.name for p in home.iterdir()) == ["notes"]


def test_empty_export_writes_empty_datasets(tmp_path, exported):
    wh, _, _ = exported
    summary = export_parquet(wh, tmp_path / "out", periods=["2019-05"])
    assert summary["alerts"] == {"rows": 0, "partitions": 0}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["alerts", "declaration_scores", "flows", "series", "verdicts"]
