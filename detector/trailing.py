"""Trailing-window statistics of many monthly series at once, on a dense [series, month] matrix.

The shared baselines need eight sliding medians, two median absolute deviations, maxima, sums
and counts over windows of earlier months, for every corridor of every HS code. As SQL window
functions over millions of corridor-months this was most of a detector run; here every series
has the same months, so counts, sums and maxima are a few array operations on shifted copies of
the matrix, and the sliding medians keep one sorted window per series that each month updates
(one value out, one in), compiled with Numba.

NaN is a missing month (SQL NULL): it is skipped by every statistic, as SQL aggregates skip
NULL. Medians interpolate the two middle values as DuckDB's `median` does, so these figures equal
the SQL window functions they replace (tests check them against DuckDB).
"""

from __future__ import annotations

import functools

import numba
import numpy as np

from detector.robust import robust_z


@numba.njit(cache=True, nogil=True)
def _insert(buf, k, x):
    """Insert x into the sorted buf[:k]."""
    p = k
    while p > 0 and buf[p - 1] > x:
        buf[p] = buf[p - 1]
        p -= 1
    buf[p] = x


@numba.njit(cache=True, nogil=True)
def _remove(buf, k, x):
    """Remove one value equal to x from the sorted buf[:k]."""
    p = 0
    while buf[p] != x:
        p += 1
    for q in range(p, k - 1):
        buf[q] = buf[q + 1]


@numba.njit(cache=True, nogil=True)
def _median_of_sorted(buf, k):
    """DuckDB's median of k sorted values: the two middle ones interpolated."""
    lo = buf[(k - 1) // 2]
    hi = buf[k // 2]
    return lo + (hi - lo) * 0.5


@numba.njit(cache=True, nogil=True)
def _mad_of_sorted(buf, k, med):
    """Median of |x - med| over the sorted buf[:k]: the deviations are two sorted runs (left of
    the median, read outwards, and right of it), merged only up to their middle."""
    want_hi = k // 2
    right = 0
    while right < k and buf[right] < med:
        right += 1
    left = right - 1
    lo = hi = 0.0
    for rank in range(want_hi + 1):
        if left >= 0 and (right >= k or med - buf[left] <= buf[right] - med):
            d = med - buf[left]
            left -= 1
        else:
            d = buf[right] - med
            right += 1
        if rank == (k - 1) // 2:
            lo = d
        hi = d
    return lo + (hi - lo) * 0.5


@numba.njit(cache=True, nogil=True)
def rolling_median(a, back, to, with_mad):
    """Median (and median absolute deviation about it) of the values present in months
    t-back .. t-to of each series, NaN when there are none."""
    n, months = a.shape
    med = np.full((n, months), np.nan)
    mad = np.full((n, months), np.nan)
    buf = np.empty(back - to + 1)
    for i in range(n):
        k = 0
        for t in range(months):
            incoming = t - to
            outgoing = t - back - 1
            if outgoing >= 0 and not np.isnan(a[i, outgoing]):
                _remove(buf, k, a[i, outgoing])
                k -= 1
            if incoming >= 0 and not np.isnan(a[i, incoming]):
                _insert(buf, k, a[i, incoming])
                k += 1
            if k > 0:
                m = _median_of_sorted(buf, k)
                med[i, t] = m
                if with_mad:
                    mad[i, t] = _mad_of_sorted(buf, k, m)
    return med, mad


def shifted(a: np.ndarray, k: int, fill: float = np.nan) -> np.ndarray:
    """Each month's value of k months before (`fill` before the first month)."""
    out = np.full_like(a, fill)
    if k < a.shape[1]:
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


def window_max(a: np.ndarray, back: int, to: int) -> np.ndarray:
    return functools.reduce(np.fmax, (shifted(a, k) for k in range(to, back + 1)))


@numba.njit(cache=True, nogil=True)
def _window_total(a, back, to):
    """Sum and count of the values present in months t-back .. t-to, added nearest month first
    (one pass instead of a shifted copy of the whole grid per month of the window)."""
    n, months = a.shape
    total = np.zeros((n, months))
    count = np.zeros((n, months), np.int64)
    for i in range(n):
        for t in range(months):
            s, c = 0.0, 0
            for k in range(to, back + 1):
                if t - k >= 0 and not np.isnan(a[i, t - k]):
                    s += a[i, t - k]
                    c += 1
            total[i, t], count[i, t] = s, c
    return total, count


def window_sum(a: np.ndarray, back: int, to: int) -> np.ndarray:
    """Sum of the values present in months t-back .. t-to (NaN when none, as SQL's sum)."""
    total, n = _window_total(a, back, to)
    return np.where(n > 0, total, np.nan)


def window_mean(a: np.ndarray, back: int, to: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the values present in months t-back .. t-to (NaN when none), and their count."""
    total, n = _window_total(a, back, to)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / n, np.nan), n


STAT_NAMES = (
    "lv", "lw", "lv_med", "lv_mad", "lw_med", "lw_mad", "usd_med", "kg_med", "n_hist", "kg_med_prior_year",
    "usd_med_prior_year", "kg_last_year", "usd_last_year", "usd_max_before", "usd_sum_before", "last_trade_before",
    "n_reported_before", "usd_avg3", "n3", "kg_avg3", "z_value", "z_weight", "usd_expected", "kg_expected",
)


def series_stats(usd: np.ndarray, kg: np.ndarray) -> dict[str, np.ndarray]:
    """Every trailing statistic the detectors read, per series and month, from the monthly value
    (USD) and weight (kg) matrices. Each month's statistics use earlier months only."""
    with np.errstate(invalid="ignore", divide="ignore"):
        lv = np.log(1 + usd)
        lw = np.where(usd == 0, np.log(1.0), np.where(kg > 0, np.log(1 + kg), np.nan))
    out: dict[str, np.ndarray] = {"lv": lv, "lw": lw}
    n_usd = window_count(usd, 12, 1)
    medians = {"usd_med": rolling_median(usd, 12, 1, False)[0], "kg_med": rolling_median(kg, 12, 1, False)[0]}
    medians["lv_med"], medians["lv_mad"] = rolling_median(lv, 12, 1, True)
    medians["lw_med"], medians["lw_mad"] = rolling_median(lw, 12, 1, True)
    out.update(medians)
    out["n_hist"] = n_usd  # lv is present where usd is
    # the year before the trailing one (months t-24 .. t-13) is the trailing year of month t-12
    out["kg_med_prior_year"] = shifted(medians["kg_med"], 12)
    out["usd_med_prior_year"] = shifted(medians["usd_med"], 12)
    out["kg_last_year"] = window_max(kg, 13, 11)  # the same season last year
    out["usd_last_year"] = window_max(usd, 13, 11)
    count_before = shifted(np.cumsum(~np.isnan(usd), axis=1, dtype=np.int64), 1, 0)
    out["usd_max_before"] = shifted(np.fmax.accumulate(usd, axis=1), 1, np.nan)
    out["usd_sum_before"] = np.where(count_before > 0, shifted(np.nancumsum(usd, axis=1), 1, np.nan), np.nan)
    traded = np.where(usd > 0, np.arange(usd.shape[1]), -1)
    out["last_trade_before"] = shifted(np.maximum.accumulate(traded, axis=1), 1, -1)  # month index, -1: never
    out["n_reported_before"] = shifted(np.cumsum(~np.isnan(lv), axis=1, dtype=np.int64), 1, 0)
    out["usd_avg3"], out["n3"] = window_mean(usd, 2, 0)
    out["kg_avg3"] = window_mean(kg, 2, 0)[0]
    # robust z against the trailing year; MAD floored so that flat series are not infinitely
    # sensitive (0.15 in log units is about +-16%)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["z_value"] = robust_z(lv, medians["lv_med"], medians["lv_mad"], 0.15)
        out["z_weight"] = robust_z(lw, medians["lw_med"], medians["lw_mad"], 0.15)
    # the highest of the usual levels: trailing year, the same season last year, the year before
    # (all are >= 0; fmax skips NaN, and the last 0 stands for none known)
    out["usd_expected"] = functools.reduce(np.fmax, (medians["usd_med"], out["usd_last_year"],
                                                     out["usd_med_prior_year"], 0.0))
    out["kg_expected"] = functools.reduce(np.fmax, (medians["kg_med"], out["kg_last_year"],
                                                    out["kg_med_prior_year"], 0.0))
    return out
