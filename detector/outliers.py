"""PyOD models chosen by name, and their scores calibrated against the scores of the rows they
were fitted on, shared by the multivariate detector and the declaration scoring."""

from __future__ import annotations

import numpy as np

from detector.errors import ConfigError

MODELS = ("ecod", "iforest")


def check_model(name: str, setting: str) -> None:
    """Refuse a model name other than MODELS; `setting` names where it was given, for the message."""
    if name not in MODELS:
        raise ConfigError(f"{setting} '{name}': choose {' or '.join(MODELS)}")


def pyod_model(name: str, seed: int, setting: str):
    """An unfitted PyOD model: ECOD (no parameters) or a seeded IForest of 200 trees."""
    check_model(name, setting)
    if name == "iforest":
        from pyod.models.iforest import IForest  # imported on use: PyOD's import takes a while

        return IForest(n_estimators=200, random_state=seed, n_jobs=1)
    from pyod.models.ecod import ECOD

    _cache_ecdf_kernel()
    return ECOD()


def _cache_ecdf_kernel() -> None:
    """ECOD's Numba kernel (PyOD compiles it on first use in every process, about a second of
    CPU): compiled once and kept in Numba's cache, as the package's own kernels are."""
    from pyod.utils import stat_models

    kernel = getattr(stat_models, "ecdf_terminate_equals_inplace", None)
    if kernel is None or not hasattr(kernel, "enable_caching") or getattr(kernel, "_detector_cached", False):
        return
    try:
        kernel.enable_caching()
    except RuntimeError:  # no writable cache folder: compiled in this process, as before
        pass
    kernel._detector_cached = True


def tail_share(reference: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The share of `reference` scores at or above each score, the score itself counted:
    (above + 1) / (n + 1). Never 0, so that 1 / share is finite ('rarer than 1 in ...')."""
    ordered = np.sort(reference)
    above = len(ordered) - np.searchsorted(ordered, scores, side="left")
    return (above + 1) / (len(ordered) + 1)


def fitted_scores(name: str, seed: int, setting: str, fit: np.ndarray, *scored: np.ndarray) -> list[np.ndarray]:
    """The raw scores of each array in `scored` by the model `name` fitted on `fit` (PyOD's
    decision_function). ECOD goes through `ecod_scores`: the same numbers in a fraction of the memory."""
    if name == "ecod":
        check_model(name, setting)
        return [ecod_scores(fit, x) for x in scored]
    model = pyod_model(name, seed, setting)
    model.fit(fit)
    return [model.decision_function(x) for x in scored]


def ecod_scores(train: np.ndarray, x: np.ndarray) -> np.ndarray:
    """PyOD ECOD's decision_function for `x` of a model fitted on `train`, one column at a time.

    PyOD holds four float matrices of the size of train and x together (about 3.5 GB for 1.2M fit and
    1M scored lines of 18 features); each of its steps is column-wise but for the final row sum, so the
    columns are done one by one into a single matrix, and the numbers are PyOD's to the bit."""
    from pyod.models.ecod import skew  # PyOD's: scipy's with NaN (a constant column) as 0
    from pyod.utils.stat_models import column_ecdf

    both = np.concatenate((train, x), axis=0)
    skewness = np.sign(skew(both, axis=0))
    out = np.empty(both.shape)
    for j in range(both.shape[1]):
        col = both[:, [j]]
        u_l = -1 * np.log(column_ecdf(col))
        u_r = -1 * np.log(column_ecdf(-col))
        u_skew = u_l * -1 * np.sign(skewness[[j]] - 1) + u_r * np.sign(skewness[[j]] + 1)
        out[:, [j]] = np.maximum(u_skew, np.maximum(u_l, u_r))
    return out.sum(axis=1)[-x.shape[0]:].ravel()
