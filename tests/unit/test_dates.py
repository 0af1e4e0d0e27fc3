"""Month arithmetic behind M&S terms (R2–R4)."""

from __future__ import annotations

from datetime import date

import pytest

from activation.licensing.dates import anniversary, months_before


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (date(2018, 9, 1), 12, date(2019, 9, 1)),
        (date(2020, 2, 29), 12, date(2021, 3, 1)),
        (date(2020, 2, 29), 48, date(2024, 2, 29)),
        (date(2023, 1, 31), 1, date(2023, 3, 1)),
        (date(2024, 1, 31), 1, date(2024, 3, 1)),
        (date(2023, 3, 31), 1, date(2023, 5, 1)),
        (date(2023, 12, 15), 1, date(2024, 1, 15)),
        (date(2023, 11, 30), 3, date(2024, 3, 1)),
        (date(2023, 5, 10), 0, date(2023, 5, 10)),
    ],
)
def test_r2_anniversary_rolls_missing_day_to_next_month(
    start: date, months: int, expected: date
) -> None:
    assert anniversary(start, months) == expected


@pytest.mark.parametrize(
    ("d", "months", "expected"),
    [
        (date(2019, 9, 1), 2, date(2019, 7, 1)),
        (date(2023, 4, 30), 2, date(2023, 2, 28)),
        (date(2024, 4, 30), 2, date(2024, 2, 29)),
        (date(2024, 1, 15), 2, date(2023, 11, 15)),
        (date(2023, 5, 31), 1, date(2023, 4, 30)),
        (date(2024, 3, 1), 2, date(2024, 1, 1)),
    ],
)
def test_r3_months_before_clamps_to_month_end(d: date, months: int, expected: date) -> None:
    assert months_before(d, months) == expected
