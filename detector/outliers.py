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
