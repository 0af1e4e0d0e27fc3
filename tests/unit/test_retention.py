"""Which monthly partitions of the activation history retention drops (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fraud.retention import expired, month_end


@pytest.mark.parametrize(
    ("name", "end"),
    [
        ("activation_events_2026_01", datetime(2026, 2, 1, tzinfo=UTC)),
        ("activation_events_2026_12", datetime(2027, 1, 1, tzinfo=UTC)),
        ("activation_events_default", None),
        ("activation_events_2026_1", None),
    ],
)
def test_month_end_from_the_partition_name(name: str, end: datetime | None) -> None:
    assert month_end(name) == end


def test_a_month_is_dropped_only_once_all_of_it_is_older_than_the_cutoff() -> None:
    names = ["activation_events_default", "activation_events_2026_02", "activation_events_2026_01"]
    assert expired(names, datetime(2026, 2, 28, 23, 59, tzinfo=UTC)) == [
        "activation_events_2026_01"
    ]
    assert expired(names, datetime(2026, 3, 1, tzinfo=UTC)) == [
        "activation_events_2026_01",
        "activation_events_2026_02",
    ]
    assert expired(names, datetime(2026, 1, 31, 23, 59, tzinfo=UTC)) == []
