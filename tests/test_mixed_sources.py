"""The detectors on a warehouse that mixes sources: the same flow from two sources is never added
up, national HS10 lines roll up to HS6, annual BACI rows stay out of monthly baselines."""

import json
from datetime import date

import numpy as np
import polars as pl

from detector.detectors import registry
from detector.detectors.base import DETECTOR_OUTPUT_SCHEMA
from detector.ingest.baci import load_baci
from detector.ingest.census import load_census
from detector.ingest.comext import load_comext
from detector.months import Window
from detector.runner import detect_one, open_baselines
from tests.handmade_world import MONTHS, background, load_world, month_index, month_label, thai_triangle

CENSUS_HEADER = ["CTY_CODE", "CTY_NAME", "I_COMMODITY", "GEN_VAL_MO", "GEN_CIF_MO", "GEN_QY1_MO", "UNIT_QY1",
                 "SUMMARY_LVL", "COMM_LVL", "time"]


def test_detectors_on_comtrade_census_comext_and_baci(tmp_path):
    triangle = thai_triangle()
    hub = triangle[1].usd
    wh = load_world(tmp_path, [*triangle, *background("282580")])
    # The US's own statistics for its imports from Thailand, in two HS10 lines, every month.
    census_rows = [CENSUS_HEADER]
    for t in range(MONTHS):
        cif = hub[t] * 1.05
        label = month_label(t)
        period = f"{label[:4]}-{label[4:]}"
        census_rows += [["5490", "THAILAND", "2825800010", str(round(cif * 0.7)), str(round(cif * 0.7)),
                         str(round(hub[t] / 10 * 0.7)), "KG", "DET", "HS10", period],
                        ["5490", "THAILAND", "2825800090", str(round(cif * 0.3)), str(round(cif * 0.3)),
                         str(round(hub[t] / 10 * 0.3)), "KG", "DET", "HS10", period]]
    census = tmp_path / "census.json"
    census.write_text(json.dumps(census_rows))
    assert load_census(wh, [census])[0].rows_loaded == 2 * MONTHS
    comext = tmp_path / "comext.csv"
    comext.write_text(
        "REPORTER,PARTNER,TRADE_TYPE,PRODUCT_NC,FLOW,STAT_PROCEDURE,PERIOD,VALUE_EUR,QUANTITY_KG\n"
        "BE,CN,E,28258000,1,1,202501,500000,12000\n")
    assert load_comext(wh, [comext])[0].rows_loaded == 1
    baci = tmp_path / "BACI_HS22_Y2024_V202501.csv"
    baci.write_text("t,i,j,k,v,q\n2024,764,842,282580,99999,999\n")
    assert load_baci(wh, [baci])[0].rows_loaded == 1
    assert wh.con.execute("SELECT count(DISTINCT source) FROM flows").fetchone()[0] == 4

    window = Window(date(2024, 1, 1), date(2025, 6, 1))
    alerts = detect_one(wh, "transshipment", window)
    assert ("THA", "USA") in {(r["via"], r["destination"]) for r in alerts.iter_rows(named=True)}
    # The US side of THA -> USA is Census alone (HS10 summed to HS6), not Census plus Comtrade.
    t = month_index("2025-03")
    with open_baselines(wh, window) as values:
        usa = values.sql(
            "SELECT m_usd FROM corridor_months WHERE hs_code = '282580' AND exporter = 'THA' AND importer = 'USA' "
            "AND period = DATE '2025-03-01'")["m_usd"][0]
    assert np.isclose(usa, hub[t] * 1.05, rtol=1e-3)
    # Every detector runs on the mix and keeps the contract; none sees the annual BACI row (USD 100M
    # for THA -> USA in 2024) as a month of its own or as part of a monthly baseline.
    baci_usd = 99_999 * 1000
    for name in registry.all_detectors():
        found = detect_one(wh, name, window)
        assert found.schema == pl.Schema(DETECTOR_OUTPUT_SCHEMA), name
        assert found["score"].is_between(0, 1).all(), name
        assert found["period"].is_between(window.start, window.end).all(), name
        near_baci = found.filter(((pl.col("observed") - baci_usd).abs() < 0.01 * baci_usd)
                                 | ((pl.col("expected") - baci_usd).abs() < 0.01 * baci_usd))
        assert near_baci.height == 0, (name, near_baci.to_dicts())
    wh.close()
