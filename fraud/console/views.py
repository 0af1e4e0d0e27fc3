"""Pure shaping of what the pages show: days left, the merged timeline, the installations and
the activations chart. Each function takes `now` (or the rows) and returns values."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from activation.licensing.model import TeamAction

DESTRUCTIVE = frozenset({TeamAction.DISABLE, TeamAction.RESOLVE})
DONE: dict[str, str] = {
    TeamAction.HOLD: "The case is on hold.",
    TeamAction.RELEASE_HOLD: "The hold is released; the deadlines moved by the time held.",
    TeamAction.EXTEND: "The deadlines are extended.",
    TeamAction.RESOLVE: "The case is resolved.",
    TeamAction.GRANT_EXCEPTION: "The exception is granted.",
    TeamAction.DISABLE: "The key is disabled.",
    TeamAction.ENABLE: "The key is enabled again.",
    TeamAction.LOG_CALL: "The call is logged.",
}


def _at(value: datetime | str) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def days_left(deadline: datetime | str | None, now: datetime) -> int | None:
    """Whole days until `deadline` (rounded up; 0 once due); None without one."""
    if deadline is None:
        return None
    return max(0, math.ceil((_at(deadline) - now) / timedelta(days=1)))


def timeline(
    events: Iterable[Mapping[str, Any]], notifications: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Case events (opened, steps, actions, calls) and notifications, oldest first."""
    rows: list[dict[str, Any]] = []
    for event in events:
        kind = str(event["kind"])
        rows.append(
            {
                "at": _at(event["at"]),
                "kind": kind.removeprefix("step:").replace("_", " "),
                "css": "step" if kind.startswith("step:") else kind,
                "actor": event["actor"],
                "note": event["note"] or "",
                "detail": ", ".join(
                    f"{k}: {v}" for k, v in event.get("data", {}).items() if k != "note"
                ),
            }
        )
    for sent in notifications:
        status = "retrying" if sent["status"] == "pending" and sent["attempts"] else sent["status"]
        rows.append(
            {
                "at": _at(sent["created_at"]),
                "kind": f"{sent['channel']} {sent['template'].replace('_', ' ')}",
                "css": "notification",
                "actor": "fraud-worker",
                "note": f"to {sent['recipient']}",
                "detail": f"{status}, {sent['attempts']} attempt(s)"
                + (f", last error: {sent['last_error']}" if sent["last_error"] else ""),
                "status": status,
            }
        )
    return sorted(rows, key=lambda row: row["at"])


def installations(
    stored: Sequence[Mapping[str, Any]],
    counted: Sequence[Mapping[str, Any]],
    now: datetime,
    window: timedelta,
) -> list[dict[str, Any]]:
    """Every server the key was seen on: PostgreSQL's rows (deactivated ones too) merged with
    what Redis counts now. Active means counted by Redis and seen within the window (R11)."""
    merged: dict[str, dict[str, Any]] = {}
    for row in stored:
        merged[row["fingerprint"]] = dict(row) | {"counted": False}
    for row in counted:
        merged[row["fingerprint"]] = merged.get(row["fingerprint"], {}) | dict(row)
        merged[row["fingerprint"]]["counted"] = True
        merged[row["fingerprint"]].setdefault("deactivated_at", None)
    out = []
    for row in merged.values():
        seen = row.get("last_seen_at")
        fresh = seen is not None and _at(seen) >= now - window
        out.append(row | {"active": bool(row["counted"] and fresh and not row["deactivated_at"])})
    return sorted(out, key=lambda r: (not r["active"], str(r.get("hostname", ""))))


def mark_offline(
    servers: Sequence[Mapping[str, Any]], files: Sequence[Mapping[str, Any]], now: datetime
) -> list[dict[str, Any]]:
    """Servers holding an offline license file still valid at `now` show it (`offline_until`);
    their last-seen time is the file's issue (Redis counts them as seen later, so that they
    stay active until the file's end: activation/admin/offline_files.py)."""
    newest: dict[str, Mapping[str, Any]] = {}
    for file in files:  # newest first
        until = file["valid_until"]
        if until is not None and until > now:
            newest.setdefault(file["fingerprint"], file)
    out = []
    for server in servers:
        held = newest.get(server["fingerprint"])
        row = dict(server) | {"offline_until": None if held is None else held["valid_until"]}
        seen = row.get("last_seen_at")
        if held is not None and seen is not None and _at(seen) > now:
            row["last_seen_at"] = held["issued_at"]
        out.append(row)
    return out


@dataclass(frozen=True, slots=True)
class Bar:
    day: date
    count: int
    x: int
    y: int
    height: int


CHART_WIDTH, CHART_HEIGHT, BAR_STEP = 560, 140, 40


def chart(counts: Mapping[date, int], last_day: date, days: int = 14) -> list[Bar]:
    """Bars for the `days` days ending on `last_day` (missing days count 0), scaled to the
    tallest; coordinates for a server-side SVG of CHART_WIDTH × CHART_HEIGHT."""
    span = [last_day - timedelta(days=n) for n in range(days - 1, -1, -1)]
    top = max([counts.get(day, 0) for day in span] + [1])
    bars = []
    for index, day in enumerate(span):
        count = counts.get(day, 0)
        height = round(count / top * (CHART_HEIGHT - 20))
        bars.append(Bar(day, count, index * BAR_STEP + 4, CHART_HEIGHT - height, height))
    return bars
