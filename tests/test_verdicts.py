"""Analysts' verdicts on leads, on the sample world scored month by month: lead ids that survive
monthly runs, recording verdicts, and what they do to the next run's report."""

from __future__ import annotations

import datetime as dt
import shutil

import polars as pl
import pytest

from detector.months import Window
from detector.runner import run_detectors
from detector.sample import generate_world
from detector.warehouse import Warehouse

# Rule-based detectors keep each run to a few seconds.
DETECTORS = ["third_country_surge", "transshipment", "mirror_gap", "unit_value", "code_shift", "new_corridor"]
# Three monthly runs, each re-scoring the three months ending at its month.
WINDOWS = [Window(dt.date(2024, 11, 1), dt.date(2025, 1, 1)), Window(dt.date(2024, 12, 1), dt.date(2025, 2, 1)),
           Window(dt.date(2025, 1, 1), dt.date(2025, 3, 1))]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """The sample world loaded into a warehouse (no alerts yet), copied by each test."""
    root = tmp_path_factory.mktemp("verdicts")
    paths = generate_world(root / "sample", start="2022-01", end="2025-04")["paths"]
    from detector.ingest.comtrade import load_comtrade

    base = root / "base.duckdb"
    with Warehouse.open(base) as wh:
        load_comtrade(wh, [root / "sample" / "comtrade_monthly.csv"])
    return {"base": base, "root": root, "paths": paths}


def _copy(world, tmp_path) -> str:
    db = tmp_path / "wh.duckdb"
    shutil.copyfile(world["base"], db)
    return str(db)


def _stored(wh) -> pl.DataFrame:
    return wh.frame("SELECT alert_id, period, lead_id FROM alerts ORDER BY alert_id")


@pytest.fixture(scope="module")
def monthly(world, tmp_path_factory) -> dict:
    """Three successive monthly runs, the alerts after each; and one run over the whole span."""
    tmp = tmp_path_factory.mktemp("monthly")
    db = _copy(world, tmp)
    after = []
    with Warehouse.open(db) as wh:
        for window in WINDOWS:
            run_detectors(wh, window, DETECTORS)
            after.append(_stored(wh))
    once = _copy(world, tmp_path_factory.mktemp("once"))
    with Warehouse.open(once) as wh:
        run_detectors(wh, Window(WINDOWS[0].start, WINDOWS[-1].end), DETECTORS)
        whole = _stored(wh)
    return {"db": db, "after": after, "whole": whole}


def test_a_continuing_lead_keeps_its_id_across_monthly_runs(monthly):
    first, second, third = monthly["after"]
    # Episodes that began before the last run's window (January) and go on inside it: their
    # alerts of February or March were scored by a run that did not see December, yet carry
    # the id that hashes the December start, found among the alerts the earlier runs stored.
    start = WINDOWS[-1].start
    inside = set(third.filter(pl.col("period") >= start)["lead_id"])
    before = set(third.filter(pl.col("period") < start)["lead_id"])
    lasting = inside & before
    assert lasting, "the sample world has a lead flagged before and inside the last window"
    assert lasting <= set(second["lead_id"])  # the id the second run gave it
    for before, after in ((first, second), (second, third)):
        shared = before.join(after, on="alert_id", suffix="_after")
        assert shared.height and (shared["lead_id"] == shared["lead_id_after"]).all()
    # Month by month the runs give the alerts the lead ids that one run over the whole span gives them.
    both = third.join(monthly["whole"], on="alert_id", suffix="_whole")
    assert both.height >= 0.9 * monthly["whole"].height
    assert (both["lead_id"] == both["lead_id_whole"]).all()
