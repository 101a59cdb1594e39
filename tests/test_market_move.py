"""The market-wide move (baselines.MARKET_SQL): what a whole code's market did in a month beyond
its usual move and beyond the noise of a median over its corridors.

Worlds of corridor changes drawn at random: the statistic's structural bias (intermittent
corridors, steady growth) must not count as a move, nor must the wobble of a median over a few
dozen noisy corridors, nor a few routes surging together; a jump of every route must count in
full. The grid version the multivariate model uses gives the same figures."""

from __future__ import annotations

from datetime import date

import duckdb
import numpy as np
import polars as pl
import pytest

from detector.baselines import market_sql
from detector.detectors.multivariate import _code_market
from detector.grid import GridBlock
from detector.months import months_ahead
from detector.robust import MAD_TO_SIGMA

N_CORRIDORS, N_MONTHS, EVENT = 30, 40, 32
LV_MAD = 0.2   # every corridor's trailing spread: a change of c is a robust z of c / (1.4826 * 0.2)
BIAS, NOISE = 0.17, 0.3


def changes(seed: int, jump: float = 0.0, surging: int = 0) -> np.ndarray:
    """(corridor x month) log changes against each corridor's trailing year: an ordinary month's
    median sits at BIAS; from EVENT every route moves by `jump`, or `surging` routes by 1.0."""
    rng = np.random.default_rng(seed)
    change = BIAS + rng.normal(0.0, NOISE, (N_CORRIDORS, N_MONTHS))
    change[:, EVENT:] += jump
    change[:surging, EVENT:] += 1.0
    return change


def market(codes: dict[str, np.ndarray]) -> pl.DataFrame:
    """MARKET_SQL over corridor_stats rows holding the changes given (value and weight alike)."""
    periods = [months_ahead(date(2021, 1, 1), m) for m in range(N_MONTHS)]
    rows = pl.concat([
        pl.DataFrame({"hs_code": hs, "period": periods * N_CORRIDORS,
                      "z_value": change.ravel() / (MAD_TO_SIGMA * LV_MAD)})
        for hs, change in codes.items()
    ]).with_columns(pl.col("z_value").alias("z_weight"), lv_mad=pl.lit(LV_MAD), lw_mad=pl.lit(LV_MAD),
                    usd=pl.lit(1e6), n_hist=pl.lit(12))
    con = duckdb.connect()
    con.register("corridor_stats", rows)
    return con.sql(market_sql() + " ORDER BY hs_code, period").pl()


SEEDS = range(6)
AFTER_EVENT = months_ahead(date(2021, 1, 1), EVENT)


def test_usual_bias_and_median_noise_are_no_market_move():
    """Months after the usual level is known (half a year on), over several drawn worlds: a move
    in at most 1 month in 20, in value or weight (each month's chance is about 1 in 700)."""
    moved = pl.concat([market({"810411": changes(seed)}) for seed in SEEDS]).filter(pl.col("period") >= date(2021, 7, 1))
    assert moved.height == len(SEEDS) * (N_MONTHS - 6)
    assert (moved["market_lv"] > 0).mean() <= 0.05, moved.filter(pl.col("market_lv") > 0)
    assert (moved["market_lw"] > 0).mean() <= 0.05


@pytest.mark.parametrize("seed", SEEDS)
def test_every_route_moving_at_once_is_the_market_move(seed):
    """The usual bias comes off; the jump counts in full (the corridors' own trailing medians
    absorb a lasting jump after half a year, so the first months are the market's)."""
    after = market({"282580": changes(seed, jump=0.9)}).filter(pl.col("period") >= AFTER_EVENT)["market_lv"]
    assert abs(after[:6].mean() - 0.9) < 0.1, after
    assert after[:6].min() > 0.6, after


def test_a_few_routes_surging_together_are_no_market_move():
    """Four of thirty routes of a code surge (origin and hub legs of two triangles, say)."""
    moved = pl.concat([market({"710421": changes(seed, surging=4)}) for seed in SEEDS])
    after = moved.filter(pl.col("period") >= AFTER_EVENT)
    assert (after["market_lv"] > 0).mean() <= 0.05, after.filter(pl.col("market_lv") > 0)


def test_the_grid_version_gives_the_same_moves():
    codes = {"282580": changes(1, jump=0.9), "710421": changes(2, surging=4), "810411": changes(3)}
    by_sql = market(codes)
    keys = pl.DataFrame({"hs_code": [hs for hs in codes for _ in range(N_CORRIDORS)]})
    matrices = {"usd": np.full((len(keys), N_MONTHS), 1e6), "n_hist": np.full((len(keys), N_MONTHS), 12.0)}
    block = GridBlock(keys, np.arange(N_MONTHS), matrices)
    on_grid = _code_market(block, np.vstack(list(codes.values())))
    expected = by_sql.pivot(on="period", index="hs_code", values="market_lv").drop("hs_code").to_numpy()
    np.testing.assert_allclose(on_grid[::N_CORRIDORS], expected, rtol=1e-9, atol=1e-12)
