"""The shared robust statistics and model calibration: one rule, the same figures in NumPy and SQL."""

import duckdb
import numpy as np
import pytest

from detector import outliers, robust
from detector.declarations.models import ModelOptions
from detector.errors import ConfigError


def test_robust_z_in_numpy_and_sql_agree_and_the_floor_holds():
    values = np.array([[1.0, 2.0, 2.5, 3.0, 10.0], [5.0, 5.0, 5.0, 5.0, 5.0]]).T
    median, mad = robust.median_mad(values)
    assert median.tolist() == [2.5, 5.0] and mad.tolist() == [0.5, 0.0]
    z = robust.robust_z(np.array([4.0, 6.0]), median, mad, floor=0.1)
    assert z == pytest.approx([1.5 / (1.4826 * 0.5), 1.0 / (1.4826 * 0.1)])
    row = duckdb.connect().execute(f"""SELECT {robust.robust_z_sql('4.0', '2.5', '0.5', floor=0.1)},
                                {robust.robust_z_sql('6.0', '5.0', '0.0', floor=0.1)},
                                {robust.robust_z_sql('6.0', '5.0', '0.0', floor=0.0)},
                                {robust.mad_sql('[1.0, 2.0, 2.5, 3.0, 10.0]', '2.5')}""").fetchone()
    assert row[:2] == pytest.approx(tuple(z)) and row[2] is None and row[3] == 0.5


def test_tail_share_counts_the_score_itself():
    reference = np.arange(1.0, 100.0)  # 99 training scores
    share = outliers.tail_share(reference, np.array([1000.0, 99.0, 0.0]))
    assert share.tolist() == pytest.approx([1 / 100, 2 / 100, 1.0])


def test_an_unknown_model_is_refused_by_both_users():
    with pytest.raises(ConfigError, match="declaration_risk.unsupervised_model 'lof': choose ecod or iforest"):
        ModelOptions(unsupervised_model="lof")
    with pytest.raises(ConfigError, match="multivariate.model 'lof': choose ecod or iforest"):
        outliers.pyod_model("lof", seed=0, setting="multivariate.model")
    assert type(outliers.pyod_model("iforest", seed=0, setting="x")).__name__ == "IForest"
