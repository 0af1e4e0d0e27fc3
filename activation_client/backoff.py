"""Retry delays: full-jitter exponential backoff that honours Retry-After.

- Attempt n (0-based) waits a uniformly random time in [0, min(cap, base·2ⁿ)] ("full jitter":
  a fleet that failed together comes back spread over the whole window, not in step).
- When the server said `Retry-After: R`, the wait is R plus that jitter: never earlier than
  the server asked, and still spread (a fleet told the same R does not return in the same
  second).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


@dataclass(frozen=True, slots=True)
class Backoff:
    base: float = 0.5
    cap: float = 8.0

    def window(self, attempt: int) -> float:
        return min(self.cap, self.base * 2.0 ** min(attempt, 32))

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        jitter = rng.uniform(0.0, self.window(attempt))
        return jitter if retry_after is None else retry_after + jitter


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """`Retry-After` as seconds from `now`: delta-seconds or an HTTP date (RFC 9110 §10.2.3);
    None when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(min(int(text), 86_400))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
