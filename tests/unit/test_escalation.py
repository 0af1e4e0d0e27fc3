"""The escalation ladder (R13, R14): validation, the default ladder and the settings parser."""

from __future__ import annotations

from datetime import timedelta

import pytest

from activation.licensing.model import CaseStage
from fraud.escalation import (
    DEFAULT_LADDER,
    Action,
    Ladder,
    Rung,
    Step,
    default_rung,
    ladder_from_settings,
)

D = timedelta(days=1)


def offsets(ladder: Ladder) -> list[tuple[Step, int]]:
    return [(r.step, r.offset // D) for r in ladder.rungs]


def test_r14_default_ladder_is_day_30_37_44() -> None:
    assert offsets(DEFAULT_LADDER) == [
        (Step.GRACE_OVER, 30),
        (Step.REMINDER, 37),
        (Step.DISABLE, 44),
    ]
    grace_over, reminder, disable = DEFAULT_LADDER.rungs
    assert grace_over.actions == (Action.EMAIL_CUSTOMER, Action.ALERT_TEAM, Action.PHONE_TASK)
    assert grace_over.stage_after is CaseStage.OVERDUE
    assert reminder.actions == (Action.EMAIL_CUSTOMER,)
    assert reminder.stage_after is None
    assert disable.actions == (Action.DISABLE_KEY, Action.EMAIL_CUSTOMER, Action.ALERT_TEAM)
    assert disable.stage_after is CaseStage.DISABLED
    assert DEFAULT_LADDER.grace == 30 * D
    assert DEFAULT_LADDER.disable_after == 44 * D
    assert DEFAULT_LADDER.rung(Step.REMINDER) is reminder


def test_r14_enum_values_are_the_stored_names() -> None:
    assert [s.value for s in Step] == ["grace_over", "reminder", "disable"]
    assert [a.value for a in Action] == [
        "email_customer",
        "alert_team",
        "phone_task",
        "disable_key",
    ]


G = default_rung(Step.GRACE_OVER, 30 * D)
R = default_rung(Step.REMINDER, 37 * D)
X = default_rung(Step.DISABLE, 44 * D)


@pytest.mark.parametrize(
    ("rungs", "message"),
    [
        pytest.param((), "at least one rung", id="R14-empty"),
        pytest.param(
            (default_rung(Step.GRACE_OVER, timedelta(0)), X), "positive", id="R13-zero-grace"
        ),
        pytest.param((G, default_rung(Step.REMINDER, 30 * D), X), "strictly", id="R14-equal"),
        pytest.param((G, default_rung(Step.REMINDER, 50 * D), X), "strictly", id="R14-decreasing"),
        pytest.param(
            (G, Rung(Step.GRACE_OVER, 37 * D, (Action.EMAIL_CUSTOMER,), None), X),
            "more than once",
            id="R14-duplicate-step",
        ),
        pytest.param((R, X), "OVERDUE", id="R14-first-not-overdue"),
        pytest.param((G, R), "exactly one rung must disable", id="R14-no-disable"),
        pytest.param(
            (G, Rung(Step.REMINDER, 37 * D, (Action.DISABLE_KEY,), CaseStage.DISABLED), X),
            "exactly one rung must disable",
            id="R14-two-disables",
        ),
        pytest.param(
            (default_rung(Step.DISABLE, 20 * D), G),
            "OVERDUE",
            id="R14-disable-first",
        ),
        pytest.param(
            (
                Rung(
                    Step.GRACE_OVER,
                    30 * D,
                    (Action.DISABLE_KEY,),
                    CaseStage.OVERDUE,
                ),
                R,
            ),
            "must be the last",
            id="R14-disable-not-last",
        ),
        pytest.param(
            (G, Rung(Step.DISABLE, 44 * D, (Action.DISABLE_KEY,), CaseStage.OVERDUE)),
            "DISABLED",
            id="R14-disable-rung-not-disabled-stage",
        ),
        pytest.param(
            (G, Rung(Step.REMINDER, 37 * D, (Action.EMAIL_CUSTOMER,), CaseStage.DISABLED), X),
            "DISABLED",
            id="R14-other-rung-sets-disabled",
        ),
        pytest.param(
            (G, Rung(Step.REMINDER, 37 * D, (), CaseStage.RESOLVED), X),
            "cannot set the stage",
            id="R15-rung-sets-resolved",
        ),
        pytest.param(
            (G, Rung(Step.REMINDER, 37 * D, (Action.EMAIL_CUSTOMER,) * 2, None), X),
            "repeats an action",
            id="R14-repeated-action",
        ),
    ],
)
def test_r14_ladder_validation_refuses(rungs: tuple[Rung, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Ladder(rungs)


@pytest.mark.parametrize(
    "rungs",
    [
        pytest.param((G, R, X), id="R14-default"),
        pytest.param((G, X), id="R14-no-reminder"),
        pytest.param(
            (G, default_rung(Step.DISABLE, 30 * D + timedelta(seconds=1))),
            id="R14-disable-one-second-later",
        ),
    ],
)
def test_r14_ladder_validation_accepts(rungs: tuple[Rung, ...]) -> None:
    assert Ladder(rungs).rungs == rungs


@pytest.mark.parametrize(
    ("grace_days", "spec", "expected"),
    [
        pytest.param(30, None, [30, 37, 44], id="R13-default"),
        pytest.param(10, None, [10, 17, 24], id="R13-grace-10-shifts-ladder"),
        pytest.param(1, None, [1, 8, 15], id="R13-grace-1"),
        pytest.param(60, "", [60, 67, 74], id="R13-blank-spec-is-default"),
        pytest.param(30, "30:grace_over,37:reminder,44:disable", [30, 37, 44], id="R14-spec"),
        pytest.param(
            10, " 10 : grace_over , 20:reminder,  40:disable ", [10, 20, 40], id="R14-spaces"
        ),
    ],
)
def test_r14_ladder_from_settings(grace_days: int, spec: str | None, expected: list[int]) -> None:
    ladder = ladder_from_settings(grace_days, spec)
    assert [r.offset for r in ladder.rungs] == [d * D for d in expected]
    assert [r.step for r in ladder.rungs] == [Step.GRACE_OVER, Step.REMINDER, Step.DISABLE]
    assert ladder.grace == expected[0] * D
    assert ladder.disable_after == expected[-1] * D


def test_r14_default_settings_give_the_default_ladder() -> None:
    assert ladder_from_settings(30, None) == DEFAULT_LADDER


def test_r14_spec_keeps_default_actions_and_stages() -> None:
    ladder = ladder_from_settings(5, "5:grace_over,9:disable")
    assert ladder.rungs == (
        default_rung(Step.GRACE_OVER, 5 * D),
        default_rung(Step.DISABLE, 9 * D),
    )
    assert ladder.rungs[0].stage_after is CaseStage.OVERDUE
    assert Action.DISABLE_KEY in ladder.rungs[-1].actions


@pytest.mark.parametrize(
    ("grace_days", "spec", "message"),
    [
        pytest.param(0, None, "GRACE_DAYS must be at least 1", id="R13-zero-grace-days"),
        pytest.param(-3, None, "GRACE_DAYS must be at least 1", id="R13-negative-grace-days"),
        pytest.param(30, "30 grace_over", "DAYS:STEP", id="R14-no-colon"),
        pytest.param(30, "30:grace_over,,44:disable", "DAYS:STEP", id="R14-empty-item"),
        pytest.param(30, "thirty:grace_over,44:disable", "whole number", id="R14-days-not-int"),
        pytest.param(30, "30.5:grace_over,44:disable", "whole number", id="R14-days-fraction"),
        pytest.param(30, "30:grace,44:disable", "unknown step 'grace'", id="R14-unknown-step"),
        pytest.param(30, "30:grace_over,30:disable", "strictly", id="R14-same-day"),
        pytest.param(30, "44:disable,30:grace_over", "strictly|OVERDUE", id="R14-out-of-order"),
        pytest.param(30, "30:grace_over,37:reminder", "disable the key", id="R14-no-disable"),
        pytest.param(
            30, "30:grace_over,37:disable,44:reminder", "must be the last", id="R14-disable-mid"
        ),
        pytest.param(
            30, "30:grace_over,37:grace_over,44:disable", "more than once", id="R14-dup-step"
        ),
        pytest.param(30, "30:reminder,44:disable", "OVERDUE", id="R14-first-not-grace-over"),
        pytest.param(30, "0:grace_over,44:disable", "GRACE_DAYS|positive", id="R13-day-zero"),
        pytest.param(
            30, "10:grace_over,17:reminder,24:disable", "GRACE_DAYS is 30", id="R13-mismatch"
        ),
    ],
)
def test_r14_ladder_from_settings_refuses(grace_days: int, spec: str | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ladder_from_settings(grace_days, spec)
