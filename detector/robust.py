"""Robust centre and spread: the median, and the median absolute deviation (MAD) scaled to the
standard deviation it estimates for normal data.

One definition for NumPy and SQL callers. Every caller names the floor of the spread it divides
by: a flat history (MAD 0) would otherwise make any change infinitely unusual, and what counts as
flat depends on the measure (a log ratio, a model feature).
"""

from __future__ import annotations

import numpy as np

MAD_TO_SIGMA = 1.4826  # MAD x this = standard deviation, for normal data


def median_mad(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and MAD of each column of `rows`, NaN ignored."""
    median = np.nanmedian(rows, axis=0)
    return median, np.nanmedian(np.abs(rows - median), axis=0)


def sigma(mad, floor: float):
    """The spread a robust z divides by: the MAD, at least `floor`, scaled to a standard deviation."""
    return MAD_TO_SIGMA * np.fmax(mad, floor)


def robust_z(value, median, mad, floor: float):
    """How many robust standard deviations `value` lies from `median` (NumPy arrays or scalars)."""
    return (value - median) / sigma(mad, floor)


def sigma_sql(mad: str, floor: float) -> str:
    """sigma as SQL over the MAD expression given."""
    return f"({MAD_TO_SIGMA} * greatest({mad}, {floor!r}))"


def robust_z_sql(value: str, median: str, mad: str, floor: float) -> str:
    """robust_z as SQL over the expressions given; floor 0: NULL where the MAD is 0 (a flat history)."""
    if floor > 0:
        return f"(({value}) - ({median})) / {sigma_sql(mad, floor)}"
    return f"CASE WHEN ({mad}) > 0 THEN (({value}) - ({median})) / ({MAD_TO_SIGMA} * ({mad})) END"


def mad_sql(values: str, median: str) -> str:
    """SQL for the MAD of a list expression `values` (NULLs removed) about its `median`."""
    return f"list_median(list_transform({values}, lambda x: abs(x - {median})))"
