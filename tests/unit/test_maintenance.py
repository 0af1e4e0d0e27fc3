"""M&S rules (R1–R6) with the seeds' worked examples."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from activation.licensing.maintenance import (
    MsQuote,
    QuoteKind,
    can_cancel_auto_renew,
    due_reminder,
    has_ms,
    initial_coverage_end,
    is_covered,
    lease_active,
    ms_status,
    quote,
    renewal_window_opens,
    trial_expired,
)
from activation.licensing.model import Edition, License, LicenseKind, MsStatus

CT = date(2019, 8, 31)  # seed: purchased 2018-09-01, covered through 2019-08-31


@pytest.mark.parametrize(
    ("purchased_on", "expected"),
    [
        (date(2018, 9, 1), date(2019, 8, 31)),
        (date(2023, 3, 1), date(2024, 2, 29)),
        (date(2020, 2, 29), date(2021, 2, 28)),
        (date(2023, 1, 1), date(2023, 12, 31)),
    ],
)
def test_r2_initial_coverage_is_twelve_months(purchased_on: date, expected: date) -> None:
    assert initial_coverage_end(purchased_on) == expected


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (LicenseKind.PERPETUAL, True),
        (LicenseKind.LEASE, False),
        (LicenseKind.TRIAL, False),
        (LicenseKind.FREE, False),
    ],
)
def test_r2_only_perpetual_has_ms(kind: LicenseKind, expected: bool) -> None:
    assert has_ms(kind) is expected


def test_r3_window_opens_two_months_before_coverage_end() -> None:
    assert renewal_window_opens(CT) == date(2019, 7, 1)


@pytest.mark.parametrize(
    ("on", "expected"),
    [
        (date(2019, 6, 30), MsQuote(QuoteKind.TOO_EARLY, None, None, date(2019, 7, 1))),
        (
            date(2019, 7, 1),
            MsQuote(QuoteKind.RENEWAL, Decimal("0.5"), date(2020, 8, 31), date(2019, 7, 1)),
        ),
        (
            date(2019, 8, 31),
            MsQuote(QuoteKind.RENEWAL, Decimal("0.5"), date(2020, 8, 31), date(2019, 7, 1)),
        ),
        (
            date(2019, 9, 1),
            MsQuote(QuoteKind.REINSTATEMENT, Decimal("0.8"), date(2020, 8, 31), date(2019, 9, 1)),
        ),
        (
            date(2019, 11, 1),
            MsQuote(QuoteKind.REINSTATEMENT, Decimal("0.8"), date(2020, 10, 31), date(2019, 11, 1)),
        ),
    ],
)
def test_r3_r4_quote_renewal_or_reinstatement(on: date, expected: MsQuote) -> None:
    assert quote(CT, on) == expected


def test_r3_renewal_of_leap_day_coverage_stays_continuous() -> None:
    # covered through 2024-02-29 → next term starts 2024-03-01, ends 2025-02-28
    q = quote(date(2024, 2, 29), date(2024, 1, 2))
    assert q.kind is QuoteKind.RENEWAL
    assert q.covered_through_after == date(2025, 2, 28)
    assert q.first_allowed_on == date(2024, 1, 1)


@pytest.mark.parametrize(
    ("kind", "covered_through", "today", "expected"),
    [
        (LicenseKind.PERPETUAL, CT, CT - timedelta(days=61), MsStatus.PROTECTED),
        (LicenseKind.PERPETUAL, CT, CT - timedelta(days=60), MsStatus.EXPIRING_SOON),
        (LicenseKind.PERPETUAL, CT, CT, MsStatus.EXPIRING_SOON),
        (LicenseKind.PERPETUAL, CT, CT + timedelta(days=1), MsStatus.EXPIRED),
        (LicenseKind.PERPETUAL, None, CT, MsStatus.NONE),
        (LicenseKind.LEASE, CT, CT, MsStatus.NONE),
        (LicenseKind.TRIAL, None, CT, MsStatus.NONE),
        (LicenseKind.FREE, None, CT, MsStatus.NONE),
    ],
)
def test_r6_ms_status_boundaries(
    kind: LicenseKind, covered_through: date | None, today: date, expected: MsStatus
) -> None:
    assert ms_status(kind, covered_through, today) is expected


@pytest.mark.parametrize(
    ("kind", "covered_through", "today", "expected"),
    [
        (LicenseKind.PERPETUAL, CT, CT, True),
        (LicenseKind.PERPETUAL, CT, CT + timedelta(days=1), False),
        (LicenseKind.PERPETUAL, None, CT, False),
        (LicenseKind.LEASE, CT, CT, False),
    ],
)
def test_r2_is_covered_through_last_day(
    kind: LicenseKind, covered_through: date | None, today: date, expected: bool
) -> None:
    lic = License(
        key="K",
        product="smartermail",
        kind=kind,
        edition=Edition.PROFESSIONAL,
        purchased_on=date(2018, 9, 1),
        ms_covered_through=covered_through,
    )
    assert is_covered(lic, today) is expected


@pytest.mark.parametrize(
    ("days_before", "expected"),
    [(30, True), (16, True), (15, True), (14, False), (0, False), (-3, False)],
)
def test_r5_cancel_auto_renew_up_to_15_days_before(days_before: int, expected: bool) -> None:
    assert can_cancel_auto_renew(CT, CT - timedelta(days=days_before)) is expected


LAPSE = CT + timedelta(days=1)


@pytest.mark.parametrize(
    ("today", "sent", "expected"),
    [
        (CT - timedelta(days=61), frozenset(), None),  # nothing due yet
        (CT - timedelta(days=60), frozenset(), 60),
        (CT - timedelta(days=60), frozenset({60}), None),  # at most once
        (CT - timedelta(days=45), frozenset({60}), None),
        (CT - timedelta(days=45), frozenset(), 60),  # late, but the most urgent due
        (CT - timedelta(days=30), frozenset({60}), 30),
        (CT - timedelta(days=10), frozenset(), 14),  # 60 and 30 missed: skipped, no burst
        (CT - timedelta(days=10), frozenset({14}), None),
        (CT - timedelta(days=7), frozenset({60, 30, 14}), 7),
        (CT - timedelta(days=1), frozenset({7}), 1),
        (CT, frozenset({1}), None),  # last covered day: no reminder of its own
        (LAPSE, frozenset({1}), 0),  # the day it lapses
        (LAPSE, frozenset({0}), None),
        (LAPSE + timedelta(days=1), frozenset(), 0),  # worker down on lapse day
        (LAPSE + timedelta(days=2), frozenset(), None),  # too late: never sent
        (CT - timedelta(days=30), frozenset({14}), None),  # a more urgent one went out
    ],
)
def test_r6_due_reminder(today: date, sent: frozenset[int], expected: int | None) -> None:
    assert due_reminder(CT, today, sent) == expected


def test_r6_due_reminder_custom_offsets() -> None:
    assert due_reminder(CT, CT - timedelta(days=20), frozenset(), offsets=(21, 3)) == 21
    assert due_reminder(CT, CT - timedelta(days=20), frozenset({21}), offsets=(21, 3)) is None


@pytest.mark.parametrize(
    ("day", "expected"),
    [(1, False), (30, False), (31, True), (45, True)],
)
def test_r1_trial_expires_after_trial_days(day: int, expected: bool) -> None:
    issued = date(2026, 1, 1)
    assert trial_expired(issued, 30, issued + timedelta(days=day - 1)) is expected


@pytest.mark.parametrize(
    ("ends_on", "today", "expected"),
    [
        (None, date(2030, 1, 1), True),
        (date(2026, 6, 30), date(2026, 6, 30), True),
        (date(2026, 6, 30), date(2026, 7, 1), False),
    ],
)
def test_r1_lease_active_through_last_day(
    ends_on: date | None, today: date, expected: bool
) -> None:
    assert lease_active(ends_on, today) is expected
