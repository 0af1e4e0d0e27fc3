"""The fraud case state machine (R11–R16, SPEC §6), with fixed datetimes and the default ladder."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from activation.licensing.model import CaseStage, TeamAction
from fraud.cases import (
    ActionRefused,
    ActionResult,
    Case,
    Evaluation,
    apply_action,
    apply_evaluation,
    disable_at,
    due_at,
    evaluate,
    grace_ends_at,
    is_leak,
    severity,
    should_open,
)
from fraud.escalation import DEFAULT_LADDER, Step, ladder_from_settings

OPENED = datetime(2019, 3, 1, 12, 0, tzinfo=UTC)
D = timedelta(days=1)
S = timedelta(seconds=1)
G, R, X = Step.GRACE_OVER, Step.REMINDER, Step.DISABLE


def case(**kw: Any) -> Case:
    base: dict[str, Any] = {
        "id": 7,
        "license_key": "K-1",
        "opened_at": OPENED,
        "stage": CaseStage.GRACE,
        "resolved": False,
        "on_hold": False,
        "hold_started_at": None,
        "extension": timedelta(0),
        "steps_done": frozenset(),
        "leak_suspected": False,
        "servers_active": 2,
        "servers_allowed": 1,
    }
    base.update(kw)
    return Case(**base)


def run(c: Case, at: timedelta, *, active: int = 2, allowed: int = 1) -> Evaluation:
    return evaluate(
        c, servers_active=active, servers_allowed=allowed, now=OPENED + at, ladder=DEFAULT_LADDER
    )


def steps(ev: Evaluation) -> list[Step]:
    return [r.step for r in ev.rungs]


# --- opening, leak, severity (R12, R13, R16) -------------------------------------------------


@pytest.mark.parametrize(
    ("active", "allowed", "opens"),
    [
        pytest.param(1, 1, False, id="R12-one-server-allowed"),
        pytest.param(2, 1, True, id="R13-second-server-opens"),
        pytest.param(2, 2, False, id="R12-failover-two-servers"),
        pytest.param(3, 2, True, id="R13-failover-third-server-opens"),
        pytest.param(5, 5, False, id="R12-exception-limit"),
        pytest.param(0, 1, False, id="R11-no-active-server"),
    ],
)
def test_r12_r13_should_open(active: int, allowed: int, opens: bool) -> None:
    assert should_open(active, allowed) is opens


@pytest.mark.parametrize(
    ("servers", "threshold", "leak"),
    [
        pytest.param(1, 5, False, id="R16-one"),
        pytest.param(5, 5, False, id="R16-five-is-not-a-leak"),
        pytest.param(6, 5, True, id="R16-six-is-a-leak"),
        pytest.param(50, 5, True, id="R16-many"),
        pytest.param(3, 2, True, id="R16-custom-threshold"),
        pytest.param(2, 2, False, id="R16-custom-threshold-at-limit"),
    ],
)
def test_r16_is_leak(servers: int, threshold: int, leak: bool) -> None:
    assert is_leak(servers, threshold) is leak


def test_r16_default_threshold_is_five() -> None:
    assert not is_leak(5)
    assert is_leak(6)


@pytest.mark.parametrize(
    ("leak", "expected"),
    [pytest.param(True, "high", id="R16-leak-high"), pytest.param(False, "normal", id="R16-no")],
)
def test_r16_severity(leak: bool, expected: str) -> None:
    assert severity(case(leak_suspected=leak)) == expected


@pytest.mark.parametrize(
    ("extension", "grace_end", "disable"),
    [
        pytest.param(timedelta(0), 30 * D, 44 * D, id="R13-R14-no-extension"),
        pytest.param(7 * D, 37 * D, 51 * D, id="R15-extended-7-days"),
        pytest.param(
            3 * timedelta(hours=1),
            30 * D + 3 * timedelta(hours=1),
            44 * D + 3 * timedelta(hours=1),
            id="R15-held-3h",
        ),
    ],
)
def test_r13_r14_deadlines(extension: timedelta, grace_end: timedelta, disable: timedelta) -> None:
    c = case(extension=extension)
    assert grace_ends_at(c, DEFAULT_LADDER) == OPENED + grace_end
    assert disable_at(c, DEFAULT_LADDER) == OPENED + disable
    reminder = DEFAULT_LADDER.rungs[1]
    assert due_at(c, reminder) == OPENED + 37 * D + extension


# --- the ladder over time (R13, R14) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("done", "at", "expected_steps", "stage", "next_due"),
    [
        pytest.param(set(), timedelta(0), [], CaseStage.GRACE, 30 * D, id="R13-at-opening"),
        pytest.param(set(), 29 * D, [], CaseStage.GRACE, 30 * D, id="R13-day-29"),
        pytest.param(set(), 30 * D - S, [], CaseStage.GRACE, 30 * D, id="R13-30d-minus-1s"),
        pytest.param(set(), 30 * D, [G], CaseStage.OVERDUE, 37 * D, id="R14-exactly-30d"),
        pytest.param(set(), 30 * D + S, [G], CaseStage.OVERDUE, 37 * D, id="R14-30d-plus-1s"),
        pytest.param({G}, 30 * D + S, [], CaseStage.OVERDUE, 37 * D, id="R14-30d-already-done"),
        pytest.param({G}, 37 * D - S, [], CaseStage.OVERDUE, 37 * D, id="R14-37d-minus-1s"),
        pytest.param({G}, 37 * D, [R], CaseStage.OVERDUE, 44 * D, id="R14-exactly-37d"),
        pytest.param({G}, 37 * D + S, [R], CaseStage.OVERDUE, 44 * D, id="R14-37d-plus-1s"),
        pytest.param({G, R}, 44 * D - S, [], CaseStage.OVERDUE, 44 * D, id="R14-44d-minus-1s"),
        pytest.param({G, R}, 44 * D, [X], CaseStage.DISABLED, None, id="R14-exactly-44d"),
        pytest.param({G, R}, 44 * D + S, [X], CaseStage.DISABLED, None, id="R14-44d-plus-1s"),
    ],
)
def test_r13_r14_ladder_boundaries(
    done: set[Step],
    at: timedelta,
    expected_steps: list[Step],
    stage: CaseStage,
    next_due: timedelta | None,
) -> None:
    stage_before = CaseStage.OVERDUE if G in done else CaseStage.GRACE
    ev = run(case(steps_done=frozenset(done), stage=stage_before), at)
    assert ev.resolve is False
    assert steps(ev) == expected_steps
    assert ev.stage is stage
    assert ev.next_due_at == (None if next_due is None else OPENED + next_due)


@pytest.mark.parametrize(
    ("done", "at", "expected_steps", "stage", "next_due"),
    [
        pytest.param(set(), 37 * D, [G, R], CaseStage.OVERDUE, 44 * D, id="R14-missed-two"),
        pytest.param(set(), 44 * D, [G, R, X], CaseStage.DISABLED, None, id="R14-missed-all"),
        pytest.param(set(), 400 * D, [G, R, X], CaseStage.DISABLED, None, id="R14-down-a-year"),
        pytest.param({G}, 50 * D, [R, X], CaseStage.DISABLED, None, id="R14-missed-last-two"),
        pytest.param({G, R}, 50 * D, [X], CaseStage.DISABLED, None, id="R14-only-the-missing"),
        pytest.param({R}, 40 * D, [G], CaseStage.OVERDUE, 44 * D, id="R14-hole-in-steps-done"),
    ],
)
def test_r14_missed_rungs_run_together_in_order_and_once(
    done: set[Step],
    at: timedelta,
    expected_steps: list[Step],
    stage: CaseStage,
    next_due: timedelta | None,
) -> None:
    ev = run(case(steps_done=frozenset(done)), at)
    assert steps(ev) == expected_steps
    assert ev.stage is stage
    assert ev.next_due_at == (None if next_due is None else OPENED + next_due)


@pytest.mark.parametrize(
    "at",
    [
        pytest.param(30 * D, id="R14-once-at-30d"),
        pytest.param(37 * D, id="R14-once-at-37d"),
        pytest.param(44 * D, id="R14-once-at-44d"),
    ],
)
def test_r14_each_rung_runs_once(at: timedelta) -> None:
    """R14: once the worker recorded what ran, evaluating again at the same or a later time never
    runs a step twice."""
    c = case()
    seen: list[Step] = []
    for now in (at, at, at + S, at + 3 * D):
        ev = run(c, now)
        seen += steps(ev)
        c = apply_evaluation(c, ev, now=OPENED + now)
    assert len(seen) == len(set(seen))
    assert seen == [
        r.step for r in DEFAULT_LADDER.rungs if OPENED + r.offset <= OPENED + at + 3 * D
    ]


def test_r14_walk_through_the_default_ladder_day_by_day() -> None:
    """R13, R14: checked daily for 50 days, each step runs on its day and only then."""
    c = case()
    ran: dict[int, list[Step]] = {}
    for day in range(51):
        ev = run(c, day * D)
        if ev.rungs:
            ran[day] = steps(ev)
        c = apply_evaluation(c, ev, now=OPENED + day * D)
    assert ran == {30: [G], 37: [R], 44: [X]}
    assert c.stage is CaseStage.DISABLED
    assert c.steps_done == frozenset({G, R, X})


@pytest.mark.parametrize(
    "at",
    [
        pytest.param(30 * D, id="R14-held-at-30d"),
        pytest.param(44 * D, id="R14-held-at-44d"),
        pytest.param(1000 * D, id="R14-held-forever"),
    ],
)
@pytest.mark.parametrize(
    "done", [pytest.param(frozenset(), id="grace"), pytest.param(frozenset({G}), id="overdue")]
)
def test_r14_held_case_never_escalates(at: timedelta, done: frozenset[Step]) -> None:
    c = case(on_hold=True, hold_started_at=OPENED + D, steps_done=done)
    ev = run(c, at)
    assert ev == Evaluation(
        resolve=False,
        rungs=(),
        stage=CaseStage.OVERDUE if done else CaseStage.GRACE,
        next_due_at=None,
    )


# --- automatic resolution (R11, R15) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("c", "at", "active", "allowed"),
    [
        pytest.param(case(), 3 * D, 1, 1, id="R15-old-server-gone-in-grace"),
        pytest.param(case(), 29 * D, 0, 1, id="R15-all-silent"),
        pytest.param(case(steps_done=frozenset({G})), 31 * D, 1, 1, id="R15-overdue"),
        pytest.param(case(steps_done=frozenset({G, R})), 44 * D - S, 1, 1, id="R15-1s-before"),
        pytest.param(
            case(steps_done=frozenset({G, R})), 60 * D, 1, 1, id="R15-worker-was-down-not-disabled"
        ),
        pytest.param(case(), 31 * D, 2, 2, id="R12-exception-raised-the-limit"),
        pytest.param(
            case(on_hold=True, hold_started_at=OPENED), 10 * D, 1, 1, id="R15-held-case-resolves"
        ),
    ],
)
def test_r15_auto_resolution_before_disable(
    c: Case, at: timedelta, active: int, allowed: int
) -> None:
    ev = run(c, at, active=active, allowed=allowed)
    assert ev == Evaluation(resolve=True, rungs=(), stage=CaseStage.RESOLVED, next_due_at=None)
    after = apply_evaluation(c, ev, now=OPENED + at)
    assert after.resolved
    assert after.stage is CaseStage.RESOLVED
    assert not after.on_hold
    assert after.steps_done == c.steps_done


@pytest.mark.parametrize(
    ("c", "active"),
    [
        pytest.param(
            case(stage=CaseStage.DISABLED, steps_done=frozenset({G, R, X})),
            1,
            id="R15-disabled-stays-disabled-within-limit",
        ),
        pytest.param(
            case(stage=CaseStage.DISABLED, steps_done=frozenset({G, R, X})),
            3,
            id="R15-disabled-nothing-more-runs",
        ),
        pytest.param(
            case(stage=CaseStage.DISABLED), 3, id="R15-disabled-by-team-no-ladder-afterwards"
        ),
        pytest.param(
            case(resolved=True, stage=CaseStage.RESOLVED), 3, id="R15-resolved-case-ignored"
        ),
    ],
)
def test_r15_no_auto_resolution_after_disable(c: Case, active: int) -> None:
    ev = run(c, 60 * D, active=active, allowed=1)
    assert ev == Evaluation(resolve=False, rungs=(), stage=c.stage, next_due_at=None)


# --- holds and extensions move the deadlines (R14, R15) ---------------------------------------


def act(c: Case, action: TeamAction, at: timedelta, **kw: Any) -> ActionResult:
    params: dict[str, Any] = {"actor": "alice", "note": None, "days": None, "max_servers": None}
    params.update(kw)
    return apply_action(c, action, now=OPENED + at, **params)


def test_r14_release_hold_shifts_deadlines_by_the_hold() -> None:
    """R14: held from day 20 to day 25, so grace ends on day 35, the reminder on day 42 and the
    disable on day 49; no deadline falls due the moment the hold ends."""
    c = act(case(), TeamAction.HOLD, 20 * D).case
    assert c.on_hold and c.hold_started_at == OPENED + 20 * D
    assert steps(run(c, 31 * D)) == []
    c = act(c, TeamAction.RELEASE_HOLD, 25 * D).case
    assert not c.on_hold and c.hold_started_at is None
    assert c.extension == 5 * D
    assert grace_ends_at(c, DEFAULT_LADDER) == OPENED + 35 * D
    assert disable_at(c, DEFAULT_LADDER) == OPENED + 49 * D
    assert run(c, 25 * D).next_due_at == OPENED + 35 * D
    assert steps(run(c, 35 * D - S)) == []
    assert steps(run(c, 35 * D)) == [G]
    assert steps(run(case(extension=c.extension, steps_done=frozenset({G})), 42 * D)) == [R]


def test_r14_release_hold_after_the_grace_does_not_fire_at_once() -> None:
    """R14: held on day 29 and released on day 40; grace_over is due on day 41, not on release."""
    c = act(case(), TeamAction.HOLD, 29 * D).case
    c = act(c, TeamAction.RELEASE_HOLD, 40 * D).case
    assert steps(run(c, 40 * D)) == []
    assert steps(run(c, 41 * D)) == [G]


def test_r15_holds_accumulate() -> None:
    """R15: two holds of 2 and 3 days add up, on top of an extension."""
    c = act(case(), TeamAction.EXTEND, D, days=10).case
    for start in (5, 15):
        c = act(c, TeamAction.HOLD, start * D).case
        c = act(c, TeamAction.RELEASE_HOLD, (start + 2 + (start == 15)) * D).case
    assert c.extension == 15 * D
    assert grace_ends_at(c, DEFAULT_LADDER) == OPENED + 45 * D


@pytest.mark.parametrize(
    ("days", "grace_end", "disable"),
    [
        pytest.param(1, 31, 45, id="R15-extend-1"),
        pytest.param(7, 37, 51, id="R15-extend-7"),
        pytest.param(365, 395, 409, id="R15-extend-365"),
    ],
)
def test_r15_extend_shifts_deadlines(days: int, grace_end: int, disable: int) -> None:
    c = act(case(), TeamAction.EXTEND, 2 * D, days=days).case
    assert grace_ends_at(c, DEFAULT_LADDER) == OPENED + grace_end * D
    assert disable_at(c, DEFAULT_LADDER) == OPENED + disable * D
    assert steps(run(c, grace_end * D - S)) == []
    assert steps(run(c, grace_end * D)) == [G]


def test_r15_extend_an_overdue_case_postpones_the_disable() -> None:
    c = case(stage=CaseStage.OVERDUE, steps_done=frozenset({G, R}))
    c = act(c, TeamAction.EXTEND, 43 * D, days=14).case
    ev = run(c, 44 * D)
    assert ev.rungs == ()
    assert ev.stage is CaseStage.OVERDUE
    assert ev.next_due_at == OPENED + 58 * D


def test_r13_configured_ladder_grace_10() -> None:
    ladder = ladder_from_settings(10, None)
    c = case()

    def ran(at: timedelta, done: frozenset[Step] = frozenset()) -> list[Step]:
        ev = evaluate(
            replace(c, steps_done=done),
            servers_active=2,
            servers_allowed=1,
            now=OPENED + at,
            ladder=ladder,
        )
        return steps(ev)

    assert ran(10 * D - S) == []
    assert ran(10 * D) == [G]
    assert ran(17 * D, frozenset({G})) == [R]
    assert ran(24 * D, frozenset({G, R})) == [X]
    assert grace_ends_at(c, ladder) == OPENED + 10 * D
    assert disable_at(c, ladder) == OPENED + 24 * D


# --- team actions (SPEC §6, R15) --------------------------------------------------------------

OPEN = case()
OVERDUE = case(stage=CaseStage.OVERDUE, steps_done=frozenset({G}))
HELD = case(on_hold=True, hold_started_at=OPENED + 10 * D)
DISABLED = case(stage=CaseStage.DISABLED, steps_done=frozenset({G, R, X}))
RESOLVED = case(resolved=True, stage=CaseStage.RESOLVED)


@pytest.mark.parametrize(
    ("c", "action", "kw", "expect", "disable_key", "enable_key", "new_max", "event"),
    [
        pytest.param(
            OPEN,
            TeamAction.HOLD,
            {},
            {"on_hold": True, "hold_started_at": OPENED + 12 * D},
            False,
            False,
            None,
            "alice put the case on hold",
            id="R14-hold-open",
        ),
        pytest.param(
            OVERDUE,
            TeamAction.HOLD,
            {"note": "customer travelling"},
            {"on_hold": True, "hold_started_at": OPENED + 12 * D},
            False,
            False,
            None,
            "alice put the case on hold: customer travelling",
            id="R14-hold-overdue",
        ),
        pytest.param(
            HELD,
            TeamAction.RELEASE_HOLD,
            {},
            {"on_hold": False, "hold_started_at": None, "extension": 2 * D},
            False,
            False,
            None,
            "alice released the hold; deadlines moved by 2 days 0 h held",
            id="R14-release-hold",
        ),
        pytest.param(
            OPEN,
            TeamAction.EXTEND,
            {"days": 7},
            {"extension": 7 * D},
            False,
            False,
            None,
            "alice extended the case by 7 days",
            id="R15-extend",
        ),
        pytest.param(
            HELD,
            TeamAction.EXTEND,
            {"days": 1},
            {"extension": D, "on_hold": True},
            False,
            False,
            None,
            "alice extended the case by 1 day",
            id="R15-extend-held",
        ),
        pytest.param(
            OVERDUE,
            TeamAction.RESOLVE,
            {"note": "old server decommissioned"},
            {"resolved": True, "stage": CaseStage.RESOLVED},
            False,
            False,
            None,
            "alice resolved the case: old server decommissioned",
            id="R15-resolve",
        ),
        pytest.param(
            HELD,
            TeamAction.RESOLVE,
            {},
            {
                "resolved": True,
                "stage": CaseStage.RESOLVED,
                "on_hold": False,
                "hold_started_at": None,
                "extension": 2 * D,
            },
            False,
            False,
            None,
            "alice resolved the case",
            id="R15-resolve-held",
        ),
        pytest.param(
            OPEN,
            TeamAction.GRANT_EXCEPTION,
            {"max_servers": 2},
            {"resolved": True, "stage": CaseStage.RESOLVED, "servers_allowed": 2},
            False,
            False,
            2,
            "alice granted an exception: up to 2 servers; the case is resolved",
            id="R12-exception-resolves",
        ),
        pytest.param(
            replace(OVERDUE, servers_active=4),
            TeamAction.GRANT_EXCEPTION,
            {"max_servers": 3},
            {"resolved": False, "stage": CaseStage.OVERDUE, "servers_allowed": 3},
            False,
            False,
            3,
            "alice granted an exception: up to 3 servers; still over the limit with 4 active",
            id="R12-exception-still-over",
        ),
        pytest.param(
            DISABLED,
            TeamAction.GRANT_EXCEPTION,
            {"max_servers": 100},
            {"resolved": False, "stage": CaseStage.DISABLED, "servers_allowed": 100},
            False,
            False,
            100,
            "alice granted an exception: up to 100 servers; the key stays disabled until enabled",
            id="R15-exception-on-disabled-key-keeps-it-disabled",
        ),
        pytest.param(
            OVERDUE,
            TeamAction.DISABLE,
            {},
            {"stage": CaseStage.DISABLED, "resolved": False},
            True,
            False,
            None,
            "alice disabled the key",
            id="R15-disable-now",
        ),
        pytest.param(
            HELD,
            TeamAction.DISABLE,
            {},
            {
                "stage": CaseStage.DISABLED,
                "on_hold": False,
                "hold_started_at": None,
                "extension": 2 * D,
            },
            True,
            False,
            None,
            "alice disabled the key",
            id="R15-disable-held",
        ),
        pytest.param(
            DISABLED,
            TeamAction.ENABLE,
            {"note": "customer paid"},
            {"resolved": True, "stage": CaseStage.RESOLVED},
            False,
            True,
            None,
            "alice re-enabled the key and resolved the case: customer paid",
            id="R15-enable",
        ),
        pytest.param(
            OPEN,
            TeamAction.LOG_CALL,
            {"note": "  called, no answer  "},
            {},
            False,
            False,
            None,
            "alice logged a call: called, no answer",
            id="SPEC6-log-call-open",
        ),
        pytest.param(
            RESOLVED,
            TeamAction.LOG_CALL,
            {"note": "follow-up"},
            {},
            False,
            False,
            None,
            "alice logged a call: follow-up",
            id="SPEC6-log-call-resolved",
        ),
        pytest.param(
            DISABLED,
            TeamAction.LOG_CALL,
            {"note": "left a message"},
            {},
            False,
            False,
            None,
            "alice logged a call: left a message",
            id="SPEC6-log-call-disabled",
        ),
    ],
)
def test_r15_team_action_allowed(
    c: Case,
    action: TeamAction,
    kw: dict[str, Any],
    expect: dict[str, Any],
    disable_key: bool,
    enable_key: bool,
    new_max: int | None,
    event: str,
) -> None:
    res = act(c, action, 12 * D, **kw)
    assert res.case == replace(c, **expect)
    assert res.disable_key is disable_key
    assert res.enable_key is enable_key
    assert res.new_max_servers == new_max
    assert res.event == event


@pytest.mark.parametrize(
    ("c", "action", "kw", "invalid_input", "reason"),
    [
        pytest.param(HELD, TeamAction.HOLD, {}, False, "already on hold", id="R14-hold-twice"),
        pytest.param(DISABLED, TeamAction.HOLD, {}, False, "disabled", id="R14-hold-disabled"),
        pytest.param(RESOLVED, TeamAction.HOLD, {}, False, "resolved", id="R14-hold-resolved"),
        pytest.param(OPEN, TeamAction.RELEASE_HOLD, {}, False, "not on hold", id="R14-release"),
        pytest.param(
            RESOLVED, TeamAction.RELEASE_HOLD, {}, False, "resolved", id="R14-release-resolved"
        ),
        pytest.param(OPEN, TeamAction.EXTEND, {}, True, "days from 1 to 365", id="R15-no-days"),
        pytest.param(OPEN, TeamAction.EXTEND, {"days": 0}, True, "days", id="R15-extend-0"),
        pytest.param(OPEN, TeamAction.EXTEND, {"days": -3}, True, "days", id="R15-extend-neg"),
        pytest.param(OPEN, TeamAction.EXTEND, {"days": 366}, True, "days", id="R15-extend-366"),
        pytest.param(
            RESOLVED, TeamAction.EXTEND, {"days": 5}, False, "resolved", id="R15-extend-resolved"
        ),
        pytest.param(
            DISABLED, TeamAction.EXTEND, {"days": 5}, False, "disabled", id="R15-extend-disabled"
        ),
        pytest.param(RESOLVED, TeamAction.RESOLVE, {}, False, "resolved", id="R15-resolve-twice"),
        pytest.param(
            DISABLED, TeamAction.RESOLVE, {}, False, "use enable", id="R15-resolve-disabled"
        ),
        pytest.param(
            OPEN, TeamAction.GRANT_EXCEPTION, {}, True, "max_servers", id="R12-exception-missing"
        ),
        pytest.param(
            OPEN,
            TeamAction.GRANT_EXCEPTION,
            {"max_servers": 0},
            True,
            "from 1 to 100",
            id="R12-exception-0",
        ),
        pytest.param(
            OPEN,
            TeamAction.GRANT_EXCEPTION,
            {"max_servers": 101},
            True,
            "from 1 to 100",
            id="R12-exception-101",
        ),
        pytest.param(
            RESOLVED,
            TeamAction.GRANT_EXCEPTION,
            {"max_servers": 3},
            False,
            "resolved",
            id="R12-exception-resolved",
        ),
        pytest.param(
            DISABLED, TeamAction.DISABLE, {}, False, "already disabled", id="R15-disable-twice"
        ),
        pytest.param(RESOLVED, TeamAction.DISABLE, {}, False, "resolved", id="R15-disable-res"),
        pytest.param(OPEN, TeamAction.ENABLE, {}, False, "not disabled", id="R15-enable-open"),
        pytest.param(
            OVERDUE, TeamAction.ENABLE, {}, False, "not disabled", id="R15-enable-overdue"
        ),
        pytest.param(
            RESOLVED, TeamAction.ENABLE, {}, False, "not disabled", id="R15-enable-resolved"
        ),
        pytest.param(OPEN, TeamAction.LOG_CALL, {}, True, "needs a note", id="SPEC6-call-none"),
        pytest.param(
            OPEN, TeamAction.LOG_CALL, {"note": "   "}, True, "needs a note", id="SPEC6-call-blank"
        ),
    ],
)
def test_r15_team_action_refused(
    c: Case, action: TeamAction, kw: dict[str, Any], invalid_input: bool, reason: str
) -> None:
    with pytest.raises(ActionRefused, match=reason) as info:
        act(c, action, 12 * D, **kw)
    assert info.value.invalid_input is invalid_input
    assert reason in info.value.reason


def test_spec6_team_action_values() -> None:
    assert {a.value for a in TeamAction} == {
        "hold",
        "release_hold",
        "extend",
        "resolve",
        "grant_exception",
        "disable",
        "enable",
        "log_call",
    }


def test_r15_disabled_then_enabled_case_is_resolved_and_left_alone() -> None:
    """R15: the ladder disables the key; a person re-enables it; the worker never touches it
    again, even with two servers still active."""
    c = case()
    c = apply_evaluation(c, run(c, 44 * D), now=OPENED + 44 * D)
    assert c.stage is CaseStage.DISABLED
    res = act(c, TeamAction.ENABLE, 45 * D)
    assert res.enable_key
    assert run(res.case, 46 * D) == Evaluation(
        resolve=False, rungs=(), stage=CaseStage.RESOLVED, next_due_at=None
    )
