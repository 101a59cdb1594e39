"""The shipped reference data parse, agree with each other and load into the warehouse."""

from __future__ import annotations

import csv
import re
from importlib import resources

import duckdb
import pytest

from detector.errors import DetectorError
from detector.reference import COLUMNS, load_reference, reference_path

KINDS = {"licence", "ban", "suspension", "campaign", "tariff", "ad_cvd"}
AREA_KINDS = {"world", "area", "nes", "special"}


def rows(table: str) -> list[dict[str, str]]:
    with reference_path(f"{table}.csv").open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == list(COLUMNS[table])
        data = list(reader)
    assert all(None not in r and None not in r.values() for r in data), f"{table}: ragged row"
    return data


@pytest.fixture(scope="module")
def con():
    con = duckdb.connect()
    con.execute(resources.files("detector").joinpath("schema.sql").read_text())
    yield con
    con.close()


def test_reference_path_finds_files_and_rejects_unknown():
    assert reference_path("countries.csv").is_file()
    with pytest.raises(DetectorError):
        reference_path("no_such_file.csv")


def test_countries_iso3_unique_uppercase_and_complete():
    countries = rows("countries")
    iso3 = [r["iso3"] for r in countries]
    assert len(iso3) == len(set(iso3))
    assert all(re.fullmatch(r"[A-Z]{3}", c) for c in iso3)
    assert all(re.fullmatch(r"[A-Z]{2}", r["iso2"]) for r in countries)
    assert len(countries) >= 245


@pytest.mark.parametrize("code,iso3", [
    (842, "USA"), (251, "FRA"), (699, "IND"), (757, "CHE"), (579, "NOR"), (490, "TWN"),
    (156, "CHN"), (764, "THA"), (484, "MEX"),
])
def test_comtrade_code_quirks(code, iso3):
    matches = [r["iso3"] for r in rows("countries") if r["comtrade_code"] == str(code)]
    assert matches == [iso3]


def test_comtrade_codes_unique_and_disjoint_from_areas():
    codes = [int(r["comtrade_code"]) for r in rows("countries") if r["comtrade_code"]]
    assert len(codes) == len(set(codes))
    areas = {int(r["comtrade_code"]) for r in rows("comtrade_areas")}
    assert 0 in areas and 490 not in areas
    assert not areas & set(codes), "a Comtrade area code is also a country code"
    assert {r["kind"] for r in rows("comtrade_areas")} <= AREA_KINDS


def test_census_codes_of_the_transshipment_corridors():
    census = {r["iso3"]: r["census_code"] for r in rows("countries")}
    expected = {"CHN": "5700", "THA": "5490", "VNM": "5520", "MEX": "2010", "HKG": "5820",
                "TWN": "5830", "JPN": "5880", "KOR": "5800", "BEL": "4231", "DEU": "4280"}
    assert {k: census[k] for k in expected} == expected
    filled = [c for c in census.values() if c]
    assert len(filled) == len(set(filled))
    assert all(re.fullmatch(r"\d{4}", c) for c in filled)


def test_watchlist_prefixes_are_text_with_leading_digits_kept():
    watch = rows("watchlist")
    prefixes = [r["hs_prefix"] for r in watch]
    assert len(prefixes) == len(set(prefixes))
    assert all(re.fullmatch(r"\d{4}(\d{2})*", p) for p in prefixes)
    assert "261710" in prefixes and "811292" in prefixes and "280450" in prefixes
    assert {r["controlling_country"] for r in watch} == {"CHN"}
    # A prefix nested in another is only a national line under a documented HS6 basket.
    for short in prefixes:
        for long in prefixes:
            if long != short and long.startswith(short):
                assert len(short) == 6 and len(long) > 6, (short, long)
    basket = next(r for r in watch if r["hs_prefix"] == "811292")
    assert "basket" in basket["note"].lower()


def test_watchlist_and_controls_agree_on_commodities():
    watch = {r["commodity"] for r in rows("watchlist")}
    controls = rows("controls")
    used = {c for r in controls for c in r["commodities"].split(";")}
    assert used - watch <= {"all"}, f"controls name unknown commodities: {used - watch - {'all'}}"
    assert watch <= used, f"watchlist commodities without a control: {watch - used}"
    assert all(re.fullmatch(r"[a-z_]+", c) for c in watch)


def test_controls_fields_are_well_formed():
    iso3 = {r["iso3"] for r in rows("countries")}
    for r in rows("controls"):
        assert r["kind"] in KINDS, r
        assert r["country"] in iso3, r
        assert r["targets"] == "ALL" or set(r["targets"].split(";")) <= iso3, r
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", r["date"]), r
        if r["until"]:
            assert r["until"] > r["date"], r


def test_key_control_dates_are_present():
    events = {(r["date"], r["kind"], r["targets"]) for r in rows("controls")}
    for event in [("2023-08-01", "licence", "ALL"), ("2023-12-01", "licence", "ALL"),
                  ("2024-09-15", "licence", "ALL"), ("2024-12-03", "ban", "USA"),
                  ("2025-02-04", "licence", "ALL"), ("2025-04-04", "licence", "ALL"),
                  ("2025-05-09", "campaign", "ALL"), ("2025-11-09", "suspension", "USA")]:
        assert event in events


def test_load_reference_fills_the_warehouse_with_typed_rows(con):
    counts = load_reference(con)
    expected = {table: len(rows(table)) for table in COLUMNS}
    assert counts == expected
    # Loading twice replaces, not appends.
    assert load_reference(con) == expected
    for table, n in expected.items():
        assert con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == n
    nam = con.execute("SELECT iso2, m49, comtrade_code, census_code FROM countries WHERE iso3 = 'NAM'")
    assert nam.fetchone() == ("NA", 516, 516, 7920)
    assert con.execute(
        "SELECT iso3 FROM countries WHERE comtrade_code = 842").fetchone() == ("USA",)
    assert con.execute(
        "SELECT commodity FROM watchlist WHERE hs_prefix = '261710'").fetchone() == ("antimony",)
    first = con.execute("SELECT min(date), typeof(min(date)) FROM controls").fetchone()
    assert str(first[0]) == "2023-08-01" and first[1] == "DATE"
    # The join the detectors rely on: a flow's HS code to its commodity by prefix.
    hit = con.execute("""
        SELECT w.commodity FROM (VALUES ('2825800010')) AS f(hs_code)
        JOIN watchlist w ON starts_with(f.hs_code, w.hs_prefix)
    """).fetchall()
    assert hit == [("antimony",)]
