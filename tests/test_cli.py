"""The command line as a user meets it: help everywhere, documented commands, settings files,
and the load -> run -> report -> export -> evaluate path through CliRunner."""

import json
from pathlib import Path

import click
import duckdb
import pytest
from click.testing import CliRunner

from detector.cli import main
from detector.warehouse import SCHEMA_VERSION, Warehouse
from tests.handmade_world import background, thai_triangle, write_world

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def commands(group: click.Group, prefix: str = ""):
    for name, cmd in group.commands.items():
        yield f"{prefix}{name}", cmd
        if isinstance(cmd, click.Group):
            yield from commands(cmd, f"{prefix}{name} ")


@pytest.mark.parametrize("name,cmd", list(commands(main)), ids=lambda v: v if isinstance(v, str) else "")
def test_every_command_has_help_and_is_in_the_readme(name, cmd):
    assert cmd.help and len(cmd.help.strip()) > 10, name
    assert f"detector {name}" in README or f"detector --db w.duckdb {name}" in README, name


@pytest.fixture
def world(tmp_path):
    csv = write_world(tmp_path / "files", [*thai_triangle(), *background("282580")])
    cases = tmp_path / "cases.csv"
    cases.write_text("origin,via,destination,hs_prefix,start,end\nCHN,THA,USA,2825,2024-12,2025-06\n")
    return tmp_path, csv, cases


def cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


def test_load_run_report_export_evaluate(world):
    tmp, csv, cases = world
    db = tmp / "w.duckdb"
    assert cli("--db", db, "ingest", "comtrade", csv)[0] == 0
    code, out = cli("--db", db, "run", "--from", "2024-06", "--to", "2025-06", "--out", tmp / "parquet")
    assert code == 0 and "transshipment" in out and "Parquet under" in out and "alerts/ " in out
    code, out = cli("--db", db, "report", "--period", "2025-03", "--top", "3")
    assert code == 0 and "CHN>THA>USA" in out and max(len(line) for line in out.splitlines()) <= 80
    code, out = cli("--db", db, "report", "--from", "2025-01", "--to", "2025-06", "--format", "json")
    assert code == 0 and json.loads(out)[0]["destination"] == "USA"
    assert cli("--db", db, "export", "--out", tmp / "bi")[0] == 0
    rows = duckdb.sql(f"SELECT count(*) FROM read_parquet('{(tmp / 'bi').as_posix()}/alerts/*/*.parquet', "
                      "hive_partitioning = true) WHERE period = DATE '2025-03-01'").fetchall()[0][0]
    assert rows > 0
    code, out = cli("--db", db, "evaluate", "--cases", cases, "--top", "5", "--by-detector")
    assert code == 0 and "recall@5: 100%" in out and "combined" in out


def test_settings_file_changes_a_detector_and_bad_keys_are_named(world):
    tmp, csv, _ = world
    db = tmp / "w.duckdb"
    cli("--db", db, "ingest", "comtrade", csv)
    strict = tmp / "strict.toml"
    strict.write_text("[detectors.transshipment]\nmin_hub_ratio = 1000.0\n")
    code, out = cli("--db", db, "--config", strict, "run", "--detector", "transshipment")
    assert code == 0 and out.split("\n")[1].split()[:3] == ["transshipment", "0", "alerts"]
    code, out = cli("--config", strict, "detectors")
    assert "min_hub_ratio = 1000.0 (default 2.0)" in out
    bad = tmp / "bad.toml"
    bad.write_text("[detectors.transshipment]\nmin_hub_ratoi = 3\n")
    code, out = cli("--db", db, "--config", bad, "run")
    assert code == 1 and "unknown key 'min_hub_ratoi'" in out and out.count("\n") == 1
    code, out = cli("--db", db, "run", "--from", "2025-13")
    assert code == 1 and "--from '2025-13' is not a month" in out


def test_an_older_warehouse_is_migrated(tmp_path):
    db = tmp_path / "old.duckdb"
    with Warehouse.open(db) as wh:  # turn a current warehouse into a version 1 one
        wh.con.execute("ALTER TABLE alerts DROP COLUMN lead_score")
        wh.con.execute("DROP TABLE lead_status")
        wh.con.execute("DROP TABLE declaration_scores")
        wh.con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    with Warehouse.open(db) as wh:
        assert wh.schema_version == SCHEMA_VERSION
        assert "lead_score" in [c[0] for c in wh.con.execute("DESCRIBE alerts").fetchall()]
        assert wh.con.execute("SELECT count(*) FROM lead_status").fetchall() == [(0,)]
    with pytest.raises(Exception, match="needs migrating"):
        with Warehouse.open(db) as wh:
            wh.con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
        Warehouse.open(db, read_only=True)


def test_declarations_only_warehouse_run_writes_line_scores(tmp_path):
    sample = Path(__file__).resolve().parent / "fixtures" / "kcs_sample_2020h1.csv"
    db = tmp_path / "k.duckdb"
    code, out = cli("--db", db, "ingest", "declarations", sample)
    assert code == 0 and "loaded 9,000" in out
    fast = tmp_path / "fast.toml"
    fast.write_text("[detectors.declaration_risk]\ntrees = 60\nexplore_share = 0.0\n")
    code, out = cli("--db", db, "--config", fast, "run", "--detector", "declaration_risk",
                    "--from", "2020-06", "--to", "2020-06", "--out", tmp_path / "out")
    assert code == 0 and "declaration_scores/ 1,500 rows in 1 partitions" in out
    scores = duckdb.sql(f"SELECT count(*), min(rank), max(score) <= 1 FROM read_parquet("
                        f"'{(tmp_path / 'out').as_posix()}/declaration_scores/*/*.parquet', hive_partitioning = true) "
                        "WHERE period = DATE '2020-06-01'").fetchall()[0]
    assert scores == (1500, 1, True)
    code, out = cli("--db", db, "run")   # six months of lines: not the year of history a default window needs
    assert code == 1 and "only 2020-01..2020-06 loaded; detectors need 12 months of history" in out
