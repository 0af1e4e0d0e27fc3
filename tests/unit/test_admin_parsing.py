"""`whole_number`: what the admin API and the console accept as an id, a limit, an offset, a
page or a count (SPEC §6; bad input is a 4xx, never a 500)."""

from __future__ import annotations

import pytest

from activation.admin.parsing import whole_number


@pytest.mark.parametrize(
    ("raw", "max_digits", "expected"),
    [
        ("7", 18, 7),
        ("0", 18, 0),
        ("007", 18, 7),
        ("1" * 18, 18, int("1" * 18)),
        ("1" * 19, 18, None),  # beyond PostgreSQL's bigint
        ("1234567890", 9, None),
        ("9" * 5000, 18, None),  # int() refuses more than 4,300 digits
        ("²", 18, None),  # str.isdigit() says yes, int() raises
        ("٣", 18, None),  # an Arabic-Indic three: int() takes it, an id does not
        ("-1", 18, None),
        ("+1", 18, None),
        (" 1", 18, None),
        ("1_000", 18, None),
        ("", 18, None),
    ],
)
def test_whole_number_is_ascii_digits_only(raw: str, max_digits: int, expected: int | None) -> None:
    assert whole_number(raw, max_digits) == expected
