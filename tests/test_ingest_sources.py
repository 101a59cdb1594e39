"""BACI, US Census, Eurostat Comext and mapped tables into `flows`, and the flows_hs6 /
flows_preferred views. Each test writes small files shaped like the real ones."""

import csv
import json
from pathlib import Path

import duckdb
import pytest

from detector.errors import ConfigError, InputError
from detector.ingest import writing
from detector.ingest.baci import hs_revision_from_name, load_baci
from detector.ingest.census import load_census
from detector.ingest.comext import load_comext
from detector.ingest.comtrade import load_comtrade
from detector.ingest.mapped import load_mapped, read_mapping
from detector.ingest.sources import precedence
from detector.reference import reference_path
from detector.warehouse import Warehouse
from tests.comtrade_files import row as comtrade_row
from tests.comtrade_files import write as comtrade_write

MAPPINGS = Path(__file__).resolve().parents[1] / "detector" / "ingest" / "mappings"


@pytest.fixture
def wh(tmp_path):
    with Warehouse.open(tmp_path / "w.duckdb") as w:
        yield w


def flows(wh, where="true"):
    return wh.con.execute(
        "SELECT source, reporter, partner, flow, hs_code, period::VARCHAR, freq, value_usd, net_weight_kg, "
        f"quantity, quantity_unit, hs_revision FROM flows WHERE {where} ORDER BY ALL").fetchall()


def rejects(wh):
    return dict(wh.con.execute("SELECT line, reason FROM rejects").fetchall())


def write_csv(path: Path, header: list[str], rows: list[list], delimiter: str = ",") -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)
    return path


# ---------------------------------------------------------------- BACI

BACI_CODES = [["156", "China", "CN", "CHN"], ["842", "USA", "US", "USA"], ["251", "France", "FR", "FRA"],
              ["764", "Thailand", "TH", "THA"], ["490", "Other Asia, nes", "S19", "S19"]]


def test_baci_units_direction_and_lost_leading_zero(wh, tmp_path):
    write_csv(tmp_path / "country_codes_V202501.csv",
              ["country_code", "country_name", "country_iso2", "country_iso3"], BACI_CODES)
    f = write_csv(tmp_path / "BACI_HS17_Y2021_V202501.csv", ["t", "i", "j", "k", "v", "q"], [
        [2021, 156, 842, 261710, 1234.567, 200.5],   # China -> USA antimony ore
        [2021, 156, 842, 80300, 10, "NA"],            # k lost its leading zero; q unknown
        [2021, 490, 251, 811292, 3.5, ""],            # 490 (S19 in BACI's file) is Taiwan
        [2021, 156, 0, 811292, 1, 1],                 # importer World
        [2021, 156, 9999, 811292, 1, 1],              # unknown importer
        [2021, 156, 764, 2617, 1, 1],                 # not HS6
    ])
    (s,) = load_baci(wh, [f])
    assert (s.rows_read, s.rows_loaded, s.rows_rejected, s.fixed_codes) == (6, 3, 3, 1)
    got = flows(wh)
    assert ("baci", "USA", "CHN", "M", "261710", "2021-01-01", "A", pytest.approx(1234567.0),
            pytest.approx(200500.0), 200.5, "t", "HS2017") in got
    assert ("baci", "USA", "CHN", "M", "080300", "2021-01-01", "A", 10000.0, None, None, None, "HS2017") in got
    assert ("baci", "FRA", "TWN", "M", "811292", "2021-01-01", "A", 3500.0, None, None, None, "HS2017") in got
    assert rejects(wh) == {5: "reporter is an aggregate (World), not a country",
                           6: "unknown importer code '9999'",
                           7: "wrong HS length: '2617' has 4 digits (BACI is HS6)"}
    assert wh.con.execute("SELECT DISTINCT reporter, flow, freq FROM reporting ORDER BY 1").fetchall() == [
        ("FRA", "M", "A"), ("THA", "M", "A"), ("USA", "M", "A")]


def test_baci_without_code_file_uses_comtrade_codes_and_explicit_file_wins(wh, tmp_path):
    f = write_csv(tmp_path / "BACI_HS92_Y1999_V202501.csv", ["t", "i", "j", "k", "v", "q"],
                  [[1999, 699, 842, 811292, 2, 1]])
    (s,) = load_baci(wh, [f])
    assert s.rows_loaded == 1 and flows(wh)[0][1:3] == ("USA", "IND")
    assert flows(wh)[0][-1] == "HS1992"
    codes = write_csv(tmp_path / "elsewhere.csv", ["country_code", "country_name", "country_iso2", "country_iso3"],
                      [["699", "India", "IN", "IND"], ["842", "France (test remap)", "FR", "FRA"]])
    g = write_csv(tmp_path / "BACI_HS92_Y2000_V202501.csv", ["t", "i", "j", "k", "v", "q"],
                  [[2000, 699, 842, 811292, 2, 1]])
    load_baci(wh, [g], country_codes=codes)
    assert flows(wh, "period = DATE '2000-01-01'")[0][1:3] == ("FRA", "IND")


def test_baci_revision_from_name():
    assert [hs_revision_from_name(Path(n)) for n in (
        "BACI_HS22_Y2023_V202501.csv", "BACI_HS12_Y2015_V202401b.csv", "BACI_HS07_Y2010_V202501.csv",
        "BACI_HS02_Y2005_V202501.csv", "BACI_HS92_Y1995_V202501.csv", "baci.csv")] == [
        "HS2022", "HS2012", "HS2007", "HS2002", "HS1992", None]


def test_baci_wrong_header_is_one_clear_error(wh, tmp_path):
    f = write_csv(tmp_path / "BACI_HS22_Y2023_V202501.csv", ["year", "exp", "imp"], [[2023, 156, 842]])
    with pytest.raises(InputError, match=r":1: not a BACI file \(t,i,j,k,v,q\): no column for year \(t\)"):
        load_baci(wh, [f])


# ---------------------------------------------------------------- US Census

IMPORT_HEADER = ["CTY_CODE", "CTY_NAME", "I_COMMODITY", "GEN_VAL_MO", "CON_VAL_MO", "GEN_CIF_MO", "GEN_QY1_MO",
                 "UNIT_QY1", "SUMMARY_LVL", "COMM_LVL", "time", "I_COMMODITY"]


def census_imports():
    r = [
        ["5700", "CHINA", "8110200000", "1000", "990", "1100", "50", "KG", "DET", "HS10", "2024-03", "8110*"],
        ["5490", "THAILAND", "8110200000", "900", "900", None, "40", "KG", "DET", "HS10", "2024-03", "8110*"],
        ["-", "TOTAL FOR ALL COUNTRIES", "8110200000", "1907", "1897", "2008", "91", "KG", "DET", "HS10",
         "2024-03", "8110*"],
        ["0003", "EUROPEAN UNION", "8110200000", "7", "7", "8", "1", "KG", "CGP", "HS10", "2024-03", "8110*"],
        ["0014", "PACIFIC RIM COUNTRIES", "8110200000", "1900", "1890", "2000", "90", "KG", "CGP", "HS10",
         "2024-03", "8110*"],
        ["5XXX", "ASIA", "8110200000", "1900", "1890", "2000", "90", "KG", "CGP", "HS10", "2024-03", "8110*"],
        ["1XXX", "NORTH AMERICA", "8110200000", "0", "0", "0", "0", "KG", "CGP", "HS10", "2024-03", "8110*"],
        ["1220", "CANADA", "8110900000", "7", "7", "8", "0", "-", "DET", "HS10", "2024-03", "8110*"],
        ["5700", "CHINA", "8110", "1000", "990", "1100", "50", "KG", "DET", "HS4", "2024-03", "8110*"],
        ["5700", "CHINA", "8110100000", "500", "500", "520", "2", "T", "DET", "HS10", "2024-03", "8110*"],
    ]
    return r


def test_census_json_excludes_totals_and_regions_and_prefers_cif(wh, tmp_path):
    f = tmp_path / "imports_8110_2024-03.json"
    f.write_text("[" + ",\n".join(json.dumps(x) for x in [IMPORT_HEADER, *census_imports()]) + "]")
    (s,) = load_census(wh, [f])
    assert (s.rows_read, s.rows_loaded, s.rows_rejected, s.aggregates) == (10, 4, 6, 5)
    assert flows(wh) == [
        ("census", "USA", "CAN", "M", "8110900000", "2024-03-01", "M", 8.0, None, None, None, "HS2022"),
        ("census", "USA", "CHN", "M", "8110100000", "2024-03-01", "M", 520.0, 2000.0, 2.0, "T", "HS2022"),
        ("census", "USA", "CHN", "M", "8110200000", "2024-03-01", "M", 1100.0, 50.0, 50.0, "KG", "HS2022"),
        ("census", "USA", "THA", "M", "8110200000", "2024-03-01", "M", 900.0, 40.0, 40.0, "KG", "HS2022"),
    ]
    got = rejects(wh)
    assert got[4] == "partner is an aggregate (TOTAL FOR ALL COUNTRIES), not a country"
    assert got[5] == "partner is an aggregate (EUROPEAN UNION), not a country"
    assert got[6] == "partner is an aggregate (PACIFIC RIM COUNTRIES), not a country"
    assert got[7] == "partner is an aggregate (ASIA), not a country"
    assert got[10] == "HS level HS4 is an aggregate; need 6 to 10 digits"
    assert wh.con.execute("SELECT reporter, flow, period::VARCHAR FROM reporting").fetchall() == [
        ("USA", "M", "2024-03-01")]


def test_census_csv_gives_the_same_as_json(wh, tmp_path):
    j = tmp_path / "i.json"
    j.write_text(json.dumps([IMPORT_HEADER[:-1], *[r[:-1] for r in census_imports()]]))
    c = write_csv(tmp_path / "i.csv", IMPORT_HEADER[:-1], [[v or "" for v in r[:-1]] for r in census_imports()])
    load_census(wh, [j])
    from_json = flows(wh)
    wh.con.execute("DELETE FROM flows")
    load_census(wh, [c])
    assert flows(wh) == from_json and len(from_json) == 4


def test_census_exports_with_year_and_month_and_unknown_country(wh, tmp_path):
    f = write_csv(tmp_path / "exports.csv",
                  ["CTY_CODE", "CTY_NAME", "E_COMMODITY", "ALL_VAL_MO", "QTY_1_MO", "UNIT_QY1", "YEAR", "MONTH",
                   "COMM_LVL"], [
        ["5490", "THAILAND", "261710", "300", "12", "KG", "2023", "11", "HS6"],
        ["2010", "MEXICO", "2617100000", "200", "", "-", "2023", "11", "HS10"],
        ["9999", "NOWHERE", "261710", "1", "1", "KG", "2023", "11", "HS6"],
        ["5700", "CHINA", "26", "1", "1", "KG", "2023", "11", "HS2"],
    ])
    (s,) = load_census(wh, [f])
    assert (s.rows_loaded, s.rows_rejected) == (2, 2)
    assert flows(wh) == [
        ("census", "USA", "MEX", "X", "2617100000", "2023-11-01", "M", 200.0, None, None, None, "HS2022"),
        ("census", "USA", "THA", "X", "261710", "2023-11-01", "M", 300.0, 12.0, 12.0, "KG", "HS2022"),
    ]
    assert rejects(wh) == {4: "unknown partner code '9999' (Schedule C)",
                           5: "HS level HS2 is an aggregate; need 6 to 10 digits"}


def test_census_failure_mid_load_leaves_nothing(wh, tmp_path, monkeypatch):
    f = tmp_path / "i.json"
    f.write_text(json.dumps([IMPORT_HEADER, *census_imports()]))

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(writing, "record_rejects", boom)  # after flows and reporting were written
    with pytest.raises(RuntimeError):
        load_census(wh, [f])
    for table in ("flows", "reporting", "rejects", "loads"):
        assert wh.con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0
    monkeypatch.undo()
    (s,) = load_census(wh, [f])
    assert s.rows_loaded == 4
    (again,) = load_census(wh, [f])
    assert again.status == "skipped" and wh.con.execute("SELECT count(*) FROM flows").fetchone()[0] == 4


def test_census_bad_json_is_one_clear_error(wh, tmp_path):
    f = tmp_path / "bad.json"
    f.write_text('[["CTY_CODE", "I_COMMODITY"], ["5700", ')
    with pytest.raises(InputError, match="bad.json: not a Census API JSON response"):
        load_census(wh, [f])


# ---------------------------------------------------------------- Eurostat Comext

CURRENT = ["REPORTER", "PARTNER", "TRADE_TYPE", "PRODUCT_NC", "PRODUCT_SITC", "PRODUCT_CPA21", "PRODUCT_CPA22",
           "PRODUCT_BEC", "PRODUCT_BEC5", "PRODUCT_SECTION", "FLOW", "STAT_PROCEDURE", "SUPPL_UNIT", "PERIOD",
           "VALUE_EUR", "VALUE_NAC", "QUANTITY_KG", "QUANTITY_SUPPL_UNIT"]
HISTORICAL = ["DECLARANT", "DECLARANT_ISO", "PARTNER", "PARTNER_ISO", "TRADE_TYPE", "PRODUCT_NC", "PRODUCT_SITC",
              "PRODUCT_CPA2002", "PRODUCT_CPA2008", "PRODUCT_CPA2_1", "PRODUCT_BEC", "PRODUCT_SECTION", "FLOW",
              "STAT_REGIME", "SUPP_UNIT", "PERIOD", "VALUE_IN_EUROS", "QUANTITY_IN_KG", "SUP_QUANTITY"]


def current(reporter, partner, product, flow, period, eur, kg, procedure="1", trade_type="E"):
    return [reporter, partner, trade_type, product, "689", "24", "24", "2", "21", "XV", flow, procedure, "NO_SU",
            period, eur, eur, kg, "0"]


@pytest.fixture
def rates(tmp_path):
    return write_csv(tmp_path / "rates.csv", ["month", "usd_per_eur"], [["2024-03", "1.10"], ["2024-04", "1.05"]])


def test_comext_current_file_traps(wh, tmp_path, rates):
    f = write_csv(tmp_path / "full_v2_202403.dat", CURRENT, [
        current("NL", "CN", "81101000", "1", "202403", "1000", "50"),
        current("NL", "CN", "81101000", "1", "202403", "500", "25", procedure="2"),  # same flow, other procedure
        current("EL", "CN", "28256000", "1", "202403", "200", "10"),                 # Greece as EL
        current("NL", "CN", "81101000", "1", "202352", "9000", "450"),               # annual total
        current("NL", "CN", "99RRR100", "1", "202403", "5", "1"),                    # confidential
        current("NL", "CN", "TOTAL", "1", "202403", "5", "1"),
        current("NL", "XI", "8110100", "2", "202403", "5", "1", trade_type="I"),     # lost zero, N. Ireland
        current("NL", "XU", "8110100", "2", "202403", "7", "1"),                     # Great Britain
        current("NL", "EU27_2020", "81101000", "2", "202403", "7", "1"),
        current("NL", "QU", "81101000", "2", "202403", "7", "1"),
        current("NL", "CN", "81101000", "1", "202405", "1", "1"),                    # no rate for May
    ], delimiter=";")
    (s,) = load_comext(wh, [f], rates=rates)
    assert (s.rows_read, s.rows_loaded, s.rows_rejected, s.aggregates) == (11, 3, 6, 1)
    assert flows(wh) == [
        ("comext", "GRC", "CHN", "M", "28256000", "2024-03-01", "M", pytest.approx(220.0), 10.0, None, None, "HS2022"),
        ("comext", "NLD", "CHN", "M", "81101000", "2024-03-01", "M", pytest.approx(1650.0), 75.0, None, None, "HS2022"),
        ("comext", "NLD", "GBR", "X", "08110100", "2024-03-01", "M", pytest.approx(13.2), 2.0, None, None, "HS2022"),
    ]
    got = rejects(wh)
    assert got[5].startswith("annual total (PERIOD 202352)")
    assert got[6] == "confidential product code '99RRR100' (letters mark a suppressed line)"
    assert got[7] == "product TOTAL is an aggregate, not a product"
    assert got[10] == "partner is an aggregate (EU27_2020), not a country"
    assert got[11].startswith("partner 'QU' is a Eurostat code for no country")
    assert got[12] == "no EUR/USD rate for 2024-05"


def test_comext_historical_header_and_shipped_rates(wh, tmp_path):
    f = write_csv(tmp_path / "nc201901.dat", HISTORICAL, [
        ["009", "GR", "720", "CN", "2", "81101000", "689", "", "", "", "", "", "1", "1", "NO_SU", "201901",
         "1000", "40", "0"],
    ])
    (s,) = load_comext(wh, [f])
    assert s.rows_loaded == 1
    rate = wh.con.execute("SELECT usd_per_eur FROM read_csv(?, comment='#') WHERE month = '2019-01'",
                          [str(reference_path("eur_usd_monthly.csv"))]).fetchone()[0]
    assert 1.0 < rate < 1.3
    assert flows(wh)[0][1:9] == ("GRC", "CHN", "M", "81101000", "2019-01-01", "M", pytest.approx(1000 * rate), 40.0)
    assert flows(wh)[0][-1] == "HS2017"


def test_comext_revision_replaces_and_same_file_is_skipped(wh, tmp_path, rates):
    v1 = write_csv(tmp_path / "v1.dat", CURRENT, [current("NL", "CN", "81101000", "1", "202403", "1000", "50"),
                                                  current("NL", "TH", "81101000", "1", "202403", "10", "1")])
    v2 = write_csv(tmp_path / "v2.dat", CURRENT, [current("NL", "CN", "81101000", "1", "202403", "2000", "50")])
    load_comext(wh, [v1], rates=rates)
    (s,) = load_comext(wh, [v2, v2], rates=rates)[:1]
    assert (s.rows_loaded, s.rows_replaced) == (0, 1)
    assert wh.con.execute("SELECT partner, value_usd FROM flows ORDER BY 1").fetchall() == [
        ("CHN", pytest.approx(2200.0)), ("THA", pytest.approx(11.0))]
    assert load_comext(wh, [v2], rates=rates)[0].status == "skipped"


def test_comext_bad_rate_file_is_an_error(wh, tmp_path):
    bad = write_csv(tmp_path / "r.csv", ["month", "usd_per_eur"], [["2024-03", "1.1"], ["2024-03", "1.2"]])
    with pytest.raises(InputError, match="repeated month"):
        load_comext(wh, [bad], rates=bad)


# ---------------------------------------------------------------- mapped tables

def test_mapping_unknown_key_and_wrong_type_are_config_errors(tmp_path):
    base = (MAPPINGS / "customs_monthly_iso2_eur.toml").read_text()
    for text, match in [
        (base.replace('format = "csv"', 'format = "csv"\ndelimiter = ";"'), r"unknown key 'delimiter'"),
        (base.replace('net_weight = "NET_MASS_KG"', 'weight = "NET_MASS_KG"'), r"unknown key 'columns.weight'"),
        (base.replace('weight_unit = "kg"', 'weight_unit = "kg"\nscale = 2'), r"unknown key 'units.scale'"),
        (base.replace("value_multiplier = 1.0", 'value_multiplier = "1000"'), r"'units.value_multiplier' must be a number"),
        (base.replace('currency = "EUR"', 'currency = "GBP"'), r"'units.currency' must be one of USD, EUR"),
        (base.replace('system = "iso2"', 'system = "fips"'), r"'codes.system' must be one of"),
        (base.replace('reporter = "DECLARANT"', 'reporter = "DECLARANT; DROP TABLE flows"\nvalue2 = 1'),
         r"unknown key 'columns.value2'"),
        (base.replace('hs_code = "CN8"', 'hs_code = { sql = "substr(CN8, 1, 6)" }'),
         r"'columns.hs_code' must be a column name or"),
        (base.replace('I = "M"', 'I = "IMPORT"'), r"'flow_codes.I' must be one of M, X, RM, RX"),
    ]:
        p = tmp_path / "m.toml"
        p.write_text(text)
        with pytest.raises(ConfigError, match=match):
            read_mapping(p)


def test_mapping_csv_iso2_eur_example(wh, tmp_path, rates):
    mapping = (MAPPINGS / "customs_monthly_iso2_eur.toml").read_text().replace(
        'weight_unit = "kg"', f'weight_unit = "kg"\nrates = "{rates}"')
    m = tmp_path / "m.toml"
    m.write_text(mapping)
    f = write_csv(tmp_path / "extract.csv",
                  ["DECLARANT", "PARTNER", "FLOW", "CN8", "MONTH", "VALUE_EUR", "NET_MASS_KG", "SUPP_QTY", "SUPP_UNIT"], [
        ["BE", "CN", "I", "81101000", "2024-03", "1000", "40", "", ""],
        ["BE", "EL", "E", "81101000", "2024-04", "100", "4", "", ""],
        ["BE", "WORLD", "I", "81101000", "2024-03", "1100", "44", "", ""],
        ["BE", "ZZ", "I", "81101000", "2024-03", "1", "1", "", ""],
        ["BE", "CN", "T", "81101000", "2024-03", "1", "1", "", ""],
    ], delimiter=";")
    (s,) = load_mapped(wh, [f], m)
    assert (s.source, s.rows_loaded, s.rows_rejected, s.aggregates) == ("customs_monthly", 2, 3, 1)
    assert flows(wh) == [
        ("customs_monthly", "BEL", "CHN", "M", "81101000", "2024-03-01", "M", pytest.approx(1100.0), 40.0, None, None, "HS2022"),
        ("customs_monthly", "BEL", "GRC", "X", "81101000", "2024-04-01", "M", pytest.approx(105.0), 4.0, None, None, "HS2022"),
    ]
    assert rejects(wh) == {4: "partner is an aggregate (WORLD), not a country",
                           5: "unknown partner code 'ZZ' (iso2)",
                           6: "unsupported flow code 'T' (map it in [flow_codes])"}


def test_mapping_parquet_iso3_tonnes_example(wh, tmp_path):
    f = tmp_path / "export.parquet"
    duckdb.connect().execute(f"""
        COPY (SELECT * FROM (VALUES ('CHN', 'IMP', '81101000', 2025, 3, 12.5, 0.4),
                                    ('WLD', 'IMP', '81101000', 2025, 3, 12.5, 0.4),
                                    ('MEX', 'EXP', '2617100', 2025, 2, 1.0, 2.0))
              t(partner_iso3, direction, hs8, yr, mo, value_kusd, weight_t)) TO '{f}' (FORMAT parquet)""")
    (s,) = load_mapped(wh, [f], MAPPINGS / "parquet_iso3_tonnes.toml")
    assert (s.rows_loaded, s.rows_rejected, s.fixed_codes) == (2, 1, 1)
    assert flows(wh) == [
        ("partner_system", "THA", "CHN", "M", "81101000", "2025-03-01", "M", 12500.0, 400.0, None, None, "HS2022"),
        ("partner_system", "THA", "MEX", "X", "02617100", "2025-02-01", "M", 1000.0, 2000.0, None, None, "HS2022"),
    ]


def test_mapping_names_a_missing_column(wh, tmp_path):
    f = write_csv(tmp_path / "x.csv", ["a", "b"], [["1", "2"]])
    with pytest.raises(InputError, match=r"x.csv:1: no column 'DECLARANT' \(mapped to reporter\)"):
        load_mapped(wh, [f], MAPPINGS / "customs_monthly_iso2_eur.toml")


# ---------------------------------------------------------------- views and reference data

def test_flows_preferred_takes_census_over_comtrade_for_usa(wh, tmp_path):
    comtrade_file = comtrade_write(tmp_path / "ct.csv", [
        comtrade_row("USA", "CHN", "M", cmd="811020", period="202403", value=5000.0),   # USA: census wins
        comtrade_row("USA", "THA", "M", cmd="811020", period="202402", value=70.0),     # Feb: only comtrade
        comtrade_row("CHN", "USA", "X", cmd="811020", period="202403", value=4000.0),   # China: comtrade
    ])
    load_comtrade(wh, [comtrade_file])
    census = tmp_path / "i.json"
    census.write_text(json.dumps([IMPORT_HEADER, *census_imports()]))
    load_census(wh, [census])
    got = wh.con.execute(
        "SELECT source, reporter, partner, flow, hs_code, period::VARCHAR, value_usd FROM flows_preferred ORDER BY ALL"
    ).fetchall()
    assert got == [
        ("census", "USA", "CAN", "M", "811090", "2024-03-01", 8.0),
        ("census", "USA", "CHN", "M", "811010", "2024-03-01", 520.0),
        ("census", "USA", "CHN", "M", "811020", "2024-03-01", 1100.0),
        ("census", "USA", "THA", "M", "811020", "2024-03-01", 900.0),
        ("comtrade", "CHN", "USA", "X", "811020", "2024-03-01", 4000.0),
        ("comtrade", "USA", "THA", "M", "811020", "2024-02-01", 70.0),
    ]


def test_flows_hs6_rolls_national_lines_up_without_double_counting(wh, tmp_path):
    f = write_csv(tmp_path / "i.csv", ["CTY_CODE", "CTY_NAME", "I_COMMODITY", "GEN_VAL_MO", "GEN_QY1_MO",
                                       "UNIT_QY1", "COMM_LVL", "time"], [
        ["5700", "CHINA", "8112921000", "100", "10", "KG", "HS10", "2024-03"],
        ["5700", "CHINA", "8112926000", "30", "3", "KG", "HS10", "2024-03"],
        ["5700", "CHINA", "8112929000", "5", "", "NO", "HS10", "2024-03"],   # counted, no weight
        ["5490", "THAILAND", "811292", "50", "5", "KG", "HS6", "2024-03"],     # HS6 total ...
        ["5490", "THAILAND", "8112921000", "20", "2", "KG", "HS10", "2024-03"],  # ... and part of it
    ])
    load_census(wh, [f])
    got = wh.con.execute(
        "SELECT partner, hs_code, value_usd, net_weight_kg, lines FROM flows_hs6 ORDER BY 1").fetchall()
    assert got == [("CHN", "811292", 135.0, None, 3), ("THA", "811292", 50.0, 5.0, 1)]


def test_reference_concordance_and_source_precedence():
    con = duckdb.connect()
    conc = con.execute("SELECT * FROM read_csv(?, all_varchar = true)",
                       [str(reference_path("hs_concordance.csv"))]).fetchall()
    assert all(len(r[1]) == 6 and len(r[3]) == 6 and r[0] == "HS2017" and r[2] == "HS2022" for r in conc)
    pairs = {(r[1], r[3]) for r in conc}
    assert {("810600", "810610"), ("810600", "810690"), ("710420", "710421"), ("710490", "710499"),
            ("681510", "681519"), ("811292", "811292")} <= pairs
    assert "basket changed" in next(r[4] for r in conc if r[1] == r[3] == "811292")
    ranks = dict(precedence())
    assert ranks["census"] < ranks["comtrade"] < ranks["baci"] and ranks["comext"] < ranks["comtrade"]
    months = con.execute("SELECT count(*), min(month), max(month) FROM read_csv(?, comment = '#', all_varchar = true)",
                         [str(reference_path("eur_usd_monthly.csv"))]).fetchone()
    assert months[1] == "2017-01" and months[0] >= 100
