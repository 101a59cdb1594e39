"""The fast staging path of the Comtrade loader gives exactly what the DuckDB reader gives.

Every file is loaded twice, once with the fast path allowed and once with it switched off, into
two fresh warehouses; flows, rejects, reporting, loads and the load summaries must be the same.
Clean files must take the fast path; files with broken, short, long, blank or quoted lines (or
an encoding the Arrow reader would read differently) must fall back to the DuckDB reader, also
when the problem only shows in a later batch (the batch size is shrunk so small files split).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detector.errors import InputError
from detector.ingest import comtrade, fast_staging
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
    real = comtrade.stage_csv_batches

    def spy(*args, **kwargs):
        header, batched = real(*args, **kwargs)
        if fast_staging.FAST_STAGING:
            took.append(batched)
        return header, batched

    monkeypatch.setattr(comtrade, "stage_csv_batches", spy)
    results = []
    for fast in (True, False):
        monkeypatch.setattr(fast_staging, "FAST_STAGING", fast)
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


def count_batches(monkeypatch) -> list[int]:
    """Batches handed to the parse, per load (a list that fills as files are loaded)."""
    counts = []
    real = fast_staging._clean_batches

    def spy(*args):
        counts.append(0)
        for batch in real(*args):
            counts[-1] += 1
            yield batch

    monkeypatch.setattr(fast_staging, "_clean_batches", spy)
    return counts


@pytest.mark.parametrize("batch_bytes", [1, 200, 900])
@pytest.mark.parametrize("ending", ["crlf", "lf", "no_final_newline"])
def test_batches_split_a_file_with_the_same_result(tmp_path, monkeypatch, batch_bytes, ending):
    """Small batches: a file read a few lines (or one line) at a time, lines longer than a batch,
    CR LF pairs and the repeated key's line (its text read again) across batch boundaries."""
    monkeypatch.setattr(fast_staging, "_BATCH_BYTES", batch_bytes)
    counts = count_batches(monkeypatch)
    f = write(tmp_path / "b.csv", realistic_rows())
    rewrite(f, {"crlf": lambda b: b, "lf": lambda b: b.replace(b"\r\n", b"\n"),
                "no_final_newline": lambda b: b.replace(b"\r\n", b"\n").rstrip(b"\n")}[ending])
    got = assert_same(tmp_path, [f], monkeypatch, fast=True)
    assert counts[0] > 3  # (the second count is the repeated key's lines read again)
    assert got["summaries"][0]["rows_loaded"] == 8 and len(got["rejects"]) == 12


def test_rows_are_numbered_across_batches(tmp_path, monkeypatch):
    """Batched rows keep the file's line numbers: a bad row in the last batch is rejected at its line."""
    monkeypatch.setattr(fast_staging, "_BATCH_BYTES", 500)
    rows = [row("USA", p, "M", cmd=c, value=1.0) for p in ("CHN", "THA", "MEX", "FRA") for c in ("282580", "811292")]
    f = write(tmp_path / "n.csv", rows + [row(reporterCode="999")], columns=SUBSET)
    got = assert_same(tmp_path, [f], monkeypatch, fast=True)
    assert [r[2] for r in got["rejects"]] == [10]


def many_lines(n: int) -> list[bytes]:
    """A header and `n` valid lines of distinct keys (more than the CSV sniffer samples, 20,480)."""
    head = ",".join(SUBSET).encode()
    return [head] + [f"M,2025{1 + i % 12:02d},842,M,{(156, 764, 484, 251)[i // 12 % 4]},0,H6,{100000 + i // 48},C00,0,"
                     f"{i % 97}.5,{i}.25,,{i}.25".encode() for i in range(n)]


PROBLEMS_LATE = {
    "short_line": lambda lines: lines[:-2] + [lines[-2].rsplit(b",", 3)[0]] + lines[-1:],
    "long_line": lambda lines: lines[:-1] + [lines[-1] + b",9"],
    "blank_line": lambda lines: lines[:-1] + [b""] + lines[-1:],
    "quote": lambda lines: lines[:-1] + [lines[-1].replace(b",", b',"', 1) + b'"'],
    "cr": lambda lines: lines[:-1] + [lines[-1] + b"\r"],
    "invalid_utf8": lambda lines: lines[:-1] + [lines[-1].replace(b"H6", b"H\xff", 1)],
}


@pytest.mark.parametrize("problem", sorted(PROBLEMS_LATE))
def test_a_problem_in_a_later_batch_falls_back_with_the_same_result(tmp_path, monkeypatch, problem):
    """The first batches are clean (and parsed); a late line, past what the sniffers sample, is not:
    the whole file goes to the DuckDB reader."""
    monkeypatch.setattr(fast_staging, "_BATCH_BYTES", 100_000)
    counts = count_batches(monkeypatch)
    f = tmp_path / "late.csv"
    f.write_bytes(b"\n".join(PROBLEMS_LATE[problem](many_lines(21_000))) + b"\n")
    got, expected, took = load_both(tmp_path, [f], monkeypatch)
    assert got == expected
    assert counts[0] > 5  # batches were parsed before the problem was found
    if problem == "cr":  # the DuckDB reader refuses a line ending that changes late in a file: so do both
        assert "not a readable CSV file" in got["error"]
    else:
        assert took == [False] and got["summaries"][0]["rows_loaded"] >= 20_998


def test_a_long_clean_file_in_batches(tmp_path, monkeypatch):
    monkeypatch.setattr(fast_staging, "_BATCH_BYTES", 100_000)
    counts = count_batches(monkeypatch)
    f = tmp_path / "long.csv"
    f.write_bytes(b"\n".join(many_lines(21_000)) + b"\n")
    got = assert_same(tmp_path, [f], monkeypatch, fast=True)
    assert counts == [counts[0]] and counts[0] > 10
    assert got["summaries"][0]["rows_loaded"] == 21_000


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
    monkeypatch.setattr(fast_staging, "_MAX_LINE", 300)
    monkeypatch.setattr(fast_staging, "_BATCH_BYTES", 64)
    f = write(tmp_path / "long.csv", [row(), row(partner="THA", cmdDesc="x" * 400), row(partner="MEX")])
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
    monkeypatch.setattr(fast_staging, "_BATCH_BYTES", 150)  # a few lines a batch
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
