"""The outbox's vocabulary: channels, one notification as a sender sees it, the sender protocol
and the report of one sending pass."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, Protocol

Outcome = Literal["sent", "retried", "dead"]
OUTCOMES: tuple[Outcome, ...] = ("sent", "retried", "dead")


class Channel(StrEnum):
    EMAIL = "email"
    WEBHOOK = "webhook"


@dataclass(frozen=True)
class Notification:
    id: int
    dedupe_key: str
    channel: Channel
    template: str
    recipient: str
    payload: dict[str, Any]
    attempts: int
    """Attempts made before this one (0 on the first send)."""
    created_at: datetime
    case_id: int | None = None
    license_key: str | None = None


class Sender(Protocol):
    async def send(self, notification: Notification) -> None:
        """Deliver the notification or raise. `PermanentFailure` means retrying cannot help."""
        ...


class PermanentFailure(Exception):
    """Raised by a sender when a retry cannot succeed (unknown template, missing template
    variable, recipient refused with a 5xx): the row goes straight to `dead`."""


def _zero() -> dict[Channel, int]:
    return dict.fromkeys(Channel, 0)


@dataclass
class SendReport:
    """What sending did, per channel: `sent`, `retried` (failed, will be tried again after a
    backoff) and `dead` (failed for the last time)."""

    sent: dict[Channel, int] = field(default_factory=_zero)
    retried: dict[Channel, int] = field(default_factory=_zero)
    dead: dict[Channel, int] = field(default_factory=_zero)
    resent: dict[Channel, int] = field(default_factory=_zero)
    """Rows sent again after an earlier claim ended without a record (also in `sent` etc.)."""

    def count(self, channel: Channel, outcome: Outcome) -> None:
        getattr(self, outcome)[channel] += 1

    def outcomes(self) -> Iterator[tuple[Channel, Outcome, int]]:
        """(channel, outcome, n) for every non-zero count: the worker's metric increments."""
        for outcome in OUTCOMES:
            for channel, n in getattr(self, outcome).items():
                if n:
                    yield channel, outcome, n

    def counts(self) -> dict[tuple[Channel, Outcome], int]:
        """{(channel, outcome): n} for every non-zero count."""
        return {(channel, outcome): n for channel, outcome, n in self.outcomes()}

    @property
    def total(self) -> int:
        return sum(n for _, _, n in self.outcomes())
