"""The fraud case state machine (R11–R16, SPEC §6): pure functions of a case and `now`.

Nothing here reads a clock or touches storage. The worker loads a `Case` (a row of
`fraud_cases` plus its `case_steps`), calls `evaluate` or `apply_action`, and persists what comes
back; exactly-once execution of a step is the worker's unique (case, step) row (R14).

A case is *open* while `resolved` is False. Its stage is GRACE until the first rung runs, then
OVERDUE, then DISABLED (the key is disabled, the case stays open until a person re-enables the
key), and RESOLVED once resolved. DISABLED is terminal for the worker: the case stays in the
open queue for a person, but `next_check_at` never makes it due again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from activation.licensing.model import CaseStage, TeamAction
from fraud.escalation import Ladder, Rung, Step

LEAK_THRESHOLD = 5
# A server seen at `t` is active while `now - window <= t` (R11); it has left one second later,
# a margin that also absorbs the float seconds Redis stores last-seen times in.
LEFT_WINDOW_AFTER = timedelta(seconds=1)
MAX_EXTENSION_DAYS = 365
MAX_EXCEPTION_SERVERS = 100


@dataclass(frozen=True, slots=True)
class Case:
    """A fraud case as the rules see it (a `fraud_cases` row and its `case_steps`).

    - `extension` is the total time added to every deadline: extensions granted by the team plus
      the time the case spent on hold (R15); it maps to `extension_seconds`.
    - `steps_done` are the ladder steps already run for this case (R14: each runs once).
    - `servers_active` / `servers_allowed` are the counts last seen (R11, R12).
    """

    id: int
    license_key: str
    opened_at: datetime
    stage: CaseStage
    resolved: bool
    on_hold: bool
    hold_started_at: datetime | None
    extension: timedelta
    steps_done: frozenset[Step]
    leak_suspected: bool
    servers_active: int
    servers_allowed: int


def should_open(servers_active: int, servers_allowed: int) -> bool:
    """Whether a case opens now.

    - R12/R13: a case opens when a key has more active installations than it is allowed
      (one, `max_servers` with failover, or a fraud-team exception); exactly at the limit is fine.
    """
    return servers_active > servers_allowed


def is_leak(distinct_recent_servers: int, threshold: int = LEAK_THRESHOLD) -> bool:
    """Whether the key looks leaked.

    - R16: more than `threshold` (default 5) distinct fingerprints within 24 hours; 5 is not a
      leak, 6 is. The caller counts the fingerprints over its own 24-hour window.
    """
    return distinct_recent_servers > threshold


def severity(case: Case) -> str:
    """R16: a suspected leak is "high" severity (top of the review queue); otherwise "normal"."""
    return "high" if case.leak_suspected else "normal"


def due_at(case: Case, rung: Rung) -> datetime:
    """When `rung` is due for `case`: opening + offset + extension (R14, R15)."""
    return case.opened_at + rung.offset + case.extension


def grace_ends_at(case: Case, ladder: Ladder) -> datetime:
    """R13: the end of the migration grace, opening + grace + extension."""
    return case.opened_at + ladder.grace + case.extension


def disable_at(case: Case, ladder: Ladder) -> datetime:
    """R14: when the ladder disables the key, opening + disable offset + extension."""
    return case.opened_at + ladder.disable_after + case.extension


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What the worker must do for a case now.

    - `resolve`: the case resolves by itself (R15); no rung runs.
    - `rungs`: the rungs to run now, in ladder order.
    - `stage`: the case's stage once those rungs ran.
    - `next_due_at`: when the case next needs the worker (`fraud_cases.next_due_at`), or None.
    """

    resolve: bool
    rungs: tuple[Rung, ...]
    stage: CaseStage
    next_due_at: datetime | None


def evaluate(
    case: Case,
    *,
    servers_active: int,
    servers_allowed: int,
    now: datetime,
    ladder: Ladder,
) -> Evaluation:
    """Decide what happens to `case` at `now`, given the current installation counts.

    In this order:
    - A resolved case, or one whose key is disabled, is left alone: a disabled key stays disabled
      until a person re-enables it (R15), even if the servers fall back within the limit.
    - Active installations back within the limit (`servers_active <= servers_allowed`: a server
      was deactivated or went silent past the active window, R11) → the case resolves by itself,
      stage RESOLVED, and no further step runs (R15). This also holds for a held case, and for a
      case whose disable date has passed while the worker was down: the key is not disabled yet.
    - A case on hold does not escalate (R14): no rung runs and nothing is due until the team
      releases it (release adds the held time to the deadlines, see `apply_action`).
    - Otherwise every rung not yet in `steps_done` whose due time (`due_at`) is at or before `now`
      runs, in ladder order (R14). A due time is inclusive: at opening + 30 d − 1 s nothing runs,
      at exactly + 30 d the first rung runs. A worker that was down for days runs all the missed
      rungs at once, in order (e-mail, reminder, then disable), so the customer still receives
      each notice and the timeline shows every step; a rung already in `steps_done` never runs
      again (R14: exactly once).
    - The stage is the `stage_after` of the last rung, done before or run now, that sets one;
      GRACE when none did (R13). `next_due_at` is the due time of the first rung neither done nor
      run now, else None.
    """
    if case.resolved or case.stage is CaseStage.DISABLED:
        return Evaluation(resolve=False, rungs=(), stage=case.stage, next_due_at=None)
    if not should_open(servers_active, servers_allowed):
        return Evaluation(resolve=True, rungs=(), stage=CaseStage.RESOLVED, next_due_at=None)
    if case.on_hold:
        return Evaluation(
            resolve=False,
            rungs=(),
            stage=_stage_after(ladder, case.steps_done),
            next_due_at=None,
        )
    to_run: list[Rung] = []
    next_due: datetime | None = None
    for rung in ladder.rungs:
        if rung.step in case.steps_done:
            continue
        when = due_at(case, rung)
        if when <= now:
            to_run.append(rung)
        elif next_due is None:
            next_due = when
    done = case.steps_done | {rung.step for rung in to_run}
    return Evaluation(
        resolve=False,
        rungs=tuple(to_run),
        stage=_stage_after(ladder, done),
        next_due_at=next_due,
    )


def apply_evaluation(case: Case, evaluation: Evaluation, *, now: datetime) -> Case:
    """The case after the worker carried out `evaluation` (the values to persist).

    - The rungs run are added to `steps_done` and the stage becomes `evaluation.stage` (R14).
    - An automatic resolution (R15) marks the case resolved and ends any hold.
    """
    if evaluation.resolve:
        return replace(_end_hold(case, now), resolved=True, stage=CaseStage.RESOLVED)
    return replace(
        case,
        stage=evaluation.stage,
        steps_done=case.steps_done | {rung.step for rung in evaluation.rungs},
    )


def within_limit_at(
    last_seen: Iterable[datetime], servers_allowed: int, *, window: timedelta, now: datetime
) -> datetime | None:
    """When the key falls back within its limit if no server phones home again (R11, R15).

    - Active servers are those seen at or after `now - window` (R11); older times are ignored.
    - With `n` active and `allowed` allowed, the `n - allowed` least recently seen must go
      silent: the moment is the last-seen time of the (n - allowed)-th oldest active server
      plus the window (plus `LEFT_WINDOW_AFTER`). None when the key is already within its limit.
    - Never late: a phone-home only moves a last-seen time later and a new server only adds
      one to wait for, so a moment computed earlier is at or before the real one, and checking
      then and computing again reaches the real one.
    """
    active = sorted(seen for seen in last_seen if seen >= now - window)
    extra = len(active) - servers_allowed
    if extra <= 0:
        return None
    return active[extra - 1] + window + LEFT_WINDOW_AFTER


def next_check_at(
    case: Case,
    ladder: Ladder,
    *,
    last_seen: Iterable[datetime],
    window: timedelta,
    now: datetime,
) -> datetime | None:
    """The earliest moment an evaluation of `case` (as persisted after this one) may come out
    differently, so the worker need not look at the case before then (`next_check_at`).

    - A resolved case, or one in stage DISABLED, is never due: nothing further runs for it
      without a person (R15: a disabled key stays disabled until a person re-enables it), and
      every action of the fraud team makes its case due at once.
    - The due time of the first ladder step not yet done (R14: opening + offset + extension);
      not while the case is on hold, which only a person's `release_hold` ends.
    - The moment the key would fall back within `case.servers_allowed` because servers stop
      phoning home (`within_limit_at`), held or not: R15's self-resolution happens on time even
      when no event arrives.
    - Whichever is first; None when neither applies.
    - What happens in between is an event: a deactivation, or an activation showing the key
      within its limit, makes the case due at ingest (`fraud.case_opening`); an activation still
      over the limit changes nothing here (the ladder runs on time, not on events).
    """
    if case.resolved or case.stage is CaseStage.DISABLED:
        return None
    candidates: list[datetime] = []
    if not case.on_hold:
        pending = [rung for rung in ladder.rungs if rung.step not in case.steps_done]
        if pending:
            candidates.append(due_at(case, pending[0]))
    falls_back = within_limit_at(last_seen, case.servers_allowed, window=window, now=now)
    if falls_back is not None:
        candidates.append(falls_back)
    return min(candidates, default=None)


def _stage_after(ladder: Ladder, done: frozenset[Step]) -> CaseStage:
    stage = CaseStage.GRACE
    for rung in ladder.rungs:
        if rung.step in done and rung.stage_after is not None:
            stage = rung.stage_after
    return stage


class ActionRefused(Exception):
    """A team action that does not apply to the case, with a reason a person can read.

    - `invalid_input` True: the request's parameters are wrong (missing note, days out of range…),
      which the HTTP layer answers with 422.
    - `invalid_input` False: the parameters are fine but the case's state forbids the action
      (already resolved, not on hold…), answered with 409.
    """

    def __init__(self, reason: str, *, invalid_input: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.invalid_input = invalid_input


@dataclass(frozen=True, slots=True)
class ActionResult:
    """The outcome of a team action.

    - `case`: the case to persist.
    - `event`: one timeline sentence (`case_events`).
    - `disable_key` / `enable_key`: the worker must disable / re-enable the license (R15, R17).
    - `new_max_servers`: the key's new installation limit from an exception (R12), else None.
    """

    case: Case
    event: str
    disable_key: bool
    enable_key: bool
    new_max_servers: int | None


def apply_action(
    case: Case,
    action: TeamAction,
    *,
    now: datetime,
    actor: str,
    note: str | None,
    days: int | None,
    max_servers: int | None,
) -> ActionResult:
    """Apply a fraud-team action (SPEC §6) to `case` at `now`, or raise `ActionRefused`.

    Rules (an *open* case is one not resolved; parameters an action does not use are ignored):
    - `hold`: an open case that is not on hold and whose key is not disabled. While held the case
      does not escalate (R14).
    - `release_hold`: a held case only. The case's `extension` grows by the time it was held, so
      every deadline moves by the hold's length: a deadline does not fall due the moment the hold
      ends, and the customer keeps the grace left when the hold began (R14, R15).
    - `extend`: an open case whose key is not disabled; `days` from 1 to 365, added to the
      extension, which moves grace end, reminder and disable date alike (R15).
    - `resolve`: an open case whose key is not disabled → resolved, stage RESOLVED, hold ended
      (R15). A disabled key must be re-enabled with `enable` instead, which also resolves the case,
      so a case can never be resolved while its key silently stays disabled.
    - `grant_exception`: an open case; `max_servers` from 1 to 100 becomes the key's limit (R12)
      and the case's `servers_allowed`. The case resolves when `servers_active <= max_servers` —
      unless the key is disabled: it then stays disabled (R15) and `enable` resolves it.
    - `disable`: an open case whose key is not yet disabled → stage DISABLED, the key is disabled
      now (R15, R17), hold ended. The case stays open until a person re-enables the key.
    - `enable`: a case whose key is disabled → the key is re-enabled (answers VALID again) and the
      case resolves (R15: a person re-enables).
    - `log_call`: any case, a `note` is required; only the timeline changes.
    """
    note = note.strip() if note is not None and note.strip() else None
    suffix = f": {note}" if note else ""
    is_open = not case.resolved
    disabled = case.stage is CaseStage.DISABLED

    def result(
        new_case: Case,
        event: str,
        *,
        disable_key: bool = False,
        enable_key: bool = False,
        new_max_servers: int | None = None,
    ) -> ActionResult:
        return ActionResult(
            case=new_case,
            event=event + suffix,
            disable_key=disable_key,
            enable_key=enable_key,
            new_max_servers=new_max_servers,
        )

    if action is TeamAction.LOG_CALL:
        if note is None:
            raise ActionRefused("log_call needs a note describing the call", invalid_input=True)
        return result(case, f"{actor} logged a call")

    if action is TeamAction.ENABLE:
        if not disabled or case.resolved:
            raise ActionRefused("the key is not disabled by this case; nothing to enable")
        new_case = replace(case, resolved=True, stage=CaseStage.RESOLVED)
        return result(
            new_case, f"{actor} re-enabled the key and resolved the case", enable_key=True
        )

    if not is_open:
        raise ActionRefused(f"the case is resolved; {action.value} does not apply")

    if action is TeamAction.HOLD:
        if disabled:
            raise ActionRefused("the key is already disabled; a hold would change nothing")
        if case.on_hold:
            raise ActionRefused("the case is already on hold")
        return result(
            replace(case, on_hold=True, hold_started_at=now), f"{actor} put the case on hold"
        )

    if action is TeamAction.RELEASE_HOLD:
        if not case.on_hold:
            raise ActionRefused("the case is not on hold")
        held = _held_for(case, now)
        return result(
            _end_hold(case, now),
            f"{actor} released the hold; deadlines moved by {_human(held)} held",
        )

    if action is TeamAction.EXTEND:
        if days is None or not 1 <= days <= MAX_EXTENSION_DAYS:
            raise ActionRefused(
                f"extend needs days from 1 to {MAX_EXTENSION_DAYS}, got {days}",
                invalid_input=True,
            )
        if disabled:
            raise ActionRefused("the key is already disabled; enable it instead of extending")
        new_case = replace(case, extension=case.extension + timedelta(days=days))
        return result(new_case, f"{actor} extended the case by {days} day{_s(days)}")

    if action is TeamAction.RESOLVE:
        if disabled:
            raise ActionRefused("the key is disabled; use enable to re-enable it and resolve")
        new_case = replace(_end_hold(case, now), resolved=True, stage=CaseStage.RESOLVED)
        return result(new_case, f"{actor} resolved the case")

    if action is TeamAction.GRANT_EXCEPTION:
        if max_servers is None or not 1 <= max_servers <= MAX_EXCEPTION_SERVERS:
            raise ActionRefused(
                f"grant_exception needs max_servers from 1 to {MAX_EXCEPTION_SERVERS}, "
                f"got {max_servers}",
                invalid_input=True,
            )
        new_case = replace(case, servers_allowed=max_servers)
        event = f"{actor} granted an exception: up to {max_servers} server{_s(max_servers)}"
        if disabled:
            event += "; the key stays disabled until enabled"
        elif case.servers_active <= max_servers:
            new_case = replace(_end_hold(new_case, now), resolved=True, stage=CaseStage.RESOLVED)
            event += "; the case is resolved"
        else:
            event += f"; still over the limit with {case.servers_active} active"
        return result(new_case, event, new_max_servers=max_servers)

    if action is TeamAction.DISABLE:
        if disabled:
            raise ActionRefused("the key is already disabled")
        new_case = replace(_end_hold(case, now), stage=CaseStage.DISABLED)
        return result(new_case, f"{actor} disabled the key", disable_key=True)

    raise ActionRefused(f"unknown action {action!r}", invalid_input=True)  # pragma: no cover


def _held_for(case: Case, now: datetime) -> timedelta:
    if not case.on_hold or case.hold_started_at is None:
        return timedelta(0)
    return max(now - case.hold_started_at, timedelta(0))


def _end_hold(case: Case, now: datetime) -> Case:
    """End any hold, adding its length to the extension (deadlines move by the time held)."""
    if not case.on_hold:
        return case
    return replace(
        case,
        on_hold=False,
        hold_started_at=None,
        extension=case.extension + _held_for(case, now),
    )


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def _human(span: timedelta) -> str:
    days, rest = divmod(int(span.total_seconds()), 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days} day{_s(days)} {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min"
    return f"{seconds} s"
