"""A batch of files loaded in one call, for every trade source (UN Comtrade, BACI, US Census,
Eurostat Comext, a mapped table): every guarantee holds per file (whole or not at all, skipped
when already loaded, later files replace earlier rows, a broken file refused with its one-line
error while the good files load, rejects keep their file and line), on the group path and on the
one-file path alike, with the same result."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pytest

from detector.ingest import batch as batch_module
from detector.ingest.baci import load_baci
from detector.ingest.census import load_census
from detector.ingest.comext import load_comext
from detector.ingest.common import FilesRefused
from detector.ingest.comtrade import COMTRADE_COLUMNS, load_comtrade
from detector.ingest.mapped import load_mapped
from detector.warehouse import Warehouse
from tests.comtrade_files import row

MAPPINGS = Path(__file__).resolve().parents[1] / "detector" / "ingest" / "mappings"
COMTRADE = {"USA": 842, "FRA": 251, "IND": 699, "MEX": 484, "CHN": 156, "THA": 764, "WLD": 0}
ISO2 = {"USA": "US", "FRA": "FR", "IND": "IN", "MEX": "MX", "CHN": "CN", "THA": "TH"}
CENSUS = {"CHN": "5700", "THA": "5490", "IND": "5330", "WLD": "-"}
# Census files are all the United States': a file's "reporter" here is its month instead.
MONTH = {"USA": "2024-03", "FRA": "2024-04", "IND": "2024-05", "MEX": "2024-06"}


def _write(path: Path, header: list[str], rows: list[list], delimiter: str = ",") -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)
    return path


@dataclass
class Source:
    """How to write a small file of one source: `line(reporter, partner, value, code)` gives a row;
    `bad_code` a product code the source rejects with `bad_reason`, `world` a partner aggregate."""

    name: str
    header: list[str]
    line: object
    factor: float  # stored value_usd per value written
    good_code: str
    bad_code: str
    bad_reason: str
    world_reason: str
    not_this: str  # the start of the refusal of a file without the source's columns
    delimiter: str = ","
    prefix: str = ""

    def write(self, folder: Path, name: str, rows: list[tuple]) -> Path:
        return _write(folder / f"{self.prefix}{name}", self.header,
                      [self.line(r, p, v, c or self.good_code) for r, p, v, c in rows], self.delimiter)


SOURCES = {
    "comtrade": Source(
        "comtrade", COMTRADE_COLUMNS,
        lambda r, p, v, c: list(row(reporter=r, partner="W00" if p == "WLD" else p, value=float(v), cmd=c).values()),
        1.0, "282580", "12", "wrong HS length: '12' has 2 digits (need 6, 8 or 10)",
        "partner is the World aggregate, not a country", "not a UN Comtrade file"),
    "baci": Source(
        "baci", ["t", "i", "j", "k", "v", "q"],
        lambda r, p, v, c: ["2021", COMTRADE[p], COMTRADE[r], c, v, "2.5"], 1000.0, "811010", "2617",
        "wrong HS length: '2617' has 4 digits (BACI is HS6)", "partner is an aggregate (World), not a country",
        "not a BACI file", prefix="BACI_HS17_Y2021_V202501_"),
    "census": Source(
        "census", ["CTY_CODE", "CTY_NAME", "I_COMMODITY", "GEN_VAL_MO", "GEN_QY1_MO", "UNIT_QY1", "COMM_LVL", "time"],
        lambda r, p, v, c: [CENSUS[p], "TOTAL FOR ALL COUNTRIES" if p == "WLD" else p, c, v, "3", "KG",
                            "HS4" if len(c) == 4 else "HS10", MONTH[r]], 1.0, "8110200000", "8110",
        "HS level HS4 is an aggregate; need 6 to 10 digits",
        "partner is an aggregate (TOTAL FOR ALL COUNTRIES), not a country", "not a US Census trade file"),
    "comext": Source(
        "comext", ["REPORTER", "PARTNER", "TRADE_TYPE", "PRODUCT_NC", "FLOW", "STAT_PROCEDURE", "SUPPL_UNIT",
                   "PERIOD", "VALUE_EUR", "QUANTITY_KG", "QUANTITY_SUPPL_UNIT"],
        lambda r, p, v, c: [ISO2[r], ISO2.get(p, "EU27_2020"), "E", c, "1", "1", "NO_SU", "202403", v, "5", "0"],
        1.10, "81101000", "TOTAL", "product TOTAL is an aggregate, not a product",
        "partner is an aggregate (EU27_2020), not a country", "not a Eurostat Comext file"),
    "mapped": Source(
        "customs_monthly", ["DECLARANT", "PARTNER", "FLOW", "CN8", "MONTH", "VALUE_EUR", "NET_MASS_KG", "SUPP_QTY",
                            "SUPP_UNIT"],
        lambda r, p, v, c: [ISO2[r], ISO2.get(p, "WORLD"), "I", c, "2024-03", v, "4", "", ""], 1.10, "81101000",
        "12", "wrong HS length: '12' has 2 digits (need 6, 8 or 10)", "partner is an aggregate (WORLD), not a country",
        "no column 'DECLARANT'", delimiter=";"),
}


def _loader(name: str, tmp_path: Path):
    """The source's loader, with the rates it needs (March 2024 at 1.10 USD per EUR)."""
    rates = _write(tmp_path / "rates.csv", ["month", "usd_per_eur"], [["2024-03", "1.10"]])
    if name == "comtrade":
        return load_comtrade
    if name == "baci":
        return load_baci
    if name == "census":
        return load_census
    if name == "comext":
        return lambda wh, paths: load_comext(wh, paths, rates=rates)
    mapping = tmp_path / "m.toml"
    mapping.write_text((MAPPINGS / "customs_monthly_iso2_eur.toml").read_text().replace(
        'weight_unit = "kg"', f'weight_unit = "kg"\nrates = "{rates}"'))
    return lambda wh, paths: load_mapped(wh, paths, mapping)


def _batch(src: Source, folder: Path) -> dict[str, Path]:
    """Good files, one already loaded, a revision, two broken ones, a file with rejects."""
    f = {}
    f["old"] = src.write(folder, "a_usa_old.csv", [("USA", "CHN", "100", None), ("USA", "THA", "5", None)])
    f["fra"] = src.write(folder, "b_fra.csv", [("FRA", "CHN", "1", None), ("FRA", "IND", "2", None)])
    f["bad_header"] = _write(folder / f"{src.prefix}c_bad.csv", ["year", "exp", "imp"], [["2021", "156", "842"]],
                             src.delimiter)
    f["rejects"] = src.write(folder, "d_mex.csv", [("MEX", "CHN", "9", None), ("MEX", "WLD", "9", None),
                                                   ("MEX", "THA", "9", src.bad_code)])
    f["revised"] = src.write(folder, "e_usa_new.csv", [("USA", "CHN", "130", None), ("USA", "THA", "5", None)])
    f["empty"] = folder / f"{src.prefix}f_empty.csv"
    f["empty"].write_text("")
    f["ind"] = src.write(folder, "g_ind.csv", [("IND", "CHN", "7", None)])
    return f


def _flows(wh):
    return wh.con.execute("SELECT reporter, partner, period, hs_code, value_usd, load_id FROM flows ORDER BY ALL"
                          ).fetchall()


@pytest.mark.parametrize("grouped", [True, False], ids=["groups", "one-by-one"])
@pytest.mark.parametrize("name", list(SOURCES))
def test_mixed_batch_keeps_every_guarantee_per_file(tmp_path, monkeypatch, name, grouped):
    src, load = SOURCES[name], _loader(name, tmp_path)
    if not grouped:
        monkeypatch.setattr(batch_module.Batch, "key", lambda self, path: None)
    groups = []
    load_group = batch_module.Batch.load_group

    def spy(self, wh, group, done):
        groups.append(([item.path.name.removeprefix(src.prefix) for item in group],
                       load_group(self, wh, group, done)))
        return groups[-1][1]

    monkeypatch.setattr(batch_module.Batch, "load_group", spy)
    f = _batch(src, tmp_path)
    with Warehouse.open(tmp_path / "w.duckdb") as wh:
        (first,) = load(wh, [f["ind"]])  # loaded before the batch
        with pytest.raises(FilesRefused) as refused:
            load(wh, [f["old"], f["fra"], f["bad_header"], f["rejects"], f["revised"], f["empty"], f["ind"], f["fra"]])
        by = {}
        for s in refused.value.summaries:
            by.setdefault(Path(s.file).name.removeprefix(src.prefix), []).append(s)
        # broken files: refused with their one-line error naming file, line and problem; nothing of them kept
        (bad,) = by["c_bad.csv"]
        assert bad.status == "refused" and bad.error.startswith(f"{f['bad_header']}:1: {src.not_this}")
        (empty,) = by["f_empty.csv"]
        assert empty.status == "refused" and empty.error == f"{f['empty']}:1: empty file (no header line)"
        assert "2 of 8 files refused" in str(refused.value)
        files = {r[0] for r in wh.con.execute("SELECT file FROM loads").fetchall()}
        assert str(f["bad_header"]) not in files and str(f["empty"]) not in files
        # already loaded (before, or earlier in the same batch): skipped, nothing changed
        assert by["g_ind.csv"][0].status == "skipped" and by["g_ind.csv"][0].load_id == first.load_id
        assert [s.status for s in by["b_fra.csv"]] == ["loaded", "skipped"]
        # the revision replaces the older file's rows of the same keys, the unchanged key too
        (old,), (revised,) = by["a_usa_old.csv"], by["e_usa_new.csv"]
        assert (old.rows_read, old.rows_loaded) == (2, 2)
        assert (revised.rows_loaded, revised.rows_replaced) == (0, 2)
        usa = [r for r in _flows(wh) if r[5] in (old.load_id, revised.load_id)]
        assert [(r[1], r[4]) for r in usa] == [("CHN", pytest.approx(130 * src.factor)),
                                                ("THA", pytest.approx(5 * src.factor))]
        assert {r[5] for r in usa} == {revised.load_id}
        # rejects counted per file, kept with their own file and line
        (mex,) = by["d_mex.csv"]
        assert (mex.rows_read, mex.rows_loaded, mex.rows_rejected, mex.aggregates) == (3, 1, 2, 1)
        assert wh.con.execute("SELECT file, line, reason FROM rejects ORDER BY line").fetchall() == [
            (str(f["rejects"]), 3, src.world_reason), (str(f["rejects"]), 4, src.bad_reason)]
        loads = dict(wh.con.execute("SELECT file, rows_loaded FROM loads").fetchall())
        assert loads == {str(f["ind"]): 1, str(f["old"]): 2, str(f["fra"]): 2, str(f["rejects"]): 1,
                         str(f["revised"]): 0}
        assert len(_flows(wh)) == 1 + 2 + 2 + 1
        # grouped: the good files in groups of consecutive files, the revision's group replacing the
        # rows of the group before it
        assert groups == ([(["a_usa_old.csv", "b_fra.csv"], True), (["d_mex.csv", "e_usa_new.csv"], True)]
                          if grouped else [])
        # the same batch again changes nothing
        before = (_flows(wh), wh.con.execute("SELECT count(*) FROM rejects").fetchone())
        with pytest.raises(FilesRefused):
            load(wh, [f["old"], f["fra"], f["bad_header"], f["rejects"], f["revised"], f["empty"]])
        assert (_flows(wh), wh.con.execute("SELECT count(*) FROM rejects").fetchone()) == before


@pytest.mark.parametrize("name", list(SOURCES))
def test_group_and_one_by_one_load_the_same(tmp_path, monkeypatch, name):
    src, load = SOURCES[name], _loader(name, tmp_path)
    f = _batch(src, tmp_path)
    files = [f[k] for k in ("old", "fra", "rejects", "revised", "ind")]
    tables = []
    for grouped in (True, False):
        if not grouped:
            monkeypatch.setattr(batch_module.Batch, "key", lambda self, path: None)
        with Warehouse.open(tmp_path / f"w{grouped}.duckdb") as wh:
            summaries = load(wh, files)
            tables.append(([s.line().rsplit(" in ", 1)[0] for s in summaries], _flows(wh),
                           wh.con.execute("SELECT load_id, file, line, raw, reason FROM rejects ORDER BY ALL").fetchall(),
                           wh.con.execute("SELECT * FROM reporting ORDER BY ALL").fetchall()))
    assert tables[0] == tables[1]
    assert len(tables[0][2]) == 2 and all(raw for _, _, _, raw, _ in tables[0][2])


def test_a_flow_in_two_files_of_a_group_is_the_later_files(tmp_path):
    """Comext sums the rows of one flow within a file; a flow in two files of one group is not summed
    across them: the later file replaces the earlier one's, as one load after the other."""
    src, load = SOURCES["comext"], _loader("comext", tmp_path)
    one = src.write(tmp_path, "one.csv", [("FRA", "CHN", "10", None)])
    two = src.write(tmp_path, "two.csv", [("FRA", "CHN", "40", None), ("FRA", "THA", "1", None)])
    with Warehouse.open(tmp_path / "w.duckdb") as wh:
        first, second = load(wh, [one, two])
        assert (first.rows_loaded, second.rows_loaded, second.rows_replaced) == (1, 1, 1)
        assert [(r[1], r[4]) for r in _flows(wh)] == [("CHN", pytest.approx(44.0)), ("THA", pytest.approx(1.1))]
