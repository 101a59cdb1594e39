"""Declaration scoring in bounded pieces (features month by month, lines in batches, ECOD column by
column) gives the numbers of the one-piece computation, on the KCS sample (real-shaped labelled lines)."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
from polars.testing import assert_frame_equal

from detector.declarations.features import FeatureOptions, build_features
from detector.declarations.models import ModelOptions, rank_lines, score_months
from detector.declarations.monthly_features import MonthlyFeatures
from detector.detectors import declaration_risk
from detector.ingest.declarations import load_declarations
from detector.months import Window
from detector.outliers import ecod_scores
from detector.warehouse import Warehouse
from tests.declaration_lines import line_scores
from tests.test_declarations import KCS_SAMPLE

APRIL = "period <= DATE '2020-04-01'"
MONTHS = [date(2020, 3, 1), date(2020, 4, 1)]


@pytest.fixture(scope="module")
def kcs_wh(tmp_path_factory):
    """1,500 labelled KCS lines in each month Jan-Jun 2020."""
    w = Warehouse.open(tmp_path_factory.mktemp("kcs") / "kcs.duckdb")
    load_declarations(w, [KCS_SAMPLE])
    yield w
    w.close()


def test_features_month_by_month_equal_the_one_query(kcs_wh, tmp_path):
    opts = FeatureOptions(hubs=("HKG", "SGP"), label_cutoff=date(2020, 4, 1))
    whole = build_features(kcs_wh.con, opts, APRIL)
    store = MonthlyFeatures.build(kcs_wh.con, opts, tmp_path, APRIL)
    assert store.months == [date(2020, m, 1) for m in (1, 2, 3, 4)]
    by_month = store.read(store.months)
    assert by_month.height == whole.height == 6000
    # the sums of labels come back as Decimal from Arrow and as doubles from Parquet: same numbers
    assert_frame_equal(whole.cast(dict(by_month.schema)), by_month, check_exact=True)
    assert by_month["cnt_importer"].filter(by_month["period"] == date(2020, 4, 1)).max() > 0


@pytest.mark.parametrize("opts", [ModelOptions(lgbm_params={"n_estimators": 40}),
                                  ModelOptions(mode="unsupervised", unsupervised_model="ecod")],
                         ids=["lightgbm", "ecod"])
def test_scores_in_batches_equal_one_batch(kcs_wh, tmp_path, opts):
    whole = build_features(kcs_wh.con, FeatureOptions(), APRIL)
    one = score_months(whole, MONTHS, opts, batch_lines=10**9)
    store = MonthlyFeatures.build(kcs_wh.con, FeatureOptions(), tmp_path, APRIL)
    batched = score_months(store, MONTHS, opts, batch_lines=97)  # 16 batches a month, the last one short
    assert one.height == 3000 and set(one["method"]) == {"lightgbm" if opts.mode == "auto" else "ecod"}
    assert_frame_equal(one, batched, check_exact=True)
    assert rank_lines(one, opts).equals(rank_lines(batched, opts))


def test_detector_scores_equal_the_one_query_path(kcs_wh):
    """The detector (features by month, 101 lines a batch, reasons for the top 10 % of each month's order)
    against features in one query scored whole, every line explained."""
    settings = declaration_risk.Settings(trees=40, batch_lines=101)
    window = Window(date(2020, 5, 1), date(2020, 6, 1))
    got = line_scores(kcs_wh, window, settings)
    fopts, mopts = declaration_risk._options(settings)
    whole = build_features(kcs_wh.con, fopts, "period <= DATE '2020-06-01'")
    ranked = rank_lines(score_months(whole, [date(2020, 5, 1), date(2020, 6, 1)], mopts, batch_lines=10**9),
                        mopts, by="period")
    expected = ranked.select("source", "declaration_id", "period", "score", "rank", "reasons").sort("period", "rank")
    assert got.height == 3000 and got["reasons"].str.contains("exploration pick").any()
    assert_frame_equal(got.drop("reasons"), expected.drop("reasons"), check_exact=True)
    explained = got["reasons"].is_not_null()
    assert explained.to_list() == (got["rank"] <= 150).to_list()  # 10 % of each month's 1,500 lines
    assert got.filter(explained)["reasons"].equals(expected.filter(explained)["reasons"])


def test_ecod_column_by_column_is_pyods_ecod():
    from pyod.models.ecod import ECOD

    rng = np.random.default_rng(3)

    def sample(n):  # ties, a binary flag, a constant column, a heavy tail, missing values filled as the model does
        return np.column_stack([rng.normal(size=n), rng.integers(0, 2, n), np.ones(n),
                                np.round(rng.exponential(size=n), 1), rng.lognormal(0, 2, n)])

    fit, new = sample(5000), sample(1777)
    model = ECOD().fit(fit)
    for x in (fit, new):
        assert np.array_equal(ecod_scores(fit, x), model.decision_function(x))
    assert not np.array_equal(ecod_scores(fit, new), ecod_scores(new, new))  # the fit lines matter
