"""The fast staging path of the Comtrade loader gives exactly what the DuckDB reader gives.

Every file is loaded twice, once with the fast path allowed and once with it switched off, into
two fresh warehouses; flows, rejects, reporting, loads and the load summaries must be the same.
Clean files must take the fast path; files with broken, short, long, blank or quoted lines (or
an encoding the Arrow reader would read differently) must fall back to the DuckDB reader.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detector.errors import InputError
from detector.ingest import common
from detector.ingest.comtrade import load_comtrade
from detector.warehouse import Warehouse
from tests.comtrade_files import row, write

SUBSET = ["freqCode", "period", "reporterCode", "flowCode", "partnerCode", "partner2Code", "classificationCode",
          "cmdCode", "customsCode", "motCode", "netWgt", "cifvalue", "fobvalue", "primaryValue"]


def realistic_rows() -> list[dict]:
    """Valid rows of several kinds, partner aggregates, every kind of bad value, a repeated key."""
    return [
        row("USA", "CHN", "M", value=1200.0, weight=100.0),
        row("USA", "THA", "M", value=800.0, weight=60.0, partner2="CHN"),
        row("USA", "W00", "M", value=2000.0, weight=160.0),
        row("CHN", "USA", "X", value=1100.0, weight=100.0, fobvalue=""),
        row("FRA", "TWN", "M", cmd="811292", value=10.0, partnerDesc="Other Asia nes"),  # no comma to quote
        row("IND", "CHN", "RX", cmd="811292", value=5.0),
        row("THA", "CHN", "M", period="2024", value=50.0),
        row("THA", "CIV", "M", cmd="81101", value=7.0),                   # lost leading zero
        row(period="2025-13"),
        row(reporterCode="999"),
        row(value=-5.0),
        row(primaryValue="abc", cifvalue="abc"),
        row(cmd=""),
        row(cmd="2825"),
        row(partnerCode="899", partnerISO="_X"),
        row(flow="DX"),
        row(customsCode="C01"),
        row(netWgt="12kg"),
        row("USA", "CHN", "M", value=1.0),                                  # repeats the first key
        row("MEX", "USA", "X", cmd=" 282580 ", value=3.0, qty=" 4 "),      # blanks around values
    ]


def load_both(tmp_path: Path, files: list[Path], monkeypatch) -> tuple[dict, dict, list[bool]]:
    """(fast-path result, DuckDB-reader result, whether each staged file took the fast path)."""
    took = []
    real = common._clean_csv_table

    def spy(*args):
        data = real(*args)
        took.append(data is not None)
        return data

    monkeypatch.setattr(common, "_clean_csv_table", spy)
    results = []
    for fast in (True, False):
        monkeypatch.setattr(common, "FAST_STAGING", fast)
        db = tmp_path / f"w-{fast}.duckdb"
        with Warehouse.open(db) as wh:
            try:
                summaries = load_comtrade(wh, files)
            except InputError as exc:  # refused files must be refused alike, with the same message
                results.append({"error": str(exc)})
                continue
            con = wh.con
            results.append({
                "summaries": [{k: v for k, v in vars(s).items() if k != "seconds"} for s in summaries],
                "flows": con.execute("SELECT * FROM flows ORDER BY ALL").fetchall(),
                "rejects": con.execute("SELECT * FROM rejects ORDER BY ALL").fetchall(),
                "reporting": con.execute("SELECT * FROM reporting ORDER BY ALL").fetchall(),
                "loads": con.execute("SELECT * EXCLUDE (loaded_at) FROM loads ORDER BY ALL").fetchall(),
            })
    return results[0], results[1], took


def assert_same(tmp_path, files, monkeypatch, fast: bool) -> dict:
    got, expected, took = load_both(tmp_path, files, monkeypatch)
    assert got == expected
    assert took and all(t == fast for t in took), took
    return got


def rewrite(path: Path, transform) -> Path:
    path.write_bytes(transform(path.read_bytes()))
    return path


# ---------------------------------------------------------------- clean files: the fast path

def test_full_layout_file_takes_the_fast_path_with_the_same_result(tmp_path, monkeypatch):
    f = write(tmp_path / "full.csv", realistic_rows())
    got = assert_same(tmp_path, [f], monkeypatch, fast=True)
    s = got["summaries"][0]
    assert (s["rows_read"], s["rows_loaded"], s["rows_rejected"], s["aggregates"], s["fixed_codes"]) == (20, 8, 12, 2, 1)
    assert s["reasons"]["duplicate key in file (same reporter, partner, flow, hs_code, period as an earlier line)"] == 1
    lines = {r[2]: r for r in got["rejects"]}
    assert {4, 11, 20} <= set(lines)  # World row, unknown reporter, the repeated key
    assert lines[12][3].startswith("M,20250301,2025,3,202503,842,USA,M,156,CHN") and "-5.0" in lines[12][3]


@pytest.mark.parametrize("variant", ["crlf", "no_final_newline", "semicolon", "bom", "subset", "header_only"])
def test_clean_variants_take_the_fast_path(tmp_path, monkeypatch, variant):
    rows = realistic_rows()
    if variant == "subset":
        f = write(tmp_path / "v.csv", rows, columns=SUBSET)
    elif variant == "header_only":
        f = write(tmp_path / "v.csv", [])
    elif variant == "semicolon":
        f = tmp_path / "v.csv"
        lines = write(tmp_path / "tmp.csv", rows, columns=SUBSET).read_text().splitlines()
        f.write_text("\n".join(line.replace(",", ";") for line in lines) + "\n")
    else:
        f = write(tmp_path / "v.csv", rows)
        transform = {"crlf": lambda b: b.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"),
                     "no_final_newline": lambda b: b.replace(b"\r\n", b"\n").rstrip(b"\n"),
                     "bom": lambda b: b"\xef\xbb\xbf" + b}[variant]
        rewrite(f, transform)
    assert_same(tmp_path, [f], monkeypatch, fast=True)


def test_several_files_and_a_revision_in_one_call(tmp_path, monkeypatch):
    first = write(tmp_path / "a.csv", realistic_rows())
    revised = write(tmp_path / "b.csv", [row("USA", "CHN", "M", value=1300.0), row("USA", "MEX", "M", value=9.0)])
    got = assert_same(tmp_path, [first, revised, first], monkeypatch, fast=True)
    assert [s["rows_replaced"] for s in got["summaries"]] == [0, 1, 0]
    assert got["summaries"][2]["status"] == "skipped"


def test_line_checks_across_scan_chunks(tmp_path, monkeypatch):
    """Tiny scan chunks: CR LF pairs and line lengths split across chunk boundaries."""
    monkeypatch.setattr(common, "_SCAN_CHUNK", 7)
    f = rewrite(write(tmp_path / "c.csv", realistic_rows()), lambda b: b.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    assert_same(tmp_path, [f], monkeypatch, fast=True)


# ---------------------------------------------------------------- anything doubtful: the DuckDB reader

def _insert_line(data: bytes, at: int, line: bytes) -> bytes:
    lines = data.replace(b"\r\n", b"\n").split(b"\n")
    lines.insert(at, line)
    return b"\n".join(lines)


BROKEN = {
    "short_line": lambda b: _insert_line(b, 3, b"C,M,20250301,2025"),
    "long_line": lambda b: _insert_line(b, 2, b.replace(b"\r\n", b"\n").split(b"\n")[1] + b",extra"),
    "blank_line": lambda b: _insert_line(b, 4, b""),
    "short_and_long": lambda b: _insert_line(_insert_line(b, 2, b.replace(b"\r\n", b"\n").split(b"\n")[1] + b",x"),
                                             6, b.replace(b"\r\n", b"\n").split(b"\n")[1].rsplit(b",", 1)[0]),
    "quoted_comma": lambda b: b.replace(b"Antimony oxides", b'"Antimony, oxides"'),
    "quoted_newline": lambda b: b.replace(b"Antimony oxides", b'"Antimony\noxides"', 1),
    "bare_cr": lambda b: b.replace(b"\r\n", b"\n").replace(b"\n", b"\r"),
    "mixed_line_endings": lambda b: b.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n", 3),
    "nul_byte": lambda b: b.replace(b"Antimony oxides", b"Antimony\x00oxides", 1),
    "latin1": lambda b: b.replace("Côte".encode(), "Côte".encode("latin-1")),
    "invalid_utf8_late": lambda b: b + (b.replace(b"\r\n", b"\n").split(b"\n", 1)[1] * 400).replace(
        b"Antimony oxides", b"Antimony \xff oxides", 1),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_broken_or_doubtful_files_fall_back_with_the_same_result(tmp_path, monkeypatch, kind):
    rows = realistic_rows() + [row("CIV", "CHN", "M", value=2.0, partner2="CIV")]
    f = rewrite(write(tmp_path / "x.csv", rows), BROKEN[kind])
    got, expected, took = load_both(tmp_path, [f], monkeypatch)
    assert got == expected
    assert not any(took)


def test_a_line_over_the_length_bound_falls_back(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "_MAX_LINE", 300)
    monkeypatch.setattr(common, "_SCAN_CHUNK", 64)
    f = write(tmp_path / "long.csv", [row(), row(partner="THA", cmdDesc="x" * 400), row(partner="MEX")])
    got, expected, took = load_both(tmp_path, [f], monkeypatch)
    assert got == expected and took == [False]


def test_a_file_too_big_for_the_memory_share_falls_back(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "_ARROW_SHARE", 1e-9)  # the Arrow table would not fit beside DuckDB
    f = write(tmp_path / "big.csv", realistic_rows())
    got, expected, took = load_both(tmp_path, [f], monkeypatch)
    assert got == expected and took == [False]


def test_gzip_files_use_the_duckdb_reader(tmp_path, monkeypatch):
    plain = write(tmp_path / "g.csv", realistic_rows())
    gz = tmp_path / "g.csv.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    got, expected, took = load_both(tmp_path, [gz], monkeypatch)
    assert got == expected and took == [False]


# ---------------------------------------------------------------- any mix of clean and broken lines

LINE_EDITS = st.sampled_from(["keep", "keep", "keep", "short", "long", "blank", "quote", "cr", "spaces"])


@settings(max_examples=15, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(edits=st.lists(LINE_EDITS, min_size=1, max_size=12), final_newline=st.booleans())
def test_fast_path_and_duckdb_reader_agree_on_any_mix_of_lines(tmp_path_factory, monkeypatch, edits, final_newline):
    tmp_path = tmp_path_factory.mktemp("mix")
    rows = realistic_rows()
    lines = write(tmp_path / "base.csv", rows, columns=SUBSET).read_bytes().replace(b"\r\n", b"\n").split(b"\n")[:-1]
    out = [lines[0]]
    for i, edit in enumerate(edits):
        line = lines[1 + i % (len(lines) - 1)]
        out.append({"keep": line, "short": line.rsplit(b",", 2)[0], "long": line + b",9", "blank": b"",
                    "quote": line.replace(b",", b',"', 1) + b'"', "cr": line + b"\r",
                    "spaces": line.replace(b",", b" , ")}[edit])
    f = tmp_path / "mix.csv"
    f.write_bytes(b"\n".join(out) + (b"\n" if final_newline else b""))
    got, expected, took = load_both(tmp_path, [f], monkeypatch)
    assert got == expected
    clean = all(e in ("keep", "spaces") for e in edits)
    assert took == [clean] or not clean
