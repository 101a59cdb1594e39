import duckdb
import pytest
from click.testing import CliRunner

from detector.cli import main
from detector.errors import InputError, WarehouseBusy
from detector.ingest import comtrade
from detector.ingest.comtrade import load_comtrade
from detector.warehouse import Warehouse
from tests.comtrade_files import row, write


@pytest.fixture
def wh(tmp_path):
    with Warehouse.open(tmp_path / "w.duckdb") as w:
        yield w


def flows(wh, where="true"):
    return wh.con.execute(
        f"SELECT reporter, partner, partner2, flow, hs_code, period::VARCHAR, freq, value_usd, net_weight_kg, hs_revision "
        f"FROM flows WHERE {where} ORDER BY ALL").fetchall()


def test_full_layout_maps_codes_values_and_excludes_world(wh, tmp_path):
    f = write(tmp_path / "a.csv", [
        row("USA", "CHN", "M", value=1200.0, weight=100.0),
        row("USA", "THA", "M", value=800.0, weight=60.0, partner2="CHN"),
        row("USA", "W00", "M", value=2000.0, weight=160.0),           # World: never a partner
        row("CHN", "USA", "X", value=1100.0, weight=100.0),
        row("FRA", "TWN", "M", cmd="811292", value=10.0),             # 251 -> FRA, 490 -> TWN
        row("IND", "CHN", "RX", cmd="811292", value=5.0),              # 699 -> IND
    ])
    (s,) = load_comtrade(wh, [f])
    assert (s.rows_read, s.rows_loaded, s.rows_rejected, s.aggregates) == (6, 5, 1, 1)
    got = flows(wh)
    assert ("USA", "THA", "CHN", "M", "282580", "2025-03-01", "M", 800.0, 60.0, "HS2022") in got
    assert ("USA", "CHN", None, "M", "282580", "2025-03-01", "M", 1200.0, 100.0, "HS2022") in got
    assert ("FRA", "TWN", None, "M", "811292", "2025-03-01", "M", 10.0, 50.0, "HS2022") in got
    assert ("IND", "CHN", None, "RX", "811292", "2025-03-01", "M", 5.0, 50.0, "HS2022") in got
    assert not [r for r in got if r[1] in ("W00", "WLD")]
    reasons = wh.con.execute("SELECT line, reason FROM rejects").fetchall()
    assert reasons == [(4, "partner is the World aggregate, not a country")]
    # the World row still tells that USA reported imports for March 2025
    assert wh.con.execute("SELECT count(*) FROM reporting WHERE reporter='USA' AND flow='M'").fetchone()[0] == 1


def test_value_is_cif_for_imports_fob_for_exports_else_primary(wh, tmp_path):
    f = write(tmp_path / "v.csv", [
        row("USA", "CHN", "M", value=100.0, cifvalue="110", primaryValue="105"),
        row("CHN", "USA", "X", value=100.0, fobvalue="", primaryValue="99"),
    ])
    load_comtrade(wh, [f])
    assert [r[7] for r in flows(wh)] == [99.0, 110.0]


def test_portal_subset_of_columns_and_annual_rows(wh, tmp_path):
    cols = ["refYear", "refMonth", "period", "reporterCode", "flowCode", "partnerCode", "cmdCode",
            "primaryValue", "netWgt"]
    f = write(tmp_path / "subset.csv", [
        row("THA", "CHN", "M", period="2024", value=50.0),
        row("THA", "CHN", "M", period="202411", value=7.0),
    ], columns=cols)
    (s,) = load_comtrade(wh, [f])
    assert s.rows_loaded == 2
    assert [(r[5], r[6]) for r in flows(wh)] == [("2024-01-01", "A"), ("2024-11-01", "M")]


def test_missing_essential_column_is_one_clear_error(wh, tmp_path):
    f = write(tmp_path / "bad.csv", [row()], columns=["period", "reporterCode", "partnerCode", "primaryValue"])
    with pytest.raises(InputError, match=r"bad.csv:1: not a UN Comtrade file: no column for commodity code"):
        load_comtrade(wh, [f])
    assert wh.con.execute("SELECT count(*) FROM loads").fetchone()[0] == 0


def test_rejects_keep_file_line_raw_text_and_reason(wh, tmp_path):
    rows = [
        row(),                                              # line 2 ok
        row(period="2025-13"),                              # 3 bad period
        row(reporterCode="999"),                            # 4 unknown reporter
        row(value=-5.0),                                    # 5 negative value
        row(primaryValue="abc", cifvalue="abc"),            # 6 non-numeric
        row(cmd=""),                                        # 7 missing HS
        row(cmd="2825"),                                    # 8 wrong HS length
        row(partnerCode="899", partnerISO="_X"),            # 9 area aggregate
        row(flow="DX"),                                     # 10 unsupported flow
        row(cmd="811292", partner="THA"),                   # 11 ok
    ]
    f = write(tmp_path / "r.csv", rows)
    (s,) = load_comtrade(wh, [f])
    assert (s.rows_read, s.rows_loaded, s.rows_rejected) == (10, 2, 8)
    got = dict(wh.con.execute("SELECT line, reason FROM rejects").fetchall())
    assert got[3].startswith("unparseable period '2025-13'")
    assert got[4] == "unknown reporter code '999'"
    assert got[5].startswith("negative value")
    assert got[6] == "non-numeric value 'abc'"
    assert got[7] == "missing HS code"
    assert got[8].startswith("wrong HS length: '2825' has 4 digits")
    assert got[9] == "partner is an aggregate (Areas, nes), not a country"
    assert got[10].startswith("unsupported flow code 'DX'")
    raw = wh.con.execute("SELECT raw, file FROM rejects WHERE line = 4").fetchone()
    assert "999" in raw[0] and raw[1].endswith("r.csv")


def test_parser_broken_lines_are_rejected_with_their_line(wh, tmp_path):
    f = write(tmp_path / "p.csv", [row(), row(partner="THA")])
    lines = f.read_text().splitlines()
    lines.insert(2, "C,M,20250301,2025")  # too few columns, at file line 3
    f.write_text("\n".join(lines) + "\n")
    (s,) = load_comtrade(wh, [f])
    assert (s.rows_read, s.rows_loaded, s.rows_rejected) == (3, 2, 1)
    line, reason = wh.con.execute("SELECT line, reason FROM rejects").fetchone()
    assert line == 3 and "MISSING COLUMNS" in reason


def test_reject_lines_account_for_earlier_broken_lines(wh, tmp_path):
    f = write(tmp_path / "p2.csv", [row(), row(partner="THA"), row(partner="MEX", value=-1.0)])
    lines = f.read_text().splitlines()
    lines.insert(1, "broken,line")  # line 2; the negative value row moves to line 5
    f.write_text("\n".join(lines) + "\n")
    load_comtrade(wh, [f])
    got = dict(wh.con.execute("SELECT line, reason FROM rejects").fetchall())
    assert set(got) == {2, 5} and got[5].startswith("negative value")


def test_same_file_twice_is_skipped(wh, tmp_path):
    f = write(tmp_path / "a.csv", [row(), row(partner="THA")])
    load_comtrade(wh, [f])
    (s,) = load_comtrade(wh, [f])
    assert s.status == "skipped" and "skipped" in s.line()
    assert wh.con.execute("SELECT count(*) FROM flows").fetchone()[0] == 2
    assert wh.con.execute("SELECT count(*) FROM loads").fetchone()[0] == 1


def test_revision_replaces_rows_with_the_same_key(wh, tmp_path):
    load_comtrade(wh, [write(tmp_path / "v1.csv", [row(value=100.0), row(partner="THA", value=5.0)])])
    (s,) = load_comtrade(wh, [write(tmp_path / "v2.csv", [row(value=130.0), row(partner="MEX", value=9.0)])])
    assert (s.rows_read, s.rows_loaded, s.rows_replaced) == (2, 1, 1)
    assert wh.con.execute("SELECT partner, value_usd FROM flows ORDER BY partner").fetchall() == [
        ("CHN", 130.0), ("MEX", 9.0), ("THA", 5.0)]


def test_duplicate_key_within_a_file_keeps_the_first(wh, tmp_path):
    (s,) = load_comtrade(wh, [write(tmp_path / "d.csv", [row(value=1.0), row(value=2.0)])])
    assert (s.rows_loaded, s.rows_rejected) == (1, 1)
    assert wh.con.execute("SELECT value_usd FROM flows").fetchall() == [(1.0,)]
    assert wh.con.execute("SELECT line FROM rejects").fetchall() == [(3,)]


def test_failure_mid_load_leaves_warehouse_unchanged(wh, tmp_path, monkeypatch):
    load_comtrade(wh, [write(tmp_path / "v1.csv", [row(value=100.0)])])
    before = wh.con.execute("SELECT * FROM flows").fetchall()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(comtrade, "record_rejects", boom)  # after flows were replaced and inserted
    with pytest.raises(RuntimeError):
        load_comtrade(wh, [write(tmp_path / "v2.csv", [row(value=130.0), row(partner="THA")])])
    assert wh.con.execute("SELECT * FROM flows").fetchall() == before
    assert wh.con.execute("SELECT count(*) FROM loads").fetchone()[0] == 1
    assert wh.con.execute("SELECT count(*) FROM reporting").fetchone()[0] == 1


def test_gzip_header_only_and_unicode_names(wh, tmp_path):
    (g,) = load_comtrade(wh, [write(tmp_path / "a.csv.gz", [row(reporter="CIV", partner="CHN")])])
    assert g.rows_loaded == 1 and flows(wh)[0][0] == "CIV"
    (h,) = load_comtrade(wh, [write(tmp_path / "h.csv", [])])
    assert (h.rows_read, h.rows_loaded) == (0, 0)
    latin = write(tmp_path / "l.csv", [row(reporter="CIV", partner="THA")], encoding="latin-1")
    (s,) = load_comtrade(wh, [latin])
    assert s.rows_loaded == 1


def test_empty_file_is_an_error(wh, tmp_path):
    f = tmp_path / "empty.csv"
    f.write_text("")
    with pytest.raises(InputError, match="empty.csv:1: empty file"):
        load_comtrade(wh, [f])


def test_hs_code_that_lost_its_leading_zero_is_restored(wh, tmp_path):
    (s,) = load_comtrade(wh, [write(tmp_path / "z.csv", [row(cmd="80300"), row(cmd="8110.10", partner="THA")])])
    assert s.fixed_codes == 1 and "zero-padded" in s.line()
    assert sorted(r[4] for r in flows(wh)) == ["080300", "811010"]


def test_second_writer_gets_busy_error(tmp_path):
    import subprocess
    import sys

    db = tmp_path / "w.duckdb"
    Warehouse.open(db).close()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time, duckdb; con = duckdb.connect(sys.argv[1]); print('ready', flush=True); time.sleep(30)"),
        str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(WarehouseBusy, match="warehouse is in use by another process"):
            Warehouse.open(db)
        result = CliRunner().invoke(main, ["--db", str(db), "ingest", "comtrade", str(db)])
        assert result.exit_code == 1
        assert result.output.count("\n") == 1 and "warehouse is in use by another process" in result.output
    finally:
        holder.kill()
        holder.wait()


def test_cli_prints_summary_then_skipped_and_one_line_error(tmp_path):
    f = write(tmp_path / "a.csv", [row(), row(partner="W00")])
    db = str(tmp_path / "w.duckdb")
    r1 = CliRunner().invoke(main, ["--db", db, "ingest", "comtrade", str(f)])
    assert r1.exit_code == 0, r1.output
    assert "read 2, loaded 1, replaced 0, rejected 1 (1 of them partner aggregates)" in r1.output
    r2 = CliRunner().invoke(main, ["--db", db, "ingest", "comtrade", str(f)])
    assert r2.exit_code == 0 and "skipped" in r2.output
    bad = tmp_path / "bad.csv"
    bad.write_text("foo,bar\n1,2\n")
    r3 = CliRunner().invoke(main, ["--db", db, "ingest", "comtrade", str(bad)])
    assert r3.exit_code == 1
    assert r3.output.startswith("Error: ") and r3.output.count("\n") == 1 and "bad.csv:1:" in r3.output


def test_warehouse_schema_version_and_newer_file_refused(tmp_path):
    db = tmp_path / "w.duckdb"
    with Warehouse.open(db) as w:
        assert w.schema_version >= 1
        w.con.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(Exception, match="newer version of detector"):
        Warehouse.open(db)
    con = duckdb.connect(str(tmp_path / "other.duckdb"))
    con.execute("CREATE TABLE meta (key VARCHAR, value VARCHAR)")
    con.close()
    with pytest.raises(Exception, match="not a detector warehouse"):
        Warehouse.open(tmp_path / "other.duckdb")
