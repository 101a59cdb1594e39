"""User data never becomes SQL text, config files are checked key by key, and an export never
deletes anything outside its output folder."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from click.testing import CliRunner

from detector.cli import main
from detector.detectors import registry
from detector.errors import ConfigError, DetectorError
from detector.export import export_parquet, safe_out_dir
from detector.ingest import declarations
from detector.ingest.comtrade import load_comtrade
from detector.ingest.mapped import load_mapped, read_mapping
from detector.settings import load_settings
from detector.warehouse import Warehouse
from tests.comtrade_files import row, write

HOSTILE = "a'; DROP TABLE flows; --"
MAPPINGS = Path(__file__).resolve().parents[1] / "detector" / "ingest" / "mappings"


@pytest.fixture
def wh(tmp_path):
    with Warehouse.open(tmp_path / "w.duckdb") as w:
        load_comtrade(w, [write(tmp_path / "first.csv", [row()])])
        yield w


def flow_count(wh) -> int:
    return wh.con.execute("SELECT count(*) FROM flows").fetchone()[0]


def test_hostile_file_name_and_header_load_as_data(wh, tmp_path):
    columns = ["period", "reporterCode", "partnerCode", "flowCode", "cmdCode", "primaryValue", f'{HOSTILE}"x;']
    rows = [row(partner="THA", **{f'{HOSTILE}"x;': "'); DELETE FROM loads; --"}),
            row(partner="FRA", reporterCode=HOSTILE)]
    f = write(tmp_path / f"{HOSTILE}.csv", rows, columns=columns)
    (s,) = load_comtrade(wh, [f])
    assert (s.rows_loaded, s.rows_rejected) == (1, 1)
    assert flow_count(wh) == 2
    assert wh.con.execute("SELECT file, reason FROM rejects").fetchall() == [
        (str(f), f"unknown reporter code '{HOSTILE}'")]
    assert wh.con.execute("SELECT count(*) FROM loads WHERE file = ?", [str(f)]).fetchone()[0] == 1


def test_hostile_mapping_names_are_identifiers_and_literals(wh, tmp_path):
    mapping = (MAPPINGS / "customs_monthly_iso2_eur.toml").read_text()
    mapping = mapping.replace('reporter = "DECLARANT"', 'reporter = "DECL\\"; DROP TABLE flows; --"')
    mapping = mapping.replace('aggregates = [', f'aggregates = ["{HOSTILE}", ')
    mapping = mapping.replace('E = "X"', f'E = "X"\n"{HOSTILE}" = "M"')
    m = tmp_path / "m.toml"
    m.write_text(mapping)
    header = ['DECL"; DROP TABLE flows; --', "PARTNER", "FLOW", "CN8", "MONTH", "VALUE_EUR", "NET_MASS_KG",
              "SUPP_QTY", "SUPP_UNIT"]
    f = tmp_path / "extract.csv"
    with open(f, "w", newline="") as fh:
        csv.writer(fh, delimiter=";").writerows([header, ["BE", "CN", HOSTILE, "81101000", "2024-03", "10", "1", "", ""],
                                                 ["BE", HOSTILE, "I", "81101000", "2024-03", "10", "1", "", ""]])
    (s,) = load_mapped(wh, [f], m)
    assert (s.rows_loaded, s.rows_rejected) == (1, 1)
    assert flow_count(wh) == 2
    assert wh.con.execute("SELECT reason FROM rejects").fetchall() == [
        (f"partner is an aggregate ({HOSTILE}), not a country",)]


# ---------------------------------------------------------------- settings and mapping files

@pytest.mark.parametrize("text, key", [
    ("[detectors.third_country_surge]\nmin_zz = 4.0\n", "min_zz"),
    ("[detectors.third_country_surge]\nmin_z = \"4\"\n", "detectors.third_country_surge.min_z"),
    ("[detectors.third_country_surge]\nmin_history = 6.5\n", "detectors.third_country_surge.min_history"),
    ("[detectors.code_shift]\nextra_pairs = \"811292:811299\"\n", "detectors.code_shift.extra_pairs"),
    # the scope (watchlist or every code) is the run's, never a detector's setting
    ("[detectors.third_country_surge]\nall_codes = true\n", "all_codes"),
    ("[detectors.no_such_detector]\nmin_z = 4.0\n", "no_such_detector"),
    ("[detector]\nmin_z = 4.0\n", "detector"),
])
def test_settings_unknown_key_or_wrong_type_names_the_key(tmp_path, text, key):
    p = tmp_path / "settings.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=f"'{key}'") as err:
        load_settings(p, registry.all_detectors())
    assert "\n" not in str(err.value)


def test_settings_error_is_one_line_from_the_cli(tmp_path):
    p = tmp_path / "settings.toml"
    p.write_text("[detectors.transshipment]\nmax_lagg = 2\n")
    result = CliRunner().invoke(main, ["--db", str(tmp_path / "w.duckdb"), "--config", str(p), "detectors"])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "unknown key 'max_lagg' in [detectors.transshipment]" in result.output


@pytest.mark.parametrize("change, key", [
    (('source = "customs_monthly"', 'source = "customs_monthly"\nsql = "DROP TABLE flows"'), "'sql'"),
    (('[units]', '[units]\nmultiplier = 2'), "'units.multiplier'"),
    (('freq = "M"', 'freq = 12'), "'freq'"),
    (('system = "iso2"', 'system = ["iso2"]'), "'codes.system'"),
])
def test_flow_mapping_unknown_key_or_wrong_type_names_the_key(tmp_path, change, key):
    p = tmp_path / "m.toml"
    p.write_text((MAPPINGS / "customs_monthly_iso2_eur.toml").read_text().replace(*change))
    with pytest.raises(ConfigError, match=key):
        read_mapping(p)


@pytest.mark.parametrize("change, key", [
    (('currency = "KRW"', 'currency = "KRW"\ncolumns_extra = 1'), "'columns_extra'"),
    (('usd_per_unit = 0.000847', 'usd_per_unit = "0.000847"'), "'usd_per_unit'"),
    (('hs_code = "HS6 Code"', 'hs_code = "HS6 Code"\nhs = "HS6 Code"'), "'hs'"),
    (('weight_unit = "kg"', 'weight_unit = "stone"'), "'weight_unit'"),
])
def test_declaration_mapping_unknown_key_or_wrong_type_names_the_key(tmp_path, change, key):
    p = tmp_path / "m.toml"
    p.write_text(declarations.default_mapping_path().read_text().replace(*change))
    with pytest.raises(ConfigError, match=key):
        declarations.read_mapping(p)


# ---------------------------------------------------------------- export output folder

def test_export_refuses_root_home_and_a_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    for out, message in [("/", "filesystem root"), (str(tmp_path / "home"), "home directory"),
                         ("~", "home directory"), (str(a_file), "is a file"), ("", "give an output folder")]:
        with pytest.raises(DetectorError, match=message):
            safe_out_dir(out)
    assert a_file.read_text() == "keep me"


def test_export_touches_nothing_outside_its_folder(wh, tmp_path):
    parent = tmp_path / "exports"
    sibling = parent / "other"
    sibling.mkdir(parents=True)
    (sibling / "period=2025-03-01").mkdir()
    (sibling / "period=2025-03-01" / "data.parquet").write_text("not ours")
    (parent / ".tmp-1-stale").mkdir()  # looks like a work folder, but beside OUT, not in it
    out = parent / "mine"
    for _ in range(2):
        export_parquet(wh, out)
    assert (sibling / "period=2025-03-01" / "data.parquet").read_text() == "not ours"
    assert (parent / ".tmp-1-stale").is_dir()
    assert sorted(p.name for p in out.iterdir()) == ["alerts", "declaration_scores", "flows", "series", "verdicts"]
