"""Pure parts of the product client: retry delays, Retry-After, the license file format, the
online answer checks (nonce, freshness)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from activation_client.backoff import Backoff, retry_after_seconds
from activation_client.licensefile import LicenseFile, LicenseFileError, parse
from activation_client.verify import Untrusted, check_online

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("attempt", "window"), [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0), (99, 8.0)]
)
def test_the_jitter_window_doubles_up_to_the_cap(attempt: int, window: float) -> None:
    backoff = Backoff(base=0.5, cap=8.0)
    assert backoff.window(attempt) == window
    delays = [backoff.delay(attempt, None, random.Random(n)) for n in range(200)]
    assert 0 <= min(delays) < window * 0.1 and window * 0.9 < max(delays) <= window


def test_retry_after_is_a_floor_and_the_jitter_comes_on_top() -> None:
    delays = [Backoff().delay(0, 3.0, random.Random(n)) for n in range(200)]
    assert all(3.0 <= d <= 3.5 for d in delays) and len(set(delays)) == 200


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7", 7.0),
        (" 0 ", 0.0),
        ("Mon, 23 Nov 2026 12:00:30 GMT", 30.0),
        ("Mon, 23 Nov 2026 11:00:00 GMT", 0.0),  # in the past: now
        ("soon", None),
        ("", None),
        (None, None),
        ("-5", None),
        ("99999999", 86_400.0),
    ],
)
def test_retry_after_seconds(value: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(value, NOW) == seconds


def test_a_license_file_survives_an_email_round_trip() -> None:
    file = LicenseFile(b'{"valid":true}' * 20, "ed25519=" + "A" * 86 + "==", "0123456789abcdef")
    text = file.armored()
    assert all(len(line) <= 64 for line in text.splitlines()[4:-1])
    mailed = "> quoted reply\r\n" + text.replace("\n", "  \r\n") + "\r\n-- \r\nsignature"
    assert parse(mailed) == file


@pytest.mark.parametrize(
    "text",
    [
        "no file here",
        "-----BEGIN LICENSE FILE-----\nKey-Id: x\n-----END LICENSE FILE-----",
        "-----BEGIN LICENSE FILE-----\nKey-Id: x\n\nAAAA\n-----END LICENSE FILE-----",
        "-----BEGIN LICENSE FILE-----\nKey-Id x\nSignature: s\n\nAAAA\n-----END LICENSE FILE-----",
        "-----BEGIN LICENSE FILE-----\nKey-Id: x\nSignature: s\n\n!!!\n-----END LICENSE FILE-----",
        "-----BEGIN LICENSE FILE-----\nKey-Id: x\nSignature: s\n\n\n-----END LICENSE FILE-----",
    ],
)
def test_malformed_license_files_are_refused(text: str) -> None:
    with pytest.raises(LicenseFileError):
        parse(text)


@pytest.mark.parametrize(
    ("nonce", "issued_at", "trusted"),
    [
        ("n1", "2026-11-23T12:00:00Z", True),
        ("n1", "2026-11-23T12:05:00Z", True),  # 5 minutes: the tolerance's edge
        ("n1", "2026-11-23T11:55:00Z", True),
        ("n1", "2026-11-23T12:05:01Z", False),
        ("n1", "2026-11-23T11:54:59Z", False),  # a stale answer (replayed, or a slow proxy)
        ("n0", "2026-11-23T12:00:00Z", False),  # another request's answer
        ("n1", "2026-11-23T12:00:00", False),  # no time zone: not the server's
        ("n1", None, False),
    ],
)
def test_an_online_answer_echoes_the_nonce_and_is_fresh(
    nonce: str, issued_at: str | None, trusted: bool
) -> None:
    answer = {"nonce": nonce, "issued_at": issued_at}
    if trusted:
        check_online(answer, "n1", NOW, timedelta(minutes=5))
    else:
        with pytest.raises(Untrusted):
            check_online(answer, "n1", NOW, timedelta(minutes=5))
