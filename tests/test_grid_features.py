"""What the detectors compute on the dense corridor grid (the multivariate detector's features,
the mirror gaps) equals its SQL definition (window functions over corridor_stats) on the sample
world with every code in scope, also in small blocks and when the grid's rows arrive in another
order."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from detector import grid
from detector.baselines import market_sql
from detector.detectors import mirror_gap, multivariate
from detector.ingest.comtrade import load_comtrade
from detector.months import months_back
from detector.runner import default_window, open_baselines
from detector.sample import generate_world
from detector.warehouse import Warehouse

# The features as SQL over corridor_stats: the specification (each route against its usual level
# raised by its code's market-wide move that month, baselines.MARKET_SQL). Windows run over the calendar
# months of each series, before any row is filtered out.
FEATURES_SQL = """
WITH market AS (""" + market_sql(where="AND hs_code IN (SELECT hs_code FROM scope_codes WHERE scored)") + """),
world AS (   -- median unit value of the code that month over its corridors
    SELECT hs_code, period, median(usd / kg_row) AS world_uv
    FROM corridor_months WHERE usd > 0 AND kg_row > 0 GROUP BY ALL
),
supply AS (   -- the importer's supply of the code that month
    SELECT hs_code, importer, period, sum(usd) AS importer_total FROM corridor_months GROUP BY ALL
),
windows AS (
    SELECT s.*, coalesce(m.market_lv, 0) AS market_lv, coalesce(m.market_lw, 0) AS market_lw,
           s.usd / nullif(t.importer_total, 0) AS share_now,
           avg(s.usd / nullif(t.importer_total, 0)) OVER (
               PARTITION BY s.hs_code, s.exporter, s.importer ORDER BY s.period
               ROWS BETWEEN 12 PRECEDING AND 1 PRECEDING) AS share_usual,
           sum(s.m_usd) OVER w3 AS m_usd3, sum(s.x_usd) OVER w3 AS x_usd3,
           count(*) FILTER (WHERE s.usd > 2 * greatest(s.usd_expected * exp(coalesce(m.market_lv, 0)), 1e4))
               OVER w3 AS months_elevated
    FROM corridor_stats s JOIN supply t USING (hs_code, importer, period)
    LEFT JOIN market m USING (hs_code, period)
    WHERE s.hs_code IN (SELECT hs_code FROM scope_codes WHERE scored)
    WINDOW w3 AS (PARTITION BY s.hs_code, s.exporter, s.importer ORDER BY s.period
                  ROWS BETWEEN 2 PRECEDING AND CURRENT ROW)
)
SELECT s.hs_code, s.exporter, s.importer, s.period, s.usd, s.usd_expected,
       greatest(ln((s.usd + 1e4) / (s.usd_expected * exp(s.market_lv) + 1e4)), 0) AS growth,
       least(greatest(coalesce((s.lv - ln(1 + s.usd_expected * exp(s.market_lv)))
                               / (1.4826 * greatest(s.lv_mad, 0.15)), 0), 0), 10) AS z_value,
       least(greatest(coalesce((s.lw - s.market_lw - ln(1 + s.kg_expected)) / (1.4826 * greatest(s.lw_mad, 0.15)), 0), 0), 10)
           AS z_weight,
       coalesce(ln((s.usd / nullif(s.kg_row, 0)) / w.world_uv), 0) AS price,
       coalesce(ln((s.m_usd3 / 1.06 + 1e4) / (s.x_usd3 + 1e4)), 0) AS mirror,
       greatest(coalesce(s.share_now - s.share_usual, 0), 0) AS share,
       s.months_elevated
FROM windows s
LEFT JOIN world w USING (hs_code, period)
WHERE s.usd > 0 AND s.n_hist >= $min_history AND s.period BETWEEN $train_start AND $end
"""

COMPARED = [*multivariate.FEATURES, "months_elevated", "usd", "usd_expected"]

# The mirror gaps as SQL: three-month sums where both sides published all three months, judged
# against the median and MAD of the months t-15 .. t-3 in which both books show trade.
MIRROR_GAP_SQL = """
WITH both_sides AS (
    SELECT hs_code, exporter, importer, period,
           sum(m_usd) OVER w3 AS m3, sum(x_usd) OVER w3 AS x3, sum(x_usd) OVER w3_before AS x3_before,
           count(m_usd) OVER w3 = 3 AND count(x_usd) OVER w3 = 3 AS published
    FROM corridor_months SEMI JOIN scope_codes sc ON sc.hs_code = corridor_months.hs_code AND sc.scored
    WINDOW w3 AS (PARTITION BY hs_code, exporter, importer ORDER BY period ROWS BETWEEN 2 PRECEDING AND CURRENT ROW),
           w3_before AS (PARTITION BY hs_code, exporter, importer ORDER BY period
                         ROWS BETWEEN 3 PRECEDING AND 1 PRECEDING)
),
aligned AS (
    SELECT *, ln((m3 / $cif_factor + $floor_usd) / (x3 + $floor_usd)) AS gap_same,
           ln((m3 / $cif_factor + $floor_usd) / (coalesce(x3_before, x3) + $floor_usd)) AS gap_lagged
    FROM both_sides
),
gaps AS (
    SELECT *,
           CASE WHEN sign(gap_same) = sign(gap_lagged) AND abs(gap_lagged) < abs(gap_same) THEN gap_lagged
                WHEN sign(gap_same) = sign(gap_lagged) THEN gap_same ELSE 0 END AS log_gap,
           published AND m3 > 0 AND x3 > 0 AS usual_month
    FROM aligned
),
judged AS (
    SELECT *,
           median(log_gap) FILTER (WHERE usual_month) OVER w AS gap_med,
           mad(log_gap) FILTER (WHERE usual_month) OVER w AS gap_mad,
           count(*) FILTER (WHERE usual_month) OVER w AS n_hist
    FROM gaps
    WINDOW w AS (PARTITION BY hs_code, exporter, importer ORDER BY period ROWS BETWEEN 15 PRECEDING AND 3 PRECEDING)
)
SELECT *, (log_gap - gap_med) / (1.4826 * greatest(gap_mad, 0.1)) AS z_gap
FROM judged
WHERE published AND period BETWEEN $start AND $end AND n_hist >= $min_history
  AND abs(log_gap - gap_med) >= ln($min_ratio) AND abs(m3 / $cif_factor - x3) / 3 >= $min_gap_usd
  AND abs((log_gap - gap_med) / (1.4826 * greatest(gap_mad, 0.1))) >= $min_z
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    path = tmp_path_factory.mktemp("world")
    generate_world(path, seed=7)
    with Warehouse.open(path / "w.duckdb") as wh:
        load_comtrade(wh, [path / "comtrade_monthly.csv"])
        window = default_window(wh)
        settings = multivariate.Settings()
        with open_baselines(wh, window, all_codes=True) as values:
            expected = values.sql(FEATURES_SQL, {
                "min_history": settings.min_history,
                "train_start": months_back(window.start, settings.train_months - 1)})
        yield wh, window, settings, expected


@pytest.fixture
def shuffled_grid(monkeypatch):
    """The grid's rows in another order, as a parallel scan may return them (the tests build
    their baselines afresh, so the grid is built from the shuffled rows)."""
    original = grid.fetch_columns

    def shuffled(*args, **kwargs):
        columns = original(*args, **kwargs)
        order = np.random.default_rng(3).permutation(len(next(iter(columns.values()))))
        return {name: values[order] for name, values in columns.items()}

    monkeypatch.setattr(grid, "fetch_columns", shuffled)


def _features(wh, window, settings, block_cells=grid.BLOCK_CELLS):
    with open_baselines(wh, window, all_codes=True) as values:
        rows, series = multivariate.corridor_features(values, window, settings, block_cells)
    return rows.join(series.select("series_no", "hs_code", "exporter", "importer"), on="series_no", how="left")


def _assert_equal(expected: pl.DataFrame, got: pl.DataFrame):
    assert got.height == expected.height > 10_000
    both = expected.join(got, on=["hs_code", "exporter", "importer", "period"], how="full", suffix="_grid")
    assert both["usd"].null_count() == 0 and both["usd_grid"].null_count() == 0  # the same rows
    for name in COMPARED:
        np.testing.assert_allclose(both[f"{name}_grid"].to_numpy().astype(float), both[name].to_numpy().astype(float),
                                   rtol=1e-9, atol=1e-12, err_msg=name)
    for name in multivariate.FEATURES:  # every feature varies: none is constant by mistake
        assert got[name].n_unique() > 100, name


def test_features_equal_their_sql_definition(world):
    wh, window, settings, expected = world
    got = _features(wh, window, settings)
    _assert_equal(expected, got)
    assert got.select(pl.col("period").diff().dt.total_days().min()).item() >= 0  # in month order


def test_features_do_not_depend_on_blocks_or_row_order(world, shuffled_grid):
    wh, window, settings, expected = world
    small = _features(wh, window, settings, block_cells=20_000)
    _assert_equal(expected, small)
    assert small.equals(_features(wh, window, settings))


@pytest.mark.parametrize("block_cells", [grid.BLOCK_CELLS, 20_000])
def test_mirror_gaps_equal_their_sql_definition(world, shuffled_grid, block_cells):
    wh, window, *_ = world
    settings = mirror_gap.Settings(min_z=2.0, min_ratio=1.3, min_gap_usd=20_000)  # more rows to compare
    params = {k: getattr(settings, k) for k in ("cif_factor", "min_ratio", "min_gap_usd", "floor_usd", "min_history",
                                                 "min_z")}
    with open_baselines(wh, window, all_codes=True) as values:
        expected = values.sql(MIRROR_GAP_SQL, params)
        got = mirror_gap.mirror_gaps(values, window, settings, block_cells)
    assert got.height == expected.height > 100
    both = expected.join(got, on=["hs_code", "exporter", "importer", "period"], how="full", suffix="_grid")
    assert both["m3"].null_count() == 0 and both["m3_grid"].null_count() == 0  # the same rows
    for name in ("m3", "x3", "log_gap", "gap_med", "gap_mad", "n_hist", "z_gap"):
        np.testing.assert_allclose(both[f"{name}_grid"].to_numpy().astype(float), both[name].to_numpy().astype(float),
                                   rtol=1e-9, atol=1e-12, err_msg=name)
    assert (got["commodity"].is_null() & got["controlling_country"].is_null()).any()  # unwatched codes too
