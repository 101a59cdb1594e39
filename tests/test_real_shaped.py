"""Detection on real, rougher statistics (worlds in tests/real_worlds.py): a market-wide price jump,
one-sided data, basket codes whose mix shifts, and a large noisy world with a few planted cases."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from detector.months import Window
from detector.runner import run_detectors
from tests.handmade_world import load_world
from tests.real_worlds import ANTIMONY_OXIDE, OTHER_OXIDES, market_jump

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

