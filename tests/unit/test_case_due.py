"""When the worker next looks at a case (`fraud.cases.next_check_at`, `within_limit_at`):
the next ladder step (R14) or the moment servers going silent bring the key back within its
limit (R11, R15), with fixed datetimes and the default ladder (30/37/44 days, 7-day window)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from activation.licensing.model import CaseStage
from fraud.cases import Case, next_check_at, within_limit_at
from fraud.escalation import DEFAULT_LADDER
from tests.unit.test_cases import OPENED, D, G, R, S, X, case

WINDOW = 7 * D


def check(c: Case, *, now: timedelta, seen: list[timedelta]) -> datetime | None:
    return next_check_at(
        c,
        DEFAULT_LADDER,
        last_seen=[OPENED + at for at in seen],
        window=WINDOW,
        now=OPENED + now,
    )


@pytest.mark.parametrize(
    ("seen", "allowed", "now", "expected"),
    [
        pytest.param([0 * D, 1 * D], 1, 2 * D, 7 * D + S, id="R15-oldest-leaves-after-7d"),
        pytest.param([1 * D, 0 * D], 1, 2 * D, 7 * D + S, id="R15-order-does-not-matter"),
        pytest.param([0 * D, 1 * D, 3 * D], 1, 3 * D, 8 * D + S, id="R15-two-extra-second-oldest"),
        pytest.param([0 * D, 1 * D, 3 * D], 2, 3 * D, 7 * D + S, id="R12-two-allowed-one-extra"),
        pytest.param([0 * D, 1 * D], 2, 2 * D, None, id="R12-within-the-limit"),
        pytest.param([0 * D], 1, 2 * D, None, id="R11-one-server"),
        pytest.param([], 1, 2 * D, None, id="R11-none"),
        # At now = 0 d + 7 d the server seen at 0 d is still active (inclusive cutoff, R11).
        pytest.param([0 * D, 1 * D, 2 * D], 1, 7 * D, 8 * D + S, id="R11-at-the-window-edge"),
        # A server already past the window is not counted (R11): one active, within the limit.
        pytest.param([0 * D, 8 * D], 1, 8 * D, None, id="R11-stale-server-ignored"),
    ],
)
def test_within_limit_at_is_when_the_extra_servers_leave_the_window_R11_R15(
    seen: list[timedelta], allowed: int, now: timedelta, expected: timedelta | None
) -> None:
    got = within_limit_at([OPENED + at for at in seen], allowed, window=WINDOW, now=OPENED + now)
    assert got == (None if expected is None else OPENED + expected)


@pytest.mark.parametrize(
    ("kw", "now", "seen", "expected"),
    [
        # R14: the next step not yet run, when the servers keep phoning home.
        pytest.param({}, 0 * D, [0 * D, 0 * D], 7 * D + S, id="R15-window-before-grace-end"),
        pytest.param({}, 25 * D, [25 * D, 25 * D], 30 * D, id="R14-grace-end-first"),
        pytest.param({}, 30 * D - S, [29 * D, 29 * D], 30 * D, id="R14-30d-minus-1s"),
        pytest.param({"steps_done": frozenset({G})}, 30 * D, [30 * D] * 2, 37 * D, id="R14-37"),
        pytest.param(
            {"steps_done": frozenset({G, R})}, 37 * D, [37 * D] * 2, 44 * D, id="R14-disable-44d"
        ),
        pytest.param(
            {"extension": 10 * D}, 35 * D, [35 * D] * 2, 40 * D, id="R15-extension-moves-the-step"
        ),
        # R15: the silent server leaves the window before the next step.
        pytest.param(
            {"steps_done": frozenset({G})}, 30 * D, [26 * D, 30 * D], 33 * D + S, id="R15-first"
        ),
        # R14: a held case runs no step, but still resolves by itself on time (R15).
        pytest.param(
            {"on_hold": True, "hold_started_at": OPENED},
            35 * D,
            [30 * D, 35 * D],
            37 * D + S,
            id="R15-held-window-only",
        ),
        pytest.param(
            {"on_hold": True, "hold_started_at": OPENED, "servers_allowed": 2},
            35 * D,
            [30 * D, 35 * D],
            None,
            id="R14-held-within-limit-nothing",
        ),
        # R15: a disabled key stays so until a person acts; a resolved case is done.
        pytest.param(
            {"stage": CaseStage.DISABLED, "steps_done": frozenset({G, R, X})},
            44 * D,
            [40 * D, 44 * D],
            None,
            id="R15-disabled-never-due",
        ),
        pytest.param(
            {"stage": CaseStage.DISABLED},
            10 * D,
            [9 * D, 10 * D],
            None,
            id="R15-disabled-by-the-team-never-due",
        ),
        pytest.param(
            {"resolved": True, "stage": CaseStage.RESOLVED},
            10 * D,
            [9 * D, 10 * D],
            None,
            id="R15-resolved-never-due",
        ),
    ],
)
def test_next_check_is_the_next_step_or_the_window_R14_R15(
    kw: dict[str, Any], now: timedelta, seen: list[timedelta], expected: timedelta | None
) -> None:
    got = check(case(**kw), now=now, seen=seen)
    assert got == (None if expected is None else OPENED + expected)


def test_a_check_computed_early_is_never_later_than_the_resolution_R15() -> None:
    """The old server phones home until day 20 and then stops: each check computed on the
    way (the server still phoning) is at or before day 27 + 1 s, when it really leaves."""
    last_call = 20 * D
    resolution = OPENED + last_call + WINDOW + S
    moment = 0 * D
    checks = []
    while True:
        seen = [min(moment, last_call), moment]  # old server, new server (phones daily)
        got = check(case(), now=moment, seen=seen)
        assert got is not None
        if got >= resolution or got >= OPENED + 30 * D:
            break
        checks.append(got)
        moment = got - OPENED
    assert got == resolution, f"checks {checks}, then {got}"
    assert all(at < resolution for at in checks), checks
