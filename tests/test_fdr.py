"""The false discovery rate at scale: p-values calibrated to each detector's empirical null, and
the default budget on a large noisy run over every code."""

from __future__ import annotations

import json
from datetime import date

import polars as pl
import pytest
from scipy.stats import norm

from detector.detectors import registry
from detector.months import Window
from detector.runner import run_detectors
from detector.scoring import NULL_MIN_TESTS, control_fdr, null_scales
from detector.settings import FdrSettings, Settings
from tests.handmade_world import load_world
from tests.real_worlds import noisy

WINDOW = Window(date(2023, 1, 1), date(2025, 6, 1))
MONTH = date(2025, 1, 1)


def test_null_scale_is_the_widest_that_makes_a_well_filled_tail_level_right():
    """10,000 tests; 200 of them at p <= 1e-4 and 60 at p <= 1e-6 (a tail 100 and 6,000 times too
    heavy): the scale makes the deeper level right; 5 alerts at p <= 1e-7 are too few to count."""
    ps = [1e-4] * 140 + [2e-7] * 55 + [1e-9] * 5
    alerts = pl.DataFrame({"detector": "mirror_gap", "period": MONTH, "p_value": ps})
    m = pl.DataFrame({"detector": ["mirror_gap"], "period": [MONTH], "m": [10_000]})
    scale = null_scales(alerts, m)["null_scale"].item()
    assert scale == pytest.approx(norm.isf(1e-6) / norm.isf(60 / 10_000), rel=1e-9)
    assert scale > norm.isf(1e-4) / norm.isf(200 / 10_000) > 1
    # a tail no heavier than the theory's, or too thin to judge, leaves the p-values as they are
    few = alerts.head(NULL_MIN_TESTS - 1).with_columns(pl.lit(1e-9).alias("p_value"))
    assert null_scales(few, m).height == 0
    right = pl.DataFrame({"detector": "mirror_gap", "period": MONTH, "p_value": [1e-3] * 10})
    assert null_scales(right, m)["null_scale"].item() == 1.0


def test_a_detector_too_sparse_for_its_own_null_borrows_the_heaviest_of_its_kind():
    """Two code shifts a month cannot fit a null. In a month where the surges on the same watched
    codes have a fitted tail, the shifts are trusted no more than them (their scale, not mirror_gap's,
    which tests every code); in a month where nothing of their kind is fitted the theory stands."""
    quiet = date(2025, 2, 1)
    mirror = pl.DataFrame({"detector": "mirror_gap", "period": [MONTH] * 200 + [quiet] * 200, "commodity": None,
                           "p_value": ([1e-4] * 140 + [2e-7] * 55 + [1e-9] * 5) * 2})
    surges = pl.DataFrame({"detector": "third_country_surge", "period": MONTH, "commodity": "antimony",
                           "p_value": [1e-4] * 12})
    shifts = pl.DataFrame({"detector": "code_shift", "period": [MONTH, MONTH, quiet, quiet],
                           "commodity": "gallium_germanium", "p_value": [1e-6, 1e-5, 1e-6, 1e-5]})
    alerts = pl.concat([mirror, surges, shifts], how="vertical_relaxed").with_columns(
        pl.col("commodity").cast(pl.String), pl.lit("{}").alias("evidence"))
    tests = pl.DataFrame({"period": [MONTH, MONTH, quiet, quiet], "watched": [False, True, False, True],
                          "n": [9_000, 1_000, 9_000, 1_000]})
    tested = {"mirror_gap": "scored", "third_country_surge": "watched", "code_shift": "watched"}
    kept = control_fdr(alerts, tests, tested, rate=1.0, watched_weight=1.0, keep_watched=False)
    evidence = kept.with_columns(pl.col("evidence").str.json_decode(
        pl.Struct({"p_value": pl.Float64, "p_theory": pl.Float64, "null_scale": pl.Float64, "null_from": pl.String})
    )).unnest("evidence")
    surge_scale = null_scales(surges, pl.DataFrame({"detector": ["third_country_surge"], "period": [MONTH], "m": [1_000]}))
    surge_scale = surge_scale["null_scale"].item()
    mirror_scale = null_scales(mirror.filter(pl.col("period") == MONTH),
                               pl.DataFrame({"detector": ["mirror_gap"], "period": [MONTH], "m": [10_000]}))
    assert 1 < surge_scale < mirror_scale["null_scale"].item()
    borrowed = evidence.filter((pl.col("detector") == "code_shift") & (pl.col("period") == MONTH))
    assert (borrowed["null_from"] == "kind").all()
    assert borrowed["null_scale"].to_list() == pytest.approx([surge_scale] * 2, abs=1e-3)
    assert borrowed["p_value"].to_list() == pytest.approx(
        list(norm.sf(norm.isf(borrowed["p_theory"].to_numpy()) / surge_scale)), rel=1e-9)
    alone = evidence.filter((pl.col("detector") == "code_shift") & (pl.col("period") == quiet))
    assert (alone["null_from"] == "theory").all()
    assert alone["p_value"].to_list() == pytest.approx(alone["p_theory"].to_list(), rel=1e-9)
    assert (evidence.filter(pl.col("detector") != "code_shift")["null_from"] == "own").all()


# Gates open: every tested corridor-month comes out with its p-value.
OPEN_GATES = {
    "mirror_gap": {"min_z": 0.0, "min_ratio": 1.0, "min_gap_usd": 0.0},
    "unit_value": {"min_world_ratio": 1.0, "min_z": 0.0, "min_row_usd": 0.0},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(OPEN_GATES))
def test_p_values_are_calibrated_under_the_null(tmp_path, name):
    """A noisy world with nothing planted (30% noise, lumpy months, importers booking a shipment
    twice now and then; 1,000-2,000 tests a month): among all tested corridor-months the Student-t
    p-values fall below 1e-3 some 15-20 times and below 1e-4 some 50-170 times too often; the
    calibrated ones within about twice the level (conservative at 0.05, where the tail fitted for
    the deep levels is wider than the bulk)."""
    spec = registry.get(name)
    settings = Settings(detectors={name: spec.settings_class(**OPEN_GATES[name])},
                        fdr=FdrSettings(rate=1.0, keep_watched=False))   # rate 1: every test kept
    with load_world(tmp_path, noisy(planted=False, unwatched=3)) as wh:
        alerts = run_detectors(wh, WINDOW, names=[name], settings=settings, all_codes=True).alerts
    evidence = [json.loads(e) for e in alerts["evidence"]]
    calibrated = pl.Series([e["p_value"] for e in evidence])
    theory = pl.Series([e["p_theory"] for e in evidence])
    assert len(evidence) > 20_000
    assert (theory < 1e-3).mean() >= 10e-3 and (theory < 1e-4).mean() >= 50e-4
    assert (calibrated < 1e-3).mean() <= 2e-3 and (calibrated < 1e-4).mean() <= 5e-4
    assert 0.01 <= (calibrated < 0.05).mean() <= 0.075


@pytest.mark.slow
def test_the_default_budget_keeps_the_planted_cases_and_drops_the_flood(tmp_path):
    """A run over every code of a large noisy world: three watched codes with two planted cases and
    twelve ordinary codes whose two books disagree now and then. With the default false discovery
    rate the planted leads stay on top and the kept alerts fall at least tenfold."""
    runs = {}
    with load_world(tmp_path, noisy(unwatched=12)) as wh:
        for label, fdr in (("off", FdrSettings(rate=0.0)), ("default", FdrSettings())):
            result = run_detectors(wh, WINDOW, settings=Settings(fdr=fdr), all_codes=True)
            runs[label] = (sum(result.found.values()), result.alerts)
    found, kept = runs["off"][0], runs["default"][1]
    assert runs["off"][1].height == found
    assert kept.height * 10 <= found, (kept.height, found)
    for _, alerts in runs.values():
        leads = (alerts.group_by("lead_id")
                 .agg(pl.col("lead_rank").first(), pl.col("commodity").first(),
                      pl.coalesce(pl.col("via"), pl.col("partner")).first().alias("shipper"))
                 .sort("lead_rank"))
        assert leads.row(0, named=True)["shipper"] == "THA", leads.head(10)
    # without the budget the disagreeing books of ordinary codes crowd the basket case out of the top
    top = set(leads.head(5).select("commodity", "shipper").iter_rows())
    assert {("antimony", "THA"), ("gallium_germanium", "KAZ")} <= top, leads.head(10)
