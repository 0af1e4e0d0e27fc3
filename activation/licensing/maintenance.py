"""Maintenance & Support rules (R1–R6): terms, renewal quotes, status, reminders. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from enum import StrEnum

from activation.licensing.dates import anniversary, months_before
from activation.licensing.model import License, LicenseKind, MsStatus

ONE_DAY = timedelta(days=1)
RENEWAL_RATIO = Decimal("0.5")
REINSTATEMENT_RATIO = Decimal("0.8")
EXPIRING_SOON_DAYS = 60
AUTO_RENEW_CANCEL_DAYS = 15
REMINDER_OFFSETS_DAYS: tuple[int, ...] = (60, 30, 14, 7, 1, 0)


class QuoteKind(StrEnum):
    RENEWAL = "renewal"
    REINSTATEMENT = "reinstatement"
    TOO_EARLY = "too_early"


@dataclass(frozen=True, slots=True)
class MsQuote:
    """What buying M&S on a given day does: price as a ratio of the new product price."""

    kind: QuoteKind
    price_ratio: Decimal | None
    covered_through_after: date | None
    first_allowed_on: date | None


def initial_coverage_end(purchased_on: date) -> date:
    """Last covered day of the M&S included with a new purchase.

    - R2: 12 months of M&S, stored as the last covered day (2018-09-01 → 2019-08-31;
      2023-03-01 → 2024-02-29; 2020-02-29 → 2021-02-28).
    """
    return anniversary(purchased_on, 12) - ONE_DAY


def has_ms(kind: LicenseKind) -> bool:
    """Whether a license kind carries M&S at all.

    - R1/R2: only perpetual licenses have M&S; lease, trial and free have none.
    """
    return kind is LicenseKind.PERPETUAL


def renewal_window_opens(covered_through: date) -> date:
    """First day a renewal is accepted.

    - R3: two calendar months before the coverage end (the day after the last covered day):
      covered through 2019-08-31 → renewable from 2019-07-01.
    """
    return months_before(covered_through + ONE_DAY, 2)


def quote(covered_through: date, on: date) -> MsQuote:
    """Which of renewal / reinstatement applies on `on`, its price ratio and new coverage end.

    - R3: before the window opens → too early, naming the first allowed day.
    - R3: from the window opening through the last covered day → renewal at 50%, extending
      12 months from the current end (2019-08-31 → 2020-08-31), so coverage is continuous.
    - R4: after the last covered day → reinstatement at 80%, 12 months from `on`
      (2019-11-01 → 2020-10-31).
    """
    opens = renewal_window_opens(covered_through)
    if on < opens:
        return MsQuote(QuoteKind.TOO_EARLY, None, None, opens)
    if on <= covered_through:
        new_end = anniversary(covered_through + ONE_DAY, 12) - ONE_DAY
        return MsQuote(QuoteKind.RENEWAL, RENEWAL_RATIO, new_end, opens)
    return MsQuote(QuoteKind.REINSTATEMENT, REINSTATEMENT_RATIO, anniversary(on, 12) - ONE_DAY, on)


def ms_status(kind: LicenseKind, covered_through: date | None, today: date) -> MsStatus:
    """The M&S flag shown for a license.

    - R6: `none` for kinds without M&S (or no coverage recorded);
    - R6: `expired` once today is after the last covered day;
    - R6: `expiring_soon` while covered with 60 days or fewer left (0 on the last day);
    - R6: `protected` while covered with more than 60 days left.
    """
    if not has_ms(kind) or covered_through is None:
        return MsStatus.NONE
    if today > covered_through:
        return MsStatus.EXPIRED
    if (covered_through - today).days <= EXPIRING_SOON_DAYS:
        return MsStatus.EXPIRING_SOON
    return MsStatus.PROTECTED


def is_covered(license: License, today: date) -> bool:
    """Whether M&S covers `today`.

    - R2/R7: a perpetual license is covered through its last covered day, inclusive.
    """
    return (
        has_ms(license.kind)
        and license.ms_covered_through is not None
        and today <= license.ms_covered_through
    )


def can_cancel_auto_renew(covered_through: date, on: date) -> bool:
    """Whether auto-renewal may still be cancelled.

    - R5: allowed up to 15 days before the last covered day (inclusive), refused after.
    """
    return on <= covered_through - timedelta(days=AUTO_RENEW_CANCEL_DAYS)


def reminder_date(covered_through: date, offset: int) -> date:
    """The day a reminder is due.

    - R6: `offset` days before the last covered day; offset 0 is the day it lapses, i.e.
      the day after the last covered day.
    """
    if offset == 0:
        return covered_through + ONE_DAY
    return covered_through - timedelta(days=offset)


def due_reminder(
    covered_through: date,
    today: date,
    already_sent: frozenset[int],
    offsets: Sequence[int] = REMINDER_OFFSETS_DAYS,
) -> int | None:
    """The reminder offset to send today, if any.

    - R6: each reminder is sent at most once.
    - Only the most urgent reminder whose day has come is a candidate; if it (or any more
      urgent one) was already sent, nothing is due. Missed earlier reminders are skipped,
      never sent late in a burst.
    - Nothing is due once today is more than 1 day past the lapse day (a worker that was
      down on the lapse day still sends it the next day, never later).
    """
    if today > reminder_date(covered_through, 0) + ONE_DAY:
        return None
    due = [o for o in offsets if reminder_date(covered_through, o) <= today]
    if not due:
        return None
    most_urgent = max(due, key=lambda o: reminder_date(covered_through, o))
    urgency = reminder_date(covered_through, most_urgent)
    if any(reminder_date(covered_through, o) >= urgency for o in already_sent):
        return None
    return most_urgent


def trial_expired(purchased_on: date, trial_days: int, today: date) -> bool:
    """Whether a trial is over.

    - R1: a trial issued on day 1 runs `trial_days` days; on day `trial_days + 1` it is
      expired (day 30 of a 30-day trial valid, day 31 expired).
    """
    return today >= purchased_on + timedelta(days=trial_days)


def lease_active(lease_ends_on: date | None, today: date) -> bool:
    """Whether a lease is active.

    - R1: open-ended (no end date) or today is on or before the last day of the lease.
    """
    return lease_ends_on is None or today <= lease_ends_on
