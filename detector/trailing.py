"""Trailing-window statistics of many monthly series at once, on a dense [series, month] matrix.

The shared baselines need eight sliding medians, two median absolute deviations, maxima, sums
and counts over windows of earlier months, for every corridor of every HS code. As SQL window
functions over millions of corridor-months this was most of a detector run; here every series
has the same months, so a window is a view of the matrix, a median is one small sort along the
window axis, and the whole computation is a handful of array operations per block of series.

NaN is a missing month (SQL NULL): it is skipped by every statistic, as SQL aggregates skip
NULL. Medians interpolate the two middle values as DuckDB's `median` does, so these figures equal
the SQL window functions they replace (tests check them against DuckDB).
"""

from __future__ import annotations

import functools

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# Rows of one block: bounds the window copies to about a hundred MB whatever the number of series.
BLOCK_CELLS = 3_000_000


def windows(a: np.ndarray, back: int, to: int) -> np.ndarray:
    """For each month t, the values of months t-back .. t-to (NaN before the first month), as a
    read-only [series, month, back-to+1] view."""
    n = a.shape[0]
    padded = np.concatenate([np.full((n, back), np.nan), a], axis=1)
    return sliding_window_view(padded, back - to + 1, axis=1)[:, : a.shape[1]]


def _middle(sorted_w: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The median of each sorted window whose first `k` entries are its values (NaN after)."""
    width = sorted_w.shape[-1]
    flat = np.ascontiguousarray(sorted_w).reshape(-1)
    start = np.arange(0, flat.size, width).reshape(k.shape)
    lo = flat[start + np.maximum((k - 1) // 2, 0)]
    hi = flat[start + np.minimum(k // 2, width - 1)]
    return np.where(k > 0, lo + (hi - lo) * 0.5, np.nan)


def shifted(a: np.ndarray, k: int) -> np.ndarray:
    """Each month's value of k months before (NaN before the first month)."""
    out = np.full_like(a, np.nan)
    out[:, k:] = a[:, : a.shape[1] - k]
    return out


def window_count(a: np.ndarray, back: int, to: int) -> np.ndarray:
    """Values present in months t-back .. t-to."""
    present = np.concatenate([np.zeros((a.shape[0], 1), np.int64),
                              np.cumsum(~np.isnan(a), axis=1, dtype=np.int64)], axis=1)
    t = np.arange(a.shape[1])
    upper = present[:, np.clip(t - to + 1, 0, None)]
    lower = present[:, np.clip(t - back, 0, None)]
    return upper - lower


def window_median(a: np.ndarray, back: int, to: int, count: np.ndarray) -> np.ndarray:
    """Median of months t-back .. t-to; `count` is window_count(a, back, to)."""
    return _middle(np.sort(windows(a, back, to), axis=-1), count)  # NaN sorts last


def window_max(a: np.ndarray, back: int, to: int) -> np.ndarray:
    return functools.reduce(np.fmax, (shifted(a, k) for k in range(to, back + 1)))


def window_mean(a: np.ndarray, back: int, to: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the values present in months t-back .. t-to (NaN when none), and their count."""
    total = functools.reduce(np.add, (np.nan_to_num(shifted(a, k)) for k in range(to, back + 1)))
    n = window_count(a, back, to)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / n, np.nan), n


def _before(a: np.ndarray, fill) -> np.ndarray:
    """Each month's value moved to the next month: what was known before month t."""
    out = np.empty_like(a)
    out[:, 0] = fill
    out[:, 1:] = a[:, :-1]
    return out


def series_stats(usd: np.ndarray, kg: np.ndarray) -> dict[str, np.ndarray]:
    """Every trailing statistic the detectors read, per series and month, from the monthly value
    (USD) and weight (kg) matrices. Each month's statistics use earlier months only."""
    with np.errstate(invalid="ignore", divide="ignore"):
        lv = np.log(1 + usd)
        lw = np.where(usd == 0, np.log(1.0), np.where(kg > 0, np.log(1 + kg), np.nan))
    out: dict[str, np.ndarray] = {"lv": lv, "lw": lw}
    n_usd, n_lw, n_kg = window_count(usd, 12, 1), window_count(lw, 12, 1), window_count(kg, 12, 1)
    medians = {name: np.empty_like(usd) for name in ("lv_med", "lv_mad", "lw_med", "lw_mad", "usd_med", "kg_med")}
    block = max(1, BLOCK_CELLS // max(1, usd.shape[1] * 12))
    for i in range(0, usd.shape[0], block):
        rows = slice(i, i + block)
        s = np.sort(windows(usd[rows], 12, 1), axis=-1)
        medians["usd_med"][rows] = _middle(s, n_usd[rows])
        # log(1 + x) keeps the order: the sorted value windows give the sorted log windows
        with np.errstate(invalid="ignore"):
            lv_sorted = np.log(1 + s)
        for name, w, k in (("lv", lv_sorted, n_usd[rows]), ("lw", np.sort(windows(lw[rows], 12, 1), axis=-1), n_lw[rows])):
            med = _middle(w, k)
            medians[f"{name}_med"][rows] = med
            medians[f"{name}_mad"][rows] = _middle(np.sort(np.abs(w - med[..., None]), axis=-1), k)
        medians["kg_med"][rows] = window_median(kg[rows], 12, 1, n_kg[rows])
    out.update(medians)
    out["n_hist"] = n_usd  # lv is present where usd is
    # the year before the trailing one (months t-24 .. t-13) is the trailing year of month t-12
    out["kg_med_prior_year"] = windows(medians["kg_med"], 12, 12)[..., 0]
    out["usd_med_prior_year"] = windows(medians["usd_med"], 12, 12)[..., 0]
    out["kg_last_year"] = window_max(kg, 13, 11)  # the same season last year
    out["usd_last_year"] = window_max(usd, 13, 11)
    count_before = _before(np.cumsum(~np.isnan(usd), axis=1, dtype=np.int64), 0)
    out["usd_max_before"] = _before(np.fmax.accumulate(usd, axis=1), np.nan)
    out["usd_sum_before"] = np.where(count_before > 0, _before(np.nancumsum(usd, axis=1), np.nan), np.nan)
    traded = np.where(usd > 0, np.arange(usd.shape[1]), -1)
    out["last_trade_before"] = _before(np.maximum.accumulate(traded, axis=1), -1)  # month index, -1: never
    out["n_reported_before"] = _before(np.cumsum(~np.isnan(lv), axis=1, dtype=np.int64), 0)
    out["usd_avg3"], out["n3"] = window_mean(usd, 2, 0)
    out["kg_avg3"] = window_mean(kg, 2, 0)[0]
    # robust z against the trailing year; MAD floored so that flat series are not infinitely
    # sensitive (0.15 in log units is about +-16%)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["z_value"] = (lv - medians["lv_med"]) / (1.4826 * np.fmax(medians["lv_mad"], 0.15))
        out["z_weight"] = (lw - medians["lw_med"]) / (1.4826 * np.fmax(medians["lw_mad"], 0.15))
    # the highest of the usual levels: trailing year, the same season last year, the year before
    out["usd_expected"] = np.fmax(np.fmax(np.nan_to_num(medians["usd_med"]), np.nan_to_num(out["usd_last_year"])),
                                  np.nan_to_num(out["usd_med_prior_year"]))
    out["kg_expected"] = np.fmax(np.fmax(np.nan_to_num(medians["kg_med"]), np.nan_to_num(out["kg_last_year"])),
                                 np.nan_to_num(out["kg_med_prior_year"]))
    return out
