"""Calendar arithmetic for M&S terms (R2–R4): month steps with explicit overflow rules. Pure."""

from __future__ import annotations

import calendar
from datetime import date, timedelta


def _shift(d: date, months: int) -> tuple[int, int]:
    index = d.year * 12 + (d.month - 1) + months
    return index // 12, index % 12 + 1


def anniversary(start: date, months: int) -> date:
    """The same day of the month, `months` later.

    - R2/R3/R4: terms run a whole number of months from a start day.
    - When that day does not exist in the target month, roll to the first day of the next
      month (2020-02-29 + 12 → 2021-03-01; 2023-01-31 + 1 → 2023-03-01), so that
      `anniversary(start, 12) - 1 day` is the last day of a full term (2021-02-28).
    """
    year, month = _shift(start, months)
    last = calendar.monthrange(year, month)[1]
    if start.day <= last:
        return date(year, month, start.day)
    return date(year, month, last) + timedelta(days=1)


def months_before(d: date, months: int) -> date:
    """The same day of the month, `months` earlier.

    - R3: the renewal window opens two calendar months before the coverage end.
    - When that day does not exist in the target month, clamp to the month's last day
      (2023-04-30 - 2 → 2023-02-28; 2024-04-30 - 2 → 2024-02-29).
    """
    year, month = _shift(d, -months)
    return date(year, month, min(d.day, calendar.monthrange(year, month)[1]))
