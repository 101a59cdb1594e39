"""Per detector: a small handmade case where it must fire, and the decoys where it must stay quiet."""

import json
import math

import numpy as np
import polars as pl
import pytest

from detector.detectors import registry
from detector.months import Window
from detector.runner import detect_one
from tests.handmade_world import (
    MONTHS,
    Corridor,
    background,
    level,
    load_world,
    month_index,
    ramp,
    thai_triangle,
)

ANTIMONY_OXIDE = "282580"
WINDOW = Window(__import__("datetime").date(2023, 1, 1), __import__("datetime").date(2025, 6, 1))
BAN = month_index("2024-12")


def run(wh, name, **overrides):
    spec = registry.get(name)
    return detect_one(wh, name, WINDOW, spec.settings_class(**overrides))


def routes(df):
    return {(r["via"] or r["partner"], r["destination"]) for r in df.iter_rows(named=True)}


@pytest.fixture
def triangle_world(tmp_path):
    """China -> Thailand -> USA after the December 2024 ban, with an own-production hub (Mexico) and a
    seasonal corridor (Korea -> Italy) as decoys."""
    seasonal = level(400_000, seed=9)
    seasonal[[t for t in range(MONTHS) if t % 12 in (0, 1)]] *= 6  # January and February peaks, every year
    corridors = [
        *thai_triangle(ANTIMONY_OXIDE),
        Corridor("CHN", "MEX", ANTIMONY_OXIDE, level(250_000, seed=4)),           # flat: no feeder
        Corridor("MEX", "USA", ANTIMONY_OXIDE, ramp(150_000, BAN, 6.0, seed=5)),  # grows from own production
        Corridor("KOR", "ITA", ANTIMONY_OXIDE, seasonal),
        *background(ANTIMONY_OXIDE),
    ]
    with load_world(tmp_path, corridors) as wh:
        yield wh


def test_transshipment_fires_on_the_triangle_and_not_on_own_production(triangle_world):
    df = run(triangle_world, "transshipment")
    assert ("THA", "USA") in routes(df)
    assert not [r for r in df.iter_rows(named=True) if r["via"] in ("MEX", "KOR")]
    best = df.filter(df["via"] == "THA").sort("score", descending=True).row(0, named=True)
    assert best["origin"] == "CHN" and best["score"] > 0.5
    evidence = json.loads(best["evidence"])
    assert evidence["pass_through"] > 0.5 and evidence["direct_loss"] > 0.9
    assert "Thailand" in best["explanation"] and "China" in best["explanation"]


def test_third_country_surge_ranks_the_fed_hub_above_own_production_and_ignores_seasons(triangle_world):
    df = run(triangle_world, "third_country_surge")
    best = {}
    for r in df.iter_rows(named=True):
        best[r["via"]] = max(best.get(r["via"], 0), r["score"])
    assert best["THA"] > 0.5
    assert best.get("MEX", 0) < 0.6 * best["THA"]   # its imports from China did not rise
    assert "KOR" not in best                        # January peaks every year are not surges
    # the explanation names the level its ratio was taken against: tonnes where both months have them
    top = df.sort("score", descending=True).row(0, named=True)
    evidence = json.loads(top["evidence"])
    assert evidence["ratio"] == pytest.approx(evidence["kg_row"] / (evidence["kg_expected"] * math.exp(evidence["market_lw"])))
    assert f"the usual tonnage of {evidence['kg_expected'] * math.exp(evidence['market_lw']) / 1e3:.1f} t" in top["explanation"]


@pytest.fixture
def mirror_world(tmp_path):
    usa_books = level(500_000, seed=11) * 1.05
    misdeclared = [month_index(m) for m in ("2025-01", "2025-02", "2025-03", "2025-04")]
    usa_books[misdeclared] *= 3.5   # the importer books far more "Malaysian" goods than Malaysia ships
    lagged = level(400_000, seed=12)
    late = lagged * 1.05
    t = month_index("2024-06")      # one shipment booked a month late by the importer: not a gap
    late[t + 1] += late[t]
    late[t] = 0
    corridors = [
        Corridor("MYS", "USA", ANTIMONY_OXIDE, level(500_000, seed=11), importer_usd=usa_books),
        Corridor("VNM", "KOR", "811292", lagged, importer_usd=late),
        Corridor("BEL", "GBR", "811292", level(300_000, seed=13), skip_importer=set(range(20, 26))),
        *background(ANTIMONY_OXIDE), *background("811292", seed=2),
    ]
    with load_world(tmp_path, corridors) as wh:
        yield wh


def test_mirror_gap_fires_on_misdeclared_origin_only(mirror_world):
    df = run(mirror_world, "mirror_gap")
    assert {(r["reporter"], r["partner"]) for r in df.iter_rows(named=True)} == {("USA", "MYS")}
    top = df.sort("score", descending=True).row(0, named=True)
    assert top["origin"] == "CHN" and top["via"] == "MYS" and top["destination"] == "USA"
    assert json.loads(top["evidence"])["gap_ratio"] > 2


@pytest.fixture
def price_world(tmp_path):
    jump = month_index("2024-10")
    price = np.full(MONTHS, 40.0)
    price[jump:] = 90.0                                    # a world-wide price jump, every corridor
    corridors = [Corridor(c.exporter, c.importer, c.hs, c.usd * price / 40.0, usd_per_kg=price)
                 for c in background(ANTIMONY_OXIDE)]
    cheap = price.copy()
    cheap[[month_index(m) for m in ("2025-02", "2025-03", "2025-04")]] *= 0.25  # declared at a quarter
    kg = level(20_000, seed=21)
    corridors.append(Corridor("CHN", "VNM", ANTIMONY_OXIDE, kg * cheap, usd_per_kg=cheap))
    with load_world(tmp_path, corridors) as wh:
        yield wh


def test_unit_value_flags_undervaluation_not_a_world_price_jump(price_world):
    df = run(price_world, "unit_value")
    assert routes(df) == {("CHN", "VNM")}
    assert {str(p)[:7] for p in df["period"]} <= {"2025-02", "2025-03", "2025-04"}
    assert all(json.loads(e)["price_ratio"] < 0.4 for e in df["evidence"])


@pytest.fixture
def shift_world(tmp_path):
    start = month_index("2025-01")
    controlled = level(1_000_000, seed=31)
    controlled[start:] *= 0.3
    neighbour = level(300_000, seed=32)
    neighbour[start:] += 0.7 * 1_000_000                 # the missing tonnage, now "other oxides"
    alone = level(800_000, seed=33)
    alone[start:] *= 0.3                                 # falls without any rise elsewhere
    corridors = [
        Corridor("CHN", "ITA", "282580", controlled), Corridor("CHN", "ITA", "282590", neighbour),
        Corridor("CHN", "BRA", "282580", alone), Corridor("CHN", "BRA", "282590", level(300_000, seed=34)),
        *background("282580"), *background("282590", seed=3),
    ]
    with load_world(tmp_path, corridors) as wh:
        yield wh


def test_code_shift_needs_the_fall_and_the_matching_rise(shift_world):
    df = run(shift_world, "code_shift")
    assert {r["destination"] for r in df.iter_rows(named=True)} == {"ITA"}
    assert set(df["hs_code"]) == {"282590"}
    assert json.loads(df.row(0, named=True)["evidence"])["balance"] > 0.5


@pytest.fixture
def corridor_world(tmp_path):
    fresh = np.zeros(MONTHS)
    fresh[month_index("2024-10"):] = 1_500_000            # a route that never traded appears
    paused = level(600_000, seed=41)
    resumed = set(range(month_index("2023-09"), month_index("2024-09")))   # Brazil stops reporting a year
    corridors = [
        Corridor("MYS", "USA", ANTIMONY_OXIDE, fresh),
        Corridor("KOR", "BRA", ANTIMONY_OXIDE, paused, skip_importer=resumed, skip_exporter=resumed),
        *background(ANTIMONY_OXIDE),
    ]
    with load_world(tmp_path, corridors) as wh:
        yield wh


def test_new_corridor_fires_on_a_route_from_nothing_not_on_a_reporter_that_resumed(corridor_world):
    df = run(corridor_world, "new_corridor")
    assert routes(df) == {("MYS", "USA")}
    assert min(df["period"]).isoformat()[:7] == "2024-10"


def test_multivariate_puts_the_triangle_hub_at_the_top(triangle_world):
    df = run(triangle_world, "multivariate", max_tail=0.05, min_usd=50_000)
    assert df.height > 0
    top = df.sort("score", descending=True).row(0, named=True)
    assert (top["partner"], top["destination"]) in {("THA", "USA"), ("CHN", "THA"), ("CHN", "USA")}
    assert "mostly for its" in top["explanation"]


@pytest.fixture
def consignment_world(tmp_path):
    from tests.comtrade_files import row, write
    from tests.handmade_world import month_label

    corridors = [Corridor("THA", "USA", ANTIMONY_OXIDE, level(400_000, seed=51)),
                 Corridor("DEU", "USA", ANTIMONY_OXIDE, level(500_000, seed=52)),
                 *background(ANTIMONY_OXIDE)]
    wh = load_world(tmp_path, corridors)
    steady = level(300_000, seed=53)
    rows = []
    for t in range(MONTHS):
        label = month_label(t)
        # German goods consigned from the Netherlands every month: ordinary, not news
        rows.append(row("USA", "DEU", "M", cmd=ANTIMONY_OXIDE, period=label, value=round(steady[t]), partner2="NLD"))
        if label in ("202502", "202503", "202504"):
            # "Thai" antimony oxide consigned from China: the origin on the US books may be false
            rows.append(row("USA", "THA", "M", cmd=ANTIMONY_OXIDE, period=label, value=900_000.0, partner2="CHN"))
        if label >= "202501":
            # Chinese-origin goods suddenly consigned from Malaysia
            rows.append(row("USA", "CHN", "M", cmd=ANTIMONY_OXIDE, period=label, value=1_200_000.0, partner2="MYS"))
        elif t % 6 == 0:
            rows.append(row("USA", "CHN", "M", cmd=ANTIMONY_OXIDE, period=label, value=60_000.0, partner2="MYS"))
    from detector.ingest.comtrade import load_comtrade

    load_comtrade(wh, [write(tmp_path / "consignment.csv", rows)])
    yield wh
    wh.close()


def test_mirror_gap_checks_origin_against_consignment(consignment_world):
    df = run(consignment_world, "mirror_gap")
    found = {(r["origin"], r["via"], r["destination"], json.loads(r["evidence"]).get("false_origin"))
             for r in df.iter_rows(named=True)}
    assert ("CHN", "THA", "USA", True) in found       # consigned from China, declared Thai
    assert ("CHN", "MYS", "USA", False) in found      # Chinese goods rerouted via Malaysia
    assert not [f for f in found if "NLD" in f or "DEU" in f]
    false_origin = df.filter(pl.col("via") == "THA")
    assert set(false_origin["period"].dt.strftime("%Y-%m")) == {"2025-02", "2025-03", "2025-04"}
    assert (false_origin["score"] > 0.5).all() and "may be false" in false_origin["explanation"][0]


def test_multivariate_sample_does_not_depend_on_the_order_rows_arrive_in(triangle_world, monkeypatch):
    """A month larger than max_train_rows learns from a seeded sample: the same data in another
    order (as a parallel query may return it) gives the same alerts. Each run builds its
    baselines afresh from the shuffled cells."""
    from detector import grid

    original = grid.fetch_columns
    outputs = []
    for shuffle_seed in (1, 2):
        def shuffled(*a, s=shuffle_seed, **k):
            columns = original(*a, **k)
            order = np.random.default_rng(s).permutation(len(next(iter(columns.values()))))
            return {name: values[order] for name, values in columns.items()}

        monkeypatch.setattr(grid, "fetch_columns", shuffled)
        df = run(triangle_world, "multivariate", max_train_rows=60, max_tail=0.2, min_usd=0.0)
        outputs.append(df.sort("period", "hs_code", "reporter", "partner"))
    assert outputs[0].height > 0
    assert outputs[0].equals(outputs[1])
