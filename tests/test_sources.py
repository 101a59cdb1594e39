"""One declaration per trade source: the ingest commands, the monthly inbox and the precedence table
all come from it, and a file of no declared source is refused, never loaded as some other source."""

import gzip
import json

import pytest
from click.testing import CliRunner

from detector.cli import ingest, main
from detector.errors import DetectorError
from detector.ingest import sources
from detector.monthly import inbox
from detector.warehouse import Warehouse
from tests.comtrade_files import row, write

HEADERS = {
    "census": "CTY_CODE,CTY_NAME,I_COMMODITY,GEN_VAL_MO,time\n",
    "comext": "REPORTER,PARTNER,TRADE_TYPE,PRODUCT_NC,FLOW,STAT_PROCEDURE,PERIOD,VALUE_EUR,QUANTITY_KG\n",
    "baci": "t,i,j,k,v,q\n",
}


def test_every_declared_source_is_an_ingest_command():
    # besides the trade sources: customs declaration lines, and the inspection results attached to them
    assert set(ingest.commands) == {s.name for s in sources.SOURCES} | {"declarations", "results"}
    for source in sources.SOURCES:
        command = ingest.commands[source.name]
        assert command.help == source.description
        # every ingest command also takes --quiet (no progress, no line per file)
        assert {p.opts[0] for p in command.params if p.opts[0].startswith("--")} == {o.flag for o in source.options} | {
            "--quiet"}


def test_inbox_files_are_told_apart_by_their_declared_headers(tmp_path):
    write(tmp_path / "comtrade.csv.gz", [row()])
    for name, header in HEADERS.items():
        (tmp_path / f"{name}.csv").write_text(header)
    (tmp_path / "exports.json").write_text(json.dumps([["CTY_CODE", "E_COMMODITY", "ALL_VAL_MO"], ["5700", "1", "2"]]))
    (tmp_path / "country_codes_V202501.csv").write_text("country_code,country_name,country_iso2,country_iso3\n")
    kinds = {f.path.name: f.kind for f in inbox.scan_inbox(tmp_path)}
    assert kinds == {"comtrade.csv.gz": "comtrade", "census.csv": "census", "comext.csv": "comext",
                     "baci.csv": "baci", "exports.json": "census", "country_codes_V202501.csv": "companion"}


def test_a_file_of_no_declared_source_is_refused_in_one_line(tmp_path):
    # Comext-like columns without the product code: not Comext, and not loaded as anything
    path = tmp_path / "eu-trade.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("REPORTER,PARTNER,FLOW,PERIOD,VALUE_EUR\nBE,CN,1,202501,100\n")
    found = inbox.classify(path)
    assert found.kind == "unknown"
    assert found.note.startswith("columns not recognised (REPORTER, PARTNER, FLOW, PERIOD, VALUE_EUR)")
    assert "UN Comtrade, CEPII BACI, US Census, Eurostat Comext" in found.note and "\n" not in found.note
    with pytest.raises(DetectorError, match="^unknown source 'unknown': choose comtrade, baci, census, comext, flows$"):
        sources.get(found.kind)


def test_an_unknown_source_name_is_one_line_on_the_command_line(tmp_path):
    done = CliRunner().invoke(main, ["--db", str(tmp_path / "w.duckdb"), "ingest", "eurostat", "x.csv"])
    assert done.exit_code == 2 and "No such command 'eurostat'" in done.output


def test_the_precedence_table_is_the_declared_ranks(tmp_path):
    with Warehouse.open(tmp_path / "w.duckdb") as wh:
        sources.get("comtrade").load(wh, [write(tmp_path / "c.csv", [row()])])
        ranks = wh.con.execute("SELECT source, rank FROM source_precedence ORDER BY source").fetchall()
        with pytest.raises(DetectorError, match="no option rates"):
            sources.get("comtrade").load(wh, [tmp_path / "c.csv"], rates="x.csv")
    assert ranks == sorted(sources.precedence())
