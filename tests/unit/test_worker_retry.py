"""The pause after failed worker passes (SPEC §9: an outage of any length only delays
ingestion): doubling from the idle pause, at most 5 s, so ingestion resumes within 5 s."""

import pytest

from fraud.worker import MAX_RETRY_PAUSE_S, retry_pause


@pytest.mark.parametrize(
    ("failures", "pause"), [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 5.0), (6, 5.0), (60, 5.0)]
)
def test_failed_passes_back_off_to_five_seconds(failures: int, pause: float) -> None:
    assert retry_pause(failures, 0.5) == pause
    assert retry_pause(failures, 0.5) <= MAX_RETRY_PAUSE_S
