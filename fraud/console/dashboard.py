"""The dashboard's figures (PostgreSQL reads at `now`): open cases by stage, keys disabled in the
last 7 days, notifications failing (dead, or pending after a failed attempt), and activations
per day over the last 14 days (once the worker has ingested them: from `activation_daily`, the
roll-up a trigger on `activation_events` keeps, so the chart reads 14 days' rows, not the events).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import asyncpg

from fraud.console import views

CHART_DAYS = 14


async def figures(conn: asyncpg.Connection, now: datetime) -> dict[str, Any]:
    week_ago = now - timedelta(days=7)
    stages = await conn.fetch(
        "SELECT stage, count(*) AS n FROM fraud_cases WHERE status = 'open' GROUP BY stage"
    )
    resolved_week = await conn.fetchval(
        "SELECT count(*) FROM fraud_cases WHERE status = 'resolved' AND resolved_at >= $1",
        week_ago,
    )
    disabled = await conn.fetch(
        """SELECT key, product, disabled_at, disabled_reason FROM licenses
           WHERE status = 'disabled' AND disabled_at >= $1 ORDER BY disabled_at DESC LIMIT 50""",
        week_ago,
    )
    failing = await conn.fetch(
        """SELECT id, case_id, channel, template, recipient, status, attempts, last_error,
                  created_at FROM notifications
           WHERE status = 'dead' OR (status = 'pending' AND attempts > 0)
           ORDER BY id DESC LIMIT 50"""
    )
    counts = await conn.fetchrow(
        """SELECT count(*) FILTER (WHERE status = 'dead') AS dead,
                  count(*) FILTER (WHERE status = 'pending' AND attempts > 0) AS retrying
           FROM notifications"""
    )
    first_day = now.date() - timedelta(days=CHART_DAYS - 1)
    per_day = await conn.fetch(
        """SELECT day, sum(activations)::bigint AS n FROM activation_daily
           WHERE day BETWEEN $1 AND $2 GROUP BY day""",
        first_day,
        now.date(),
    )
    by_stage = {row["stage"]: row["n"] for row in stages}
    return {
        "by_stage": [(stage, by_stage.get(stage, 0)) for stage in ("grace", "overdue", "disabled")],
        "resolved_week": resolved_week,
        "disabled": disabled,
        "failing": failing,
        "dead": counts["dead"],
        "retrying": counts["retrying"],
        "bars": views.chart({row["day"]: row["n"] for row in per_day}, now.date(), CHART_DAYS),
        "activations": sum(row["n"] for row in per_day),
    }
