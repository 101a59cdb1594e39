"""Property-based tests of every loader against broken files.

Whatever the bytes, a load ends in one of two ways: a one-line DetectorError naming the file (and
the warehouse exactly as before), or a load whose counts add up (read = loaded + replaced +
rejected) with every rejected row in `rejects` with a reason. Never another exception, never half
a file.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import itertools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detector.errors import DetectorError, InputError
from detector.ingest.baci import load_baci
from detector.ingest.census import load_census
from detector.ingest.comext import load_comext
from detector.ingest.comtrade import load_comtrade
from detector.ingest.declarations import load_declarations
from detector.ingest.mapped import load_mapped
from detector.warehouse import Warehouse

MAPPINGS = Path(__file__).resolve().parents[1] / "detector" / "ingest" / "mappings"
# The suite runs a fixed, small sample; DETECTOR_FUZZ_EXAMPLES=500 fuzzes longer with fresh examples.
EXAMPLES = int(os.environ.get("DETECTOR_FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=EXAMPLES or 12, deadline=None, derandomize=not EXAMPLES, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# ---------------------------------------------------------------- nasty cell values

NUMBERS = ["1000", "12.5", "0", "-5", "-0.001", "1e308", "1e309", "-1e400", "NaN", "nan", "inf", "-Infinity",
           "99999999999999999999999999999", "1,5", "1 000", "", " ", "abc", "0x10", "1e", "--1"]
HS_CODES = ["811010", "261710", "8110.10", "8110 10", " 811010 ", "81101", "81101000", "8110", "", "ABC",
            "8110.10.00", "٣٤٥٦٧٨", "28258000", "0", "81101000000000", "8110\t10"]
JUNK = ["", " ", "'; DROP TABLE flows; --", '"', "\u00e9\u00e8", "\x00", "NULL", "\\N", "𝔘ni", ";", "\r"]


def cell(valid: list[str], nasty: list[str]):
    """Mostly valid values so that rows get past the first checks, else nasty ones or any text."""
    return st.one_of(st.sampled_from(valid), st.sampled_from(valid), st.sampled_from(nasty + JUNK),
                     st.just(""), st.text(max_size=8))


@dataclass
class Spec:
    name: str
    header: list[str]
    columns: list  # one strategy per header column
    load: Callable  # (wh, path) -> list of (status, read, loaded, replaced, rejected, load_id)
    filename: str = "file.csv"
    delimiter: str = ","


def _flows_result(summaries):
    return [(s.status, s.rows_read, s.rows_loaded, s.rows_replaced, s.rows_rejected, s.load_id) for s in summaries]


def _declarations_result(result):
    return [(f["status"], f["rows_read"], f["rows_loaded"], f["rows_replaced"], f["rows_rejected"], f["load_id"])
            for f in result["files"]]


PERIOD_YYYYMM = ["202403", "202311", "2024", "0000", "999912", "202413", "180001", "20240", "2024-03", "-1"]

SPECS = {
    "comtrade": Spec(
        "comtrade",
        ["freqCode", "period", "reporterCode", "flowCode", "partnerCode", "partner2Code", "cmdCode",
         "primaryValue", "netWgt", "qty", "qtyUnitAbbr"],
        [cell(["M", "A"], ["Q"]), cell(PERIOD_YYYYMM[:3], PERIOD_YYYYMM), cell(["842", "156", "251"], ["999", "-1"]),
         cell(["M", "X", "RX"], ["Z"]), cell(["156", "764", "0", "490"], ["97", "899", "9999999999"]),
         cell(["0", "156"], ["9"]), cell(HS_CODES[:2], HS_CODES), cell(NUMBERS[:3], NUMBERS),
         cell(NUMBERS[:3], NUMBERS), cell(NUMBERS[:3], NUMBERS), cell(["kg"], [])],
        lambda wh, p: _flows_result(load_comtrade(wh, [p]))),
    "baci": Spec(
        "baci", ["t", "i", "j", "k", "v", "q"],
        [cell(["2023", "2022"], ["1850", "99999", "2023.5"]), cell(["156", "842"], ["0", "999"]),
         cell(["842", "251", "764"], ["0", "999"]), cell(["261710", "81101"], HS_CODES), cell(NUMBERS[:3], NUMBERS),
         cell(["NA", "2.5"], NUMBERS)],
        lambda wh, p: _flows_result(load_baci(wh, [p])), filename="BACI_HS22_Y2023_V202501.csv"),
    "census": Spec(
        "census", ["CTY_CODE", "CTY_NAME", "I_COMMODITY", "GEN_VAL_MO", "GEN_QY1_MO", "UNIT_QY1", "SUMMARY_LVL",
                   "COMM_LVL", "time"],
        [cell(["5700", "5490", "1220"], ["-", "0003", "5XXX", "99999"]), cell(["CHINA"], []),
         cell(["8110200000", "811020"], HS_CODES), cell(NUMBERS[:3], NUMBERS), cell(NUMBERS[:3], NUMBERS),
         cell(["KG", "T", "-"], ["X", "NO"]), cell(["DET"], ["CGP"]), cell(["HS10", "HS6"], ["HS2", "HS4"]),
         cell(["2024-03", "2023-11"], ["2024-13", "0000-01", "9999-12", "2024"])],
        lambda wh, p: _flows_result(load_census(wh, [p]))),
    "comext": Spec(
        "comext", ["REPORTER", "PARTNER", "TRADE_TYPE", "PRODUCT_NC", "FLOW", "STAT_PROCEDURE", "SUPPL_UNIT",
                   "PERIOD", "VALUE_EUR", "QUANTITY_KG", "QUANTITY_SUPPL_UNIT"],
        [cell(["NL", "DE", "EL"], ["XX", "EU27_2020"]), cell(["CN", "US", "QV"], ["WORLD", "ZZ"]),
         cell(["E", "I"], []), cell(["81101000", "2617100"], HS_CODES + ["TOTAL", "99RRR100"]),
         cell(["1", "2"], ["3"]), cell(["1", "2"], []), cell(["NO_SU", "KG"], []),
         cell(["202403", "202311"], PERIOD_YYYYMM + ["202452"]), cell(NUMBERS[:3], NUMBERS),
         cell(NUMBERS[:3], NUMBERS), cell(["0", "5"], NUMBERS)],
        lambda wh, p: _flows_result(load_comext(wh, [p])), filename="full_v2_202403.dat"),
    "mapped": Spec(
        "mapped", ["DECLARANT", "PARTNER", "FLOW", "CN8", "MONTH", "VALUE_EUR", "NET_MASS_KG", "SUPP_QTY",
                   "SUPP_UNIT"],
        [cell(["BE", "FR"], ["ZZ"]), cell(["CN", "EL", "WORLD"], ["ZZ"]), cell(["I", "E"], ["T"]),
         cell(["81101000"], HS_CODES), cell(["2024-03", "2023-11"], ["2024-13", "0000-01", "9999-12", "202403"]),
         cell(NUMBERS[:3], NUMBERS), cell(NUMBERS[:3], NUMBERS), cell(["", "3"], NUMBERS), cell(["", "p/st"], [])],
        lambda wh, p: _flows_result(load_mapped(wh, [p], MAPPINGS / "customs_monthly_iso2_eur.toml")),
        delimiter=";"),
    "declarations": Spec(
        "declarations",
        ["Declaration ID", "Date", "Office ID", "Process Type", "Import Type", "Import Use", "Payment Type",
         "Mode of Transport", "Declarant ID", "Importer ID", "Seller ID", "Courier ID", "HS6 Code",
         "Country of Departure", "Country of Origin", "Tax Rate", "Tax Type", "Country of Origin Indicator",
         "Net Mass", "Item Price", "Fraud", "Critical Fraud"],
        [cell(["1", "2", "3"], ["", "x"]), cell(["2020-01-05"], ["2020-13-01", "0000-01-01", "9999-12-31", "05/01/2020"]),
         *[cell(["30"], []) for _ in range(10)], cell(["850511"], HS_CODES), cell(["HK", "CN"], ["ZZ", "XX"]),
         cell(["CN"], ["ZZ", "XX"]), cell(["8.0"], NUMBERS), cell(["A", "FCN1"], []), cell(["G"], []),
         cell(NUMBERS[:3], NUMBERS), cell(NUMBERS[:3], NUMBERS), cell(["0", "1"], NUMBERS), cell(["0"], [])],
        lambda wh, p: _declarations_result(load_declarations(wh, [p]))),
}

# ---------------------------------------------------------------- file construction

DELIMITERS = [",", ";", "\t", "|"]
ENCODINGS = ["utf-8", "utf-8-sig", "latin-1", "utf-16", "utf-16-le"]


@st.composite
def broken_file(draw, spec: Spec) -> bytes:
    header = list(spec.header)
    rows = draw(st.lists(st.tuples(*spec.columns).map(list), min_size=0, max_size=8))
    rows += [list(r) for r in draw(st.lists(st.sampled_from(rows), max_size=2))] if rows else []  # repeats
    for r in rows:  # totals and half-filled lines leave several cells empty at once
        for j in draw(st.sets(st.integers(0, len(header) - 1), max_size=4)):
            r[j] = ""
    change = draw(st.sampled_from(["none", "duplicate", "drop", "case", "extra_field", "short_row"]))
    i = draw(st.integers(0, len(header) - 1))
    if change == "duplicate":
        header.append(header[i])
        rows = [r + [r[i]] for r in rows]
    elif change == "drop":
        header.pop(i)
        rows = [r[:i] + r[i + 1:] for r in rows]
    elif change == "case":
        header[i] = " " + header[i].upper() + " "
    elif change == "extra_field" and rows:
        rows[0] = rows[0] + ["surplus"]
    elif change == "short_row" and rows:
        rows[-1] = rows[-1][:2]
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=draw(st.sampled_from([spec.delimiter, *DELIMITERS])), lineterminator=draw(
        st.sampled_from(["\n", "\r\n"])))
    w.writerow(header)
    w.writerows(rows)
    text = buf.getvalue()
    encoding = draw(st.sampled_from(ENCODINGS))
    data = text.encode(encoding, errors="replace")
    if encoding == "utf-16-le" and draw(st.booleans()):
        data = codecs.BOM_UTF16_LE + data
    if draw(st.integers(0, 3)) == 0:  # a download cut short
        data = data[:draw(st.integers(0, len(data)))]
    return data


def census_json() -> st.SearchStrategy[bytes]:
    spec = SPECS["census"]

    @st.composite
    def build(draw):
        rows = draw(st.lists(st.tuples(*spec.columns).map(list), max_size=6))
        rows = [[None if v == "" else v for v in r] for r in rows]
        if rows and draw(st.booleans()):
            rows[0] = rows[0][:3]
        text = json.dumps([spec.header, *rows]).encode()
        if draw(st.booleans()):
            text = text[:draw(st.integers(0, len(text)))]
        return text
    return build()


# ---------------------------------------------------------------- the invariant

TABLES = ["flows", "declarations", "rejects", "loads", "reporting"]
_counter = itertools.count()


@pytest.fixture(scope="module")
def wh(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    with Warehouse.open(folder / "w.duckdb") as w:
        w.files = folder  # where the examples are written
        yield w


def counts(wh) -> dict:
    return {t: wh.con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}


def load_checked(wh, spec: Spec, data: bytes, filename: str | None = None, gz: bool = False) -> str:
    """Load `data` as a file and assert the invariant; returns 'error', 'loaded' or 'skipped'."""
    name = filename or spec.filename
    folder = wh.files / f"ex{next(_counter)}"
    folder.mkdir()
    path = folder / (name + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(data) if gz else data)
    before = counts(wh)
    try:
        results = spec.load(wh, path)
    except DetectorError as exc:
        message = str(exc)
        assert "\n" not in message and "\r" not in message, message
        assert "internal error" not in message, message  # the loader's own checks must catch it
        assert str(path) in message, message
        assert counts(wh) == before, message
        return "error"
    (status, read, loaded, replaced, rejected, load_id), = results
    if status == "skipped":
        assert counts(wh) == before
        return status
    assert read == loaded + replaced + rejected, (read, loaded, replaced, rejected)
    stored = wh.con.execute("SELECT count(*), count(*) FILTER (WHERE coalesce(reason, '') = ''), "
                            "count(*) FILTER (WHERE file <> ?) FROM rejects WHERE load_id = ?",
                            [str(path), load_id]).fetchone()
    assert stored == (rejected, 0, 0)
    after = counts(wh)
    assert after["loads"] == before["loads"] + 1
    assert after["rejects"] == before["rejects"] + rejected
    table = "declarations" if spec.name == "declarations" else "flows"
    assert after[table] == before[table] + loaded
    return status


# ---------------------------------------------------------------- the properties

LOADERS = list(SPECS)


@pytest.mark.parametrize("name", LOADERS)
@FUZZ
@given(data=st.binary(max_size=200))
def test_arbitrary_bytes(wh, name, data):
    load_checked(wh, SPECS[name], data)


@pytest.mark.parametrize("name", LOADERS)
@FUZZ
@given(data=st.data())
def test_header_then_garbage(wh, name, data):
    spec = SPECS[name]
    head = spec.delimiter.join(spec.header).encode() + b"\n"
    load_checked(wh, spec, head + data.draw(st.binary(max_size=120)))


@pytest.mark.parametrize("name", LOADERS)
@settings(FUZZ, max_examples=EXAMPLES or 20)
@given(data=st.data())
def test_broken_csv(wh, name, data):
    spec = SPECS[name]
    load_checked(wh, spec, data.draw(broken_file(spec)), gz=data.draw(st.integers(0, 5)) == 0)


@FUZZ
@given(data=census_json())
def test_census_json(wh, data):
    load_checked(wh, SPECS["census"], data, filename="imports.json")


@FUZZ
@given(data=st.binary(max_size=100))
def test_mapped_parquet_garbage(wh, data):
    spec = Spec("mapped", [], [], lambda w, p: _flows_result(
        load_mapped(w, [p], MAPPINGS / "parquet_iso3_tonnes.toml")))
    load_checked(wh, spec, b"PAR1" + data, filename="x.parquet")


# ---------------------------------------------------------------- fixed cases worth naming

@pytest.mark.parametrize("name", LOADERS)
def test_empty_and_header_only_files(wh, name):
    spec = SPECS[name]
    assert load_checked(wh, spec, b"") == "error"
    assert load_checked(wh, spec, b"\xef\xbb\xbf") == "error"
    load_checked(wh, spec, (spec.delimiter.join(spec.header) + "\n").encode())


@pytest.mark.parametrize("name", [n for n in LOADERS if n != "census"])
def test_duplicated_header_column_is_one_line_error(wh, name):
    spec = SPECS[name]
    header = spec.header + [spec.header[0]]
    data = (spec.delimiter.join(header) + "\n" + spec.delimiter.join(["1"] * len(header)) + "\n").encode()
    path_name = spec.filename
    before = counts(wh)
    folder = wh.files / f"dup{next(_counter)}"
    folder.mkdir()
    path = folder / path_name
    path.write_bytes(data)
    with pytest.raises(InputError) as err:
        spec.load(wh, path)
    assert str(err.value) == f"{path}:1: duplicated header column '{spec.header[0]}'"
    assert counts(wh) == before


def test_census_repeated_column_keeps_the_first_like_the_api_json(wh):
    """The Census API repeats a column asked for twice (same values); both readers keep the first."""
    spec = SPECS["census"]
    header = spec.header + ["I_COMMODITY"]
    line = ["5700", "CHINA", "8110200000", "1000", "5", "KG", "DET", "HS10", "2024-03", "8110*"]
    text = ",".join(header) + "\n" + ",".join(line) + "\n"
    assert load_checked(wh, spec, text.encode(), filename="census_dup.csv") == "loaded"
    assert wh.con.execute("SELECT f.hs_code FROM flows f JOIN loads l USING (load_id) "
                          "WHERE l.file LIKE '%census_dup.csv'").fetchall() == [("8110200000",)]


def test_census_total_without_code_or_name_is_rejected_as_aggregate(wh):
    text = "CTY_CODE,CTY_NAME,I_COMMODITY,GEN_VAL_MO,SUMMARY_LVL,time\n,,8110200000,100,CGP,2024-03\n"
    assert load_checked(wh, SPECS["census"], text.encode(), filename="cgp.csv") == "loaded"
    assert wh.con.execute("SELECT reason FROM rejects WHERE file LIKE '%cgp.csv'").fetchall() == [
        ("partner is an aggregate (SUMMARY_LVL CGP), not a country",)]


def test_periods_out_of_range_are_rejected(wh):
    spec = SPECS["census"]
    lines = ["5700,CHINA,8110200000,100,5,KG,DET,HS10,9999-12", "5700,CHINA,8110200000,100,5,KG,DET,HS10,0001-01"]
    text = ",".join(spec.header) + "\n" + "\n".join(lines) + "\n"
    assert load_checked(wh, spec, text.encode(), filename="far.csv") == "loaded"
    assert sorted(wh.con.execute("SELECT reason FROM rejects WHERE file LIKE '%far.csv'").fetchall()) == [
        ("period 0001-01 out of range (1962 to 2100)",), ("period 9999-12 out of range (1962 to 2100)",)]


def test_truncated_gzip_is_one_line_error(wh):
    spec = SPECS["comtrade"]
    text = (",".join(spec.header) + "\n"
            + "".join(f"M,202403,842,M,156,0,811010,{i},5,5,kg\n" for i in range(2000))).encode()
    whole = gzip.compress(text)
    folder = wh.files / "gz"
    folder.mkdir()
    before = counts(wh)
    for n, cut in enumerate([len(whole) // 2, len(whole) - 4]):  # mid-stream, and only the trailer lost
        path = folder / f"cut{n}.csv.gz"
        path.write_bytes(whole[:cut])
        with pytest.raises(InputError, match=rf"^{path}: gzip file ends early"):
            load_comtrade(wh, [path])
        assert counts(wh) == before
