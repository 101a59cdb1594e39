"""Detection on real, rougher statistics (worlds in tests/real_worlds.py): a market-wide price jump,
one-sided data, basket codes whose mix shifts, and a large noisy world with a few planted cases."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from detector.months import Window
from detector.runner import run_detectors
from tests.handmade_world import load_world
from tests.real_worlds import ANTIMONY_OXIDE, OTHER_OXIDES, basket_world, market_jump, one_sided

WINDOW = Window(date(2023, 1, 1), date(2025, 6, 1))


def run_all(wh) -> pl.DataFrame:
    return run_detectors(wh, WINDOW).alerts


@pytest.mark.parametrize("weights", [True, False], ids=["with-weights", "value-only"])
@pytest.mark.parametrize("jumped", [ANTIMONY_OXIDE, OTHER_OXIDES], ids=["code", "code-shift-partner"])
def test_a_market_wide_price_jump_fires_no_detector(tmp_path, jumped, weights):
    """Every route of a code (or of its code_shift partner) gets 2.5x dearer at once: no surge, no
    triangle, no shift, no price outlier. The multivariate model always reports its rarest rows;
    here they stay at background strength."""
    with load_world(tmp_path, market_jump(jumped, weights)) as wh:
        alerts = run_all(wh)
    rules = alerts.filter(pl.col("detector") != "multivariate")
    assert rules.height == 0, rules.select("detector", "period", "hs_code", "reporter", "partner", "score")
    assert (alerts["score"] < 0.1).all(), alerts.select("detector", "period", "hs_code", "reporter", "partner", "score")


def test_basket_code_mix_shifts_do_not_flood_unit_value(tmp_path):
    """811292 routes whose metal mix drifts (unit values moving several-fold, no fraud) and one
    route undervalued to a fifth for five months: the planted route leads; mix drift gives at most
    a couple of routes out of 44."""
    from detector.runner import detect_one

    with load_world(tmp_path, basket_world()) as wh:
        alerts = detect_one(wh, "unit_value", WINDOW)
    routes = alerts.group_by("reporter", "partner").agg(pl.len(), pl.col("score").max()).sort("score", descending=True)
    assert routes.row(0, named=True)["partner"] == "KAZ" and routes.row(0, named=True)["reporter"] == "ESP"
    planted = alerts.filter((pl.col("reporter") == "ESP") & (pl.col("partner") == "KAZ"))
    assert planted.height >= 2 and (planted["period"] >= date(2025, 1, 1)).all()
    assert routes.height <= 3, routes
    assert (alerts.filter(pl.col("reporter") != "ESP")["score"] < 0.6).all()
    import json
    assert all(json.loads(e)["basket"] and json.loads(e)["months_far"] >= 3 for e in alerts["evidence"])


def leads_table(alerts: pl.DataFrame) -> pl.DataFrame:
    """One row per lead: rank, commodity, shipper (via, else partner), destination, detectors."""
    return (alerts.group_by("lead_id")
            .agg(pl.col("lead_rank").first(), pl.col("commodity").first(),
                 pl.coalesce(pl.col("via"), pl.col("partner")).first().alias("shipper"),
                 pl.col("destination").first(), pl.col("detector").unique().sort().str.join(",").alias("detectors"))
            .sort("lead_rank"))


def test_one_sided_world_finds_the_diversions_from_the_controlling_countrys_books(tmp_path):
    """Only China reports. Its 811292 exports to Hong Kong after the gallium/germanium licence and
    its antimony oxide exports to Thailand after the US ban are the two top leads; the steady
    grower, the lumpy shipment, the pre-licence rush and the antimony price doubling are not
    leads of export_diversion at all."""
    with load_world(tmp_path, one_sided()) as wh:
        alerts = run_all(wh)
    leads = leads_table(alerts)
    top = {(r["commodity"], r["shipper"]) for r in leads.head(2).iter_rows(named=True)}
    assert top == {("gallium_germanium", "HKG"), ("antimony", "THA")}, leads.head(5)
    diversion = alerts.filter(pl.col("detector") == "export_diversion")
    assert set(diversion["via"]) == {"HKG", "THA"}
    assert set(diversion.filter(pl.col("via") == "THA")["destination"]) == {"USA"}   # the ban's target
    assert diversion.filter(pl.col("via") == "HKG")["period"].min() >= date(2023, 8, 1)
    assert "Hong Kong" in diversion.sort("score")["explanation"][-1] or "Thailand" in diversion.sort("score")["explanation"][-1]


def test_one_sided_world_without_the_diversions_gives_no_diversion_alert(tmp_path):
    with load_world(tmp_path, one_sided(planted=False)) as wh:
        alerts = run_all(wh)
    assert alerts.filter(pl.col("detector") == "export_diversion").height == 0


def test_export_diversion_joins_the_transshipment_lead_when_every_side_reports(tmp_path):
    """China -> Thailand -> USA with both books of every leg: the diversion seen from China's side
    and the triangle are one lead, and count as one evidence family."""
    from tests.handmade_world import background, thai_triangle

    with load_world(tmp_path, [*thai_triangle(ANTIMONY_OXIDE), *background(ANTIMONY_OXIDE)]) as wh:
        alerts = run_all(wh)
    diversion = alerts.filter(pl.col("detector") == "export_diversion")
    triangle = alerts.filter(pl.col("detector") == "transshipment")
    assert diversion.height > 0 and triangle.height > 0
    assert set(diversion["lead_id"]) <= set(triangle["lead_id"])
    lead = alerts.filter(pl.col("lead_id") == diversion["lead_id"][0])
    best = lead.group_by("detector").agg(pl.col("score").max())
    best = dict(zip(best["detector"], best["score"], strict=True))
    # transshipment and export_diversion share a family: the lead's score counts the better one once
    others = [s for d, s in best.items() if d not in ("transshipment", "export_diversion")]
    expected = 1 - (1 - max(best.get("transshipment", 0), best["export_diversion"])) * __import__("math").prod(
        1 - s for s in others)
    assert abs(lead["lead_score"][0] - expected) < 1e-9


def test_large_noisy_world_keeps_the_planted_cases_on_top(tmp_path):
    from tests.real_worlds import noisy

    with load_world(tmp_path, noisy()) as wh:
        alerts = run_all(wh)
    top = {(r["commodity"], r["shipper"]) for r in leads_table(alerts).head(10).iter_rows(named=True)}
    assert {("antimony", "THA"), ("gallium_germanium", "KAZ")} <= top


def test_false_discovery_rate_is_weighted_benjamini_hochberg_per_month():
    """Two months, 1,000 tests each (100 on watched codes, weight 20): the kept alerts are those
    whose weighted p-value passes the BH line of their own month."""
    from detector.detectors.base import DETECTOR_OUTPUT_SCHEMA
    from detector.scoring import control_fdr

    rows = []
    for period, ps in ((date(2025, 1, 1), [1e-6, 2e-4, 3e-3]), (date(2025, 2, 1), [4e-5, 0.2])):
        for k, p in enumerate(ps):
            rows.append({"detector": "unit_value", "period": period, "hs_code": "282580", "commodity": "antimony",
                         "score": 0.5, "evidence": "{}", "p_value": p, "reporter": f"R{k}"})
    rows.append({"detector": "unit_value", "period": date(2025, 1, 1), "hs_code": "999999", "commodity": None,
                 "score": 0.5, "evidence": '{"z":5}', "p_value": 1e-4, "reporter": "X"})
    alerts = pl.DataFrame(rows).with_columns(
        *[pl.lit(None, dtype).alias(c) for c, dtype in DETECTOR_OUTPUT_SCHEMA.items() if c not in rows[0]]
    ).select(list(DETECTOR_OUTPUT_SCHEMA)).cast(DETECTOR_OUTPUT_SCHEMA)
    tests = pl.DataFrame({"period": [date(2025, 1, 1), date(2025, 1, 1), date(2025, 2, 1), date(2025, 2, 1)],
                          "watched": [True, False, True, False], "n": [100, 900, 100, 900]})
    kept = control_fdr(alerts, tests, {"unit_value": "scored"}, 0.05, 20.0, keep_watched=False)
    # weights: watched 20 * 1000 / (20 * 100 + 900) = 6.9, unwatched 0.34; m = 1000 a month
    # January q = p / w: 1.4e-7, 2.9e-5, 2.9e-4 (unwatched 1e-4 / 0.34 = 2.9e-4): BH line k * 5e-5
    assert sorted(kept.filter(pl.col("period") == date(2025, 1, 1))["reporter"].to_list()) == ["R0", "R1"]
    assert kept.filter(pl.col("period") == date(2025, 2, 1))["reporter"].to_list() == ["R0"]
    assert kept["evidence"][0].startswith('{"p_value":') and "fdr_q" in kept["evidence"][0]
    assert "p_value" not in kept.columns
    assert control_fdr(alerts, tests, {"unit_value": "scored"}, 0.0, 20.0).height == alerts.height
    # the default keeps every watched code's alert; the rate judges the others (X: q 2.9e-4 * 1000 / 4 > 5%)
    default = control_fdr(alerts, tests, {"unit_value": "scored"}, 0.05, 20.0)
    assert sorted(default["reporter"].to_list()) == ["R0", "R0", "R1", "R1", "R2"]
