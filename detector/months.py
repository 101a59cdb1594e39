"""Calendar months: the unit every table, window and statistic of the product counts in.

Both the warehouse side (baselines, runner, reports) and the detectors import from here, so
that time arithmetic has one definition and no module imports another only for a date helper.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from detector.errors import DetectorError

_MONTH = re.compile(r"^(\d{4})-(\d{2})(?:-(\d{2}))?$")


def months_back(d: dt.date, n: int) -> dt.date:
    """The first day of the month `n` months before `d` (n >= 0)."""
    total = d.year * 12 + (d.month - 1) - n
    return dt.date(total // 12, total % 12 + 1, 1)


def months_ahead(d: dt.date, n: int) -> dt.date:
    """The first day of the month `n` months after `d` (n >= 0)."""
    return months_back(d, -n)


def months_between(first: dt.date, last: dt.date) -> int:
    """Months from `first` to `last` (0 for the same month; negative when last is earlier)."""
    return (last.year - first.year) * 12 + last.month - first.month


def parse_month(value: str | dt.date | None, what: str = "month") -> dt.date | None:
    """'2025-03', '2025-03-01' or a date -> the first day of that month; None or '' -> None."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, dt.date):
        return value.replace(day=1)
    m = _MONTH.match(str(value).strip())
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise DetectorError(f"{what} {str(value)!r} is not a month: expected YYYY-MM, like 2025-03")
    return dt.date(int(m.group(1)), int(m.group(2)), 1)


@dataclass(frozen=True)
class Window:
    """Months scored, first days of month, inclusive at both ends."""

    start: dt.date
    end: dt.date

    def __post_init__(self):
        if self.start.day != 1 or self.end.day != 1:
            raise ValueError("window bounds must be first days of months")
        if self.start > self.end:
            raise ValueError(f"window start {self.start} is after its end {self.end}")
