"""The configurable escalation ladder of a fraud case (R13, R14); pure values, no I/O.

A ladder is a short list of rungs. Each rung is one named step, due at a fixed offset from the
moment the case opened, carrying the actions the worker performs when it runs and the stage the
case enters afterwards.

- R13: the offset of the first rung is the migration grace: until then every server of the key
  keeps working and the answers carry `GRACE`.
- R14: the default ladder is day 30 `grace_over` (e-mail the customer, alert the fraud team,
  phone task; the case becomes OVERDUE), day 37 `reminder` (e-mail), day 44 `disable` (disable
  the key, e-mail, alert; the case becomes DISABLED). Offsets are configurable.
- R14: each step runs exactly once per case; the step name is what the worker records (one row
  per case and step), so step names are unique within a ladder.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from activation.licensing.model import CaseStage


class Step(StrEnum):
    """The named steps of the ladder (R14); the value is what `case_steps.step` stores."""

    GRACE_OVER = "grace_over"
    REMINDER = "reminder"
    DISABLE = "disable"


class Action(StrEnum):
    """What the worker does when a rung runs (R14, SPEC §7)."""

    EMAIL_CUSTOMER = "email_customer"
    ALERT_TEAM = "alert_team"
    PHONE_TASK = "phone_task"
    DISABLE_KEY = "disable_key"


@dataclass(frozen=True, slots=True)
class Rung:
    """One step of the ladder.

    - `offset` is measured from the case opening (R14), before any extension or hold is added.
    - `stage_after` is the stage the case enters when this rung runs; None leaves it unchanged.
    """

    step: Step
    offset: timedelta
    actions: tuple[Action, ...]
    stage_after: CaseStage | None


# The actions and stage each step carries by default (R14); a configured ladder only moves them.
DEFAULT_STEP_ACTIONS: dict[Step, tuple[tuple[Action, ...], CaseStage | None]] = {
    Step.GRACE_OVER: (
        (Action.EMAIL_CUSTOMER, Action.ALERT_TEAM, Action.PHONE_TASK),
        CaseStage.OVERDUE,
    ),
    Step.REMINDER: ((Action.EMAIL_CUSTOMER,), None),
    Step.DISABLE: (
        (Action.DISABLE_KEY, Action.EMAIL_CUSTOMER, Action.ALERT_TEAM),
        CaseStage.DISABLED,
    ),
}

_DEFAULT_OFFSET_DAYS: tuple[tuple[Step, int], ...] = (
    (Step.GRACE_OVER, 30),
    (Step.REMINDER, 37),
    (Step.DISABLE, 44),
)
DEFAULT_GRACE_DAYS = 30


def default_rung(step: Step, offset: timedelta) -> Rung:
    """The rung for `step` at `offset`, with the step's default actions and stage (R14)."""
    actions, stage_after = DEFAULT_STEP_ACTIONS[step]
    return Rung(step=step, offset=offset, actions=actions, stage_after=stage_after)


@dataclass(frozen=True, slots=True)
class Ladder:
    """An ordered, validated escalation ladder (R13, R14).

    Construction raises ValueError unless:
    - there is at least one rung and every offset is positive (R13: a grace period exists);
    - offsets are strictly increasing, so ladder order is time order;
    - step names are unique (R14: a step runs once per case, recorded by its name);
    - no rung repeats an action;
    - the first rung sets the stage OVERDUE (R14: when grace ends the case is treated as fraud);
    - exactly one rung disables the key (`Action.DISABLE_KEY`), it is the last rung and it sets
      the stage DISABLED; no other rung sets DISABLED, and no rung sets GRACE or RESOLVED
      (those are the opening and the resolution, never a rung's effect).
    """

    rungs: tuple[Rung, ...]

    def __post_init__(self) -> None:
        if not self.rungs:
            raise ValueError("an escalation ladder needs at least one rung")
        seen: set[Step] = set()
        previous: Rung | None = None
        for rung in self.rungs:
            if rung.offset <= timedelta(0):
                raise ValueError(
                    f"rung {rung.step.value!r}: offset must be positive, got {rung.offset}"
                )
            if previous is not None and rung.offset <= previous.offset:
                raise ValueError(
                    f"rung {rung.step.value!r} at {rung.offset} must come strictly after "
                    f"rung {previous.step.value!r} at {previous.offset}"
                )
            if rung.step in seen:
                raise ValueError(f"step {rung.step.value!r} appears more than once in the ladder")
            if len(set(rung.actions)) != len(rung.actions):
                raise ValueError(f"rung {rung.step.value!r} repeats an action")
            if rung.stage_after in (CaseStage.GRACE, CaseStage.RESOLVED):
                raise ValueError(
                    f"rung {rung.step.value!r} cannot set the stage {rung.stage_after.value!r}"
                )
            seen.add(rung.step)
            previous = rung
        if self.rungs[0].stage_after is not CaseStage.OVERDUE:
            raise ValueError(
                f"the first rung ({self.rungs[0].step.value!r}) must set the stage OVERDUE"
            )
        disabling = [r for r in self.rungs if Action.DISABLE_KEY in r.actions]
        if len(disabling) != 1:
            raise ValueError(f"exactly one rung must disable the key, found {len(disabling)}")
        if disabling[0] is not self.rungs[-1]:
            raise ValueError(
                f"the rung that disables the key ({disabling[0].step.value!r}) must be the last"
            )
        for rung in self.rungs:
            sets_disabled = rung.stage_after is CaseStage.DISABLED
            if sets_disabled != (rung is disabling[0]):
                raise ValueError(
                    f"rung {rung.step.value!r}: only the rung that disables the key "
                    "sets the stage DISABLED, and it must"
                )

    @property
    def grace(self) -> timedelta:
        """R13: the grace period, the offset of the first rung."""
        return self.rungs[0].offset

    @property
    def disable_after(self) -> timedelta:
        """R14: the offset of the rung that disables the key (always the last)."""
        return self.rungs[-1].offset

    def rung(self, step: Step) -> Rung | None:
        """The rung for `step`, or None when this ladder has no such step."""
        for rung in self.rungs:
            if rung.step is step:
                return rung
        return None


DEFAULT_LADDER = Ladder(
    tuple(default_rung(step, timedelta(days=days)) for step, days in _DEFAULT_OFFSET_DAYS)
)


def ladder_from_settings(grace_days: int, spec: str | None) -> Ladder:
    """Build the ladder from the settings `GRACE_DAYS` and an optional ladder spec.

    - `spec` None (or blank) → the default ladder (R14) with its first rung at `grace_days` and
      every other rung shifted by the same amount: 30 → 30/37/44, 10 → 10/17/24.
    - `spec` like `"30:grace_over,37:reminder,44:disable"`: comma-separated `days:step` items in
      ladder order; each step keeps its default actions and stage. The first rung's day must equal
      `grace_days`, since both settings define the grace period of R13 and silently preferring one
      would hide a misconfiguration.
    - Anything else raises ValueError with a message naming the offending part.
    """
    if grace_days < 1:
        raise ValueError(f"GRACE_DAYS must be at least 1, got {grace_days}")
    if spec is None or not spec.strip():
        shift = grace_days - DEFAULT_GRACE_DAYS
        return Ladder(
            tuple(
                default_rung(step, timedelta(days=days + shift))
                for step, days in _DEFAULT_OFFSET_DAYS
            )
        )
    rungs: list[Rung] = []
    for raw_item in spec.split(","):
        item = raw_item.strip()
        days_text, sep, step_text = item.partition(":")
        if not sep:
            raise ValueError(f"ladder item {item!r} must look like DAYS:STEP, e.g. 30:grace_over")
        try:
            days = int(days_text.strip())
        except ValueError:
            raise ValueError(
                f"ladder item {item!r}: {days_text.strip()!r} is not a whole number of days"
            ) from None
        try:
            step = Step(step_text.strip())
        except ValueError:
            known = ", ".join(s.value for s in Step)
            raise ValueError(
                f"ladder item {item!r}: unknown step {step_text.strip()!r} (known: {known})"
            ) from None
        rungs.append(default_rung(step, timedelta(days=days)))
    try:
        ladder = Ladder(tuple(rungs))
    except ValueError as exc:
        raise ValueError(f"invalid escalation ladder {spec!r}: {exc}") from None
    if ladder.grace != timedelta(days=grace_days):
        raise ValueError(
            f"invalid escalation ladder {spec!r}: its first rung is at day "
            f"{ladder.grace.days} but GRACE_DAYS is {grace_days}; they must agree"
        )
    return ladder
