"""Inspection results attached to declaration lines loaded earlier: the daily cycle of a customs service."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from detector.cli import main
from detector.detectors import declaration_risk
from detector.errors import ConfigError, InputError
from detector.ingest.declarations import load_declarations
from detector.ingest.results import load_results, read_results_mapping
from detector.months import Window
from detector.warehouse import Warehouse
from tests.declaration_lines import line_scores

KCS_SAMPLE = Path(__file__).resolve().parent / "fixtures" / "kcs_sample_2020h1.csv"
FAST = declaration_risk.Settings(trees=80, explore_share=0.0)

LABELS = ["Fraud", "Critical Fraud"]


@pytest.fixture(scope="module")
def kcs() -> pl.DataFrame:
    return pl.read_csv(KCS_SAMPLE, infer_schema=False)


def _month(df: pl.DataFrame, month: str) -> pl.Expr:
    return pl.col("Date").str.starts_with(month)


def _results_of(lines: pl.DataFrame, days: int = 5) -> pl.DataFrame:
    """The results file a customs service would send for these lines: id, inspection date, outcome."""
    return lines.select(
        "Declaration ID",
        pl.col("Date").str.to_date().dt.offset_by(f"{days}d").dt.strftime("%Y-%m-%d").alias("Inspected Date"),
        *LABELS)


@pytest.fixture()
def cycle(kcs, tmp_path) -> dict:
    """A warehouse with 2020-01..04 labelled and 2020-05..06 loaded as new, uninspected lines."""
    files = {"history": tmp_path / "history.csv", "may": tmp_path / "may.csv", "june": tmp_path / "june.csv",
             "may_results": tmp_path / "may_results.csv"}
    kcs.filter(pl.col("Date") < "2020-05").write_csv(files["history"])
    kcs.filter(_month(kcs, "2020-05")).drop(LABELS).write_csv(files["may"])
    kcs.filter(_month(kcs, "2020-06")).drop(LABELS).write_csv(files["june"])
    _results_of(kcs.filter(_month(kcs, "2020-05"))).write_csv(files["may_results"])
    db = tmp_path / "w.duckdb"
    with Warehouse.open(db) as wh:
        load_declarations(wh, [files["history"], files["may"], files["june"]])
    return {"db": db, **files}


def _state(wh) -> list[tuple]:
    return wh.con.execute("SELECT declaration_id, label, extra, load_id FROM declarations "
                          "ORDER BY declaration_id").fetchall() + wh.con.execute(
        "SELECT * FROM loads ORDER BY load_id").fetchall() + wh.con.execute(
        "SELECT * FROM rejects ORDER BY load_id, line").fetchall()


def test_results_attach_labels_and_reload_is_idempotent(cycle, kcs):
    may = kcs.filter(_month(kcs, "2020-05"))
    with Warehouse.open(cycle["db"]) as wh:
        summary = load_results(wh, [cycle["may_results"]])
        assert (summary["rows_read"], summary["rows_loaded"], summary["rows_replaced"], summary["rows_rejected"]) \
            == (may.height, may.height, 0, 0)
        got = pl.from_arrow(wh.con.sql(
            """SELECT declaration_id AS "Declaration ID", CAST(label AS VARCHAR) AS label,
                      extra->>'critical_fraud' AS critical, extra->>'inspected_date' AS inspected
               FROM declarations WHERE period = DATE '2020-05-01'""").to_arrow_table())
        want = may.join(_results_of(may), on="Declaration ID").select(
            "Declaration ID", pl.when(pl.col("Fraud").cast(pl.Int32) > 0).then(pl.lit("1")).otherwise(pl.lit("0"))
            .alias("label"), pl.col("Critical Fraud").alias("critical"), pl.col("Inspected Date").alias("inspected"))
        assert got.sort("Declaration ID").equals(want.sort("Declaration ID"))
        assert wh.con.execute("SELECT count(label) FROM declarations WHERE period = DATE '2020-06-01'"
                              ).fetchall() == [(0,)]  # June not inspected yet
        before = _state(wh)
        again = load_results(wh, [cycle["may_results"]])
        assert again["skipped"] == 1 and _state(wh) == before
        assert wh.con.execute("SELECT source FROM loads WHERE file = ?", [str(cycle["may_results"])]
                              ).fetchall() == [("kcs-results",)]


def test_bad_results_go_to_rejects_and_a_later_file_replaces_a_result(cycle, kcs, tmp_path):
    june = kcs.filter(_month(kcs, "2020-06")).head(4)
    rows = _results_of(june).with_columns(pl.col("Fraud").cast(pl.String))
    ids = june["Declaration ID"].to_list()
    bad = pl.concat([
        rows.slice(0, 1),                                                   # line 2: good
        rows.slice(1, 1).with_columns(pl.lit("NOPE-1").alias("Declaration ID")),  # line 3: unknown id
        rows.slice(1, 1).with_columns(pl.lit("2020-31-12").alias("Inspected Date")),  # line 4: bad date
        rows.slice(2, 1).with_columns(pl.lit("maybe").alias("Fraud")),        # line 5: unknown outcome
        rows.slice(3, 1).with_columns(pl.lit("2019-01-01").alias("Inspected Date")),  # line 6: before the line
        rows.slice(0, 1).with_columns(pl.lit("1").alias("Fraud")),           # line 7: repeated id
    ])
    bad.write_csv(tmp_path / "bad.csv")
    with Warehouse.open(cycle["db"]) as wh:
        s = load_results(wh, [tmp_path / "bad.csv"])
        assert (s["rows_read"], s["rows_loaded"], s["rows_rejected"]) == (6, 1, 5)
        reasons = dict(wh.con.execute("SELECT line, reason FROM rejects").fetchall())
        assert reasons[3].startswith("unknown declaration id 'NOPE-1'")
        assert reasons[4].startswith("unparseable inspection date '2020-31-12'")
        assert reasons[5].startswith("unknown outcome 'maybe'")
        assert reasons[6].startswith("inspection date 2019-01-01 is before the declaration date 2020-06-")
        assert reasons[7].startswith(f"duplicate declaration id '{ids[0]}'")
        assert wh.con.execute("SELECT raw FROM rejects WHERE line = 3").fetchall()[0][0].startswith("NOPE-1,")
        assert wh.con.execute("SELECT declaration_id FROM declarations WHERE label IS NOT NULL "
                              "AND period = DATE '2020-06-01'").fetchall() == [(ids[0],)]
        # a corrected result for the same line, in a later file, replaces the first one
        first = int(rows["Fraud"][0])
        rows.slice(0, 1).with_columns(pl.lit(str(1 - first)).alias("Fraud")).write_csv(tmp_path / "fix.csv")
        s = load_results(wh, [tmp_path / "fix.csv"])
        assert (s["rows_loaded"], s["rows_replaced"]) == (0, 1)
        assert wh.con.execute("SELECT label FROM declarations WHERE declaration_id = ?", [ids[0]]
                              ).fetchall() == [(1 - first,)]


def test_a_bad_file_is_one_line_and_leaves_the_warehouse_as_it_was(cycle, kcs, tmp_path):
    may = kcs.filter(_month(kcs, "2020-05"))
    _results_of(may).drop("Fraud").write_csv(tmp_path / "no_outcome.csv")
    with Warehouse.open(cycle["db"]) as wh:
        before = _state(wh)
        with pytest.raises(InputError, match=r"no_outcome.csv:1: column\(s\) 'Fraud' named in the mapping"):
            load_results(wh, [tmp_path / "no_outcome.csv"])
        assert _state(wh) == before
    done = CliRunner().invoke(main, ["--db", str(cycle["db"]), "ingest", "results", str(tmp_path / "no_outcome.csv")])
    assert done.exit_code == 1 and "Traceback" not in done.output
    assert len(done.output.strip().splitlines()) == 1 and "no_outcome.csv:1:" in done.output
    with Warehouse.open(cycle["db"], read_only=True) as wh:
        assert _state(wh) == before


def test_next_run_trains_on_the_attached_results(cycle, kcs, tmp_path):
    """June scored after May's results arrive equals June scored with May labelled from the start, and
    differs from June scored before them (May's labels are the newest training month)."""
    june = Window(date(2020, 6, 1), date(2020, 6, 1))
    with Warehouse.open(cycle["db"]) as wh:
        blind = line_scores(wh, june, FAST)
    done = CliRunner().invoke(main, ["--db", str(cycle["db"]), "ingest", "results", str(cycle["may_results"])])
    assert done.exit_code == 0, done.output
    assert "loaded 1,500" in done.output
    with Warehouse.open(cycle["db"]) as wh:
        informed = line_scores(wh, june, FAST)
    with Warehouse.open(tmp_path / "labelled.duckdb") as wh:
        kcs.filter(pl.col("Date") < "2020-06").write_csv(tmp_path / "labelled.csv")
        load_declarations(wh, [tmp_path / "labelled.csv", cycle["june"]])
        reference = line_scores(wh, june, FAST)
    assert informed.height == blind.height == 1500
    assert informed.equals(reference)
    assert not informed["score"].equals(blind["score"])


def test_outcomes_in_words_through_a_mapping(cycle, kcs, tmp_path):
    mapping = tmp_path / "words.toml"
    mapping.write_text('source = "kcs"\n[columns]\ndeclaration_id = "id"\ninspected = "when"\noutcome = "finding"\n'
                       '[outcomes]\nFRAUD = 1\n"nothing found" = 0\n')
    may = kcs.filter(_month(kcs, "2020-05")).head(3)
    may.select(pl.col("Declaration ID").alias("id"), pl.col("Date").alias("when"),
               pl.Series("finding", ["fraud", "Nothing found", "unclear"])).write_csv(tmp_path / "words.csv")
    with Warehouse.open(cycle["db"]) as wh:
        s = load_results(wh, [tmp_path / "words.csv"], mapping)
        assert (s["rows_loaded"], s["rows_rejected"]) == (2, 1)
        assert wh.con.execute("SELECT reason FROM rejects").fetchall() == [
            ("unknown outcome 'unclear' (expected one of FRAUD, NOTHING FOUND)",)]
        got = wh.con.execute("SELECT declaration_id, label, extra->>'critical_fraud' FROM declarations "
                             "WHERE label IS NOT NULL AND period = DATE '2020-05-01' ORDER BY 1").fetchall()
        assert sorted(got) == sorted(zip(may["Declaration ID"][:2], [1, 0], [None, None], strict=True))
    bad = tmp_path / "bad.toml"
    bad.write_text('source = "kcs"\n[columns]\ndeclaration_id = "id"\ninspected = "when"\noutcome = "x"\n'
                   '[outcomes]\nFRAUD = 2\n')
    with pytest.raises(ConfigError, match="outcomes.FRAUD"):
        read_results_mapping(bad)
