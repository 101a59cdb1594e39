"""The NumPy trailing statistics equal the SQL window functions they replace (DuckDB's median,
mad, max, sum, count and avg over ROWS frames), on series with gaps, zeros, ties and short
histories."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest

from detector.months import months_ahead
from detector.trailing import series_stats

# The statistics as SQL window functions over a dense series x month table: the specification.
WINDOW_SQL = """
CREATE OR REPLACE TEMP TABLE {dst} AS
WITH logs AS (
    SELECT *,
           ln(1 + usd) AS lv,
           CASE WHEN usd = 0 THEN ln(1) WHEN kg_row > 0 THEN ln(1 + kg_row) END AS lw
    FROM {src}
),
trailing_stats AS (
    SELECT *,
           count(lv)       OVER w12 AS n_hist,
           median(lv)      OVER w12 AS lv_med,
           mad(lv)         OVER w12 AS lv_mad,
           median(lw)      OVER w12 AS lw_med,
           mad(lw)         OVER w12 AS lw_mad,
           median(usd)     OVER w12 AS usd_med,
           median(kg_row)  OVER w12 AS kg_med,
           median(kg_row)  OVER w_prior AS kg_med_prior_year,
           max(kg_row)     OVER w_last_year AS kg_last_year,
           median(usd)     OVER w_prior AS usd_med_prior_year,
           max(usd)        OVER w_all  AS usd_max_before,
           sum(usd)        OVER w_all  AS usd_sum_before,
           max(CASE WHEN usd > 0 THEN period END) OVER w_all AS last_trade_before,
           count(lv)       OVER w_all AS n_reported_before,
           avg(usd)        OVER w3 AS usd_avg3,
           avg(kg_row)     OVER w3 AS kg_avg3,
           count(usd)      OVER w3 AS n3,
           max(usd)        OVER w_last_year AS usd_last_year
    FROM logs
    WINDOW w12 AS (PARTITION BY {key}, exporter, importer ORDER BY period
                   ROWS BETWEEN 12 PRECEDING AND 1 PRECEDING),
           w_prior AS (PARTITION BY {key}, exporter, importer ORDER BY period
                   ROWS BETWEEN 24 PRECEDING AND 13 PRECEDING),
           w_all AS (PARTITION BY {key}, exporter, importer ORDER BY period
                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),
           w_last_year AS (PARTITION BY {key}, exporter, importer ORDER BY period
                   ROWS BETWEEN 13 PRECEDING AND 11 PRECEDING),
           w3 AS (PARTITION BY {key}, exporter, importer ORDER BY period
                   ROWS BETWEEN 2 PRECEDING AND CURRENT ROW)
)
SELECT *,
       -- robust z of this month against the trailing year; MAD floored so flat series are not infinitely
       -- sensitive (0.15 in log units is about +-16%)
       (lv - lv_med) / (1.4826 * greatest(lv_mad, 0.15)) AS z_value,
       (lw - lw_med) / (1.4826 * greatest(lw_mad, 0.15)) AS z_weight,
       -- the highest of the usual levels: trailing year, the same season last year (three months
       -- around the same month), the year before
       greatest(coalesce(usd_med, 0), coalesce(usd_last_year, 0), coalesce(usd_med_prior_year, 0)) AS usd_expected,
       greatest(coalesce(kg_med, 0), coalesce(kg_last_year, 0), coalesce(kg_med_prior_year, 0)) AS kg_expected
FROM trailing_stats
"""


def _series(seed: int, n: int = 400, months: int = 30) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    usd = np.round(rng.lognormal(8, 2, (n, months)), rng.integers(-3, 2))  # some rounded: ties
    usd[rng.random((n, months)) < 0.15] = 0.0                            # published, no trade
    usd[rng.random((n, months)) < rng.random((n, 1)) * 0.6] = np.nan     # not published
    usd[: n // 10, : months // 2] = np.nan                               # late starters
    kg = np.round(usd / rng.lognormal(1, 1, (n, months)), 1)
    kg[rng.random((n, months)) < 0.1] = np.nan                           # weight not given
    kg[rng.random((n, months)) < 0.02] = 0.0
    return usd, kg


@pytest.mark.parametrize("seed, months", [(1, 30), (2, 30), (3, 10)])   # 10: shorter than some windows
def test_numpy_statistics_equal_the_sql_windows(seed, months):
    usd, kg = _series(seed, months=months)
    n, months = usd.shape
    start = np.datetime64("2022-01-01")
    periods = np.array([months_ahead(start.astype(object), m) for m in range(months)], dtype="datetime64[D]")
    cells = pl.DataFrame({
        "hs_code": np.repeat(np.arange(n), months).astype(str), "exporter": "AAA", "importer": "BBB",
        "period": np.tile(periods, n),
        "usd": pl.Series(usd.ravel(), nan_to_null=True), "kg_row": pl.Series(kg.ravel(), nan_to_null=True),
    })
    con = duckdb.connect()
    con.register("cells", cells)
    con.execute(WINDOW_SQL.format(src="cells", dst="expected", key="hs_code"))
    expected = con.sql("SELECT * FROM expected ORDER BY CAST(hs_code AS INTEGER), period").pl()

    got = series_stats(usd, kg)
    checked = 0
    for name, values in got.items():
        want = expected[name]
        if name == "last_trade_before":
            index = np.where(values.ravel() >= 0, values.ravel(), 0)
            values = np.where(values.ravel() >= 0, periods[index], np.datetime64("NaT"))
            assert pl.Series(values).cast(pl.Date).equals(want, check_names=False), name
        elif want.dtype.is_integer():
            np.testing.assert_array_equal(values.ravel(), want.to_numpy(), err_msg=name)
        else:
            np.testing.assert_allclose(values.ravel(), want.fill_null(np.nan).to_numpy(), rtol=1e-12, atol=0,
                                       equal_nan=True, err_msg=name)
        checked += 1
    assert checked == 24
    # the data exercise what they are meant to: empty windows, even counts (interpolated medians)
    assert expected["n_hist"].min() == 0 and (expected["n_hist"] % 2 == 0).sum() > 100 * months / 30


def test_baselines_built_block_by_block_equal_one_block(tmp_path, monkeypatch):
    """A world larger than a block is built a block of corridors at a time: same table."""
    from detector import grid
    from detector.months import Window
    from detector.runner import open_baselines
    from tests.handmade_world import background, load_world, thai_triangle

    wh = load_world(tmp_path, thai_triangle() + background("282580") + background("811292", seed=3))
    window = Window(date(2024, 1, 1), date(2024, 12, 1))
    order = "ORDER BY hs_code, exporter, importer, period"
    with open_baselines(wh, window, all_codes=True) as values:
        whole = values.sql(f"SELECT * FROM corridor_stats {order}")
        assert len(values.grid_files) == 1
    monkeypatch.setattr(grid, "BLOCK_CELLS", 100)  # two corridors of 36 months per block
    with open_baselines(wh, window, all_codes=True) as values:
        blocks = values.sql(f"SELECT * FROM corridor_stats {order}")
        assert len(values.grid_files) > 1
    assert whole.height > 0 and whole.equals(blocks)
    assert whole.select("hs_code", "exporter", "importer").n_unique() >= 10


def test_baselines_live_in_a_scratch_folder_removed_on_close(tmp_path):
    """The large working grid goes to Parquet files in a throwaway folder next to the warehouse,
    which closing removes; one left by a killed process is removed by the next user."""
    from detector import baselines
    from detector.months import Window
    from tests.handmade_world import background, load_world

    folder = tmp_path / "w.duckdb.tmp"
    (folder / "work-999999999-abc").mkdir(parents=True)  # no such process
    (folder / "work-999999999-abc" / "corridor_stats-000000.parquet").write_bytes(b"left over")
    (folder / "work-999999998-def.duckdb").write_bytes(b"left over")
    wh = load_world(tmp_path, background("282580"))
    values = baselines.prepare(wh, Window(date(2024, 1, 1), date(2024, 12, 1)))
    assert values.sql("SELECT count(*) AS n FROM corridor_stats")["n"][0] > 0
    (mine,) = folder.glob("work-*")
    assert list(mine.glob("baselines-*/corridor_stats-*.parquet"))
    values.close()
    assert not list(mine.glob("baselines-*"))  # the run's baselines go when it ends
    wh.close()
    assert not list(folder.glob("work-*"))


def test_a_warehouse_in_memory_keeps_its_grid_in_a_temporary_folder():
    from detector import baselines
    from detector.months import Window
    from detector.warehouse import Warehouse

    before = set(Path.cwd().iterdir())
    with Warehouse.open(":memory:") as wh:
        with baselines.prepare(wh, Window(date(2024, 1, 1), date(2024, 12, 1))) as values:
            scratch = wh.scratch()
            assert values.sql("SELECT count(*) AS n FROM corridor_stats")["n"][0] == 0
            assert values.folder.parent == scratch and scratch.is_dir()
    assert not scratch.exists()
    assert set(Path.cwd().iterdir()) == before  # nothing written into the working directory
