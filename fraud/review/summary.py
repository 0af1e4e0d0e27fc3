"""A case as the queue shows it (pure), and the Redis side of a team action (after the commit).

Redis holds, in the license hash, the case summary the activation script reports (GRACE with
`grace_ends_at`, OVERDUE with `disable_at`, DISABLED): `stage`, `grace_ends`, `disable_at` (epoch
seconds as text) and `over` (when the key first went over its limit). The format is the one
`fraud.case_runner` writes, so the worker's next pass and a team action agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
from redis.asyncio import Redis
from redis.exceptions import RedisError

from activation.licensing.model import CaseStage
from activation.store.cache_write import mark_synced
from activation.store.keys import KeyLayout
from activation.store.redis_store import ActivationStore, StoreUnavailable
from activation.store.registry import LICENSE_COLUMNS, license_from_row
from fraud.cases import Case, disable_at, due_at, grace_ends_at, severity
from fraud.escalation import Ladder
from fraud.review.queries import case_from_row

SUMMARY_FIELDS = ("stage", "grace_ends", "disable_at", "over")


def deadlines(case: Case, ladder: Ladder) -> tuple[datetime | None, datetime | None]:
    """(grace end, disable date) of an open case, extensions and past holds included; a resolved
    case has none."""
    if case.resolved:
        return None, None
    return grace_ends_at(case, ladder), disable_at(case, ladder)


def next_deadline(case: Case, ladder: Ladder) -> datetime | None:
    """The deadline the queue sorts by: grace end while in grace, disable date when overdue."""
    grace, disable = deadlines(case, ladder)
    if case.stage is CaseStage.GRACE:
        return grace
    if case.stage is CaseStage.OVERDUE:
        return disable
    return None


def next_due(case: Case, ladder: Ladder) -> datetime | None:
    """`fraud_cases.next_due_at`: the first rung not yet run; none while held or when over."""
    if case.resolved or case.on_hold or case.stage is CaseStage.DISABLED:
        return None
    for rung in ladder.rungs:
        if rung.step not in case.steps_done:
            return due_at(case, rung)
    return None


def case_item(
    row: Mapping[str, Any], ladder: Ladder, servers: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """One queue item (SPEC §10): a `queries.CASE_SELECT` row and the key's servers."""
    case = case_from_row(row)
    grace, disable = deadlines(case, ladder)
    return {
        "id": case.id,
        "license_key": case.license_key,
        "status": row["status"],
        "stage": case.stage.value,
        "on_hold": case.on_hold,
        "hold_started_at": case.hold_started_at,
        "severity": row["severity"] or severity(case),
        "leak_suspected": case.leak_suspected,
        "opened_at": case.opened_at,
        "grace_ends_at": grace,
        "disable_at": disable,
        "next_deadline": next_deadline(case, ladder),
        "extension_seconds": row["extension_seconds"],
        "servers_active": case.servers_active,
        "servers_allowed": case.servers_allowed,
        "customer_name": row["customer_name"],
        "customer_email": row["customer_email"],
        "resolved_at": row["resolved_at"],
        "resolution": row["resolution"],
        "resolved_by": row["resolved_by"],
        "servers": list(servers),
    }


async def active_servers(redis: Redis, layout: KeyLayout, key: str, cutoff: datetime) -> int:
    """Servers of the key seen since `cutoff` (R11), counted as the worker counts them."""
    installations = layout.for_license(key, 0).installations
    try:
        return int(await redis.zcount(installations, cutoff.timestamp(), "+inf"))
    except (RedisError, OSError) as error:
        raise StoreUnavailable(str(error)) from error


async def servers_last_seen(
    redis: Redis, layout: KeyLayout, key: str, cutoff: datetime
) -> list[datetime]:
    """When each server of the key seen since `cutoff` was last seen (R11): their number is
    `active_servers`, their times say when they leave the active window."""
    installations = layout.for_license(key, 0).installations
    try:
        seen = await redis.zrangebyscore(installations, cutoff.timestamp(), "+inf", withscores=True)
    except (RedisError, OSError) as error:
        raise StoreUnavailable(str(error)) from error
    return [datetime.fromtimestamp(float(pair[1]), UTC) for pair in seen]


async def servers_last_seen_of(
    redis: Redis, layout: KeyLayout, keys: list[str], cutoff: datetime
) -> list[list[datetime]]:
    """`servers_last_seen` of many keys in one round trip, in the order of `keys`."""
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.zrangebyscore(
                    layout.for_license(key, 0).installations,
                    cutoff.timestamp(),
                    "+inf",
                    withscores=True,
                )
            replies = await pipe.execute()
    except (RedisError, OSError) as error:
        raise StoreUnavailable(str(error)) from error
    return [[datetime.fromtimestamp(float(pair[1]), UTC) for pair in seen] for seen in replies]


async def write_summary(redis: Redis, layout: KeyLayout, case: Case, ladder: Ladder) -> None:
    lic = layout.for_license(case.license_key, 0).license
    mapping = {
        "stage": case.stage.value,
        "grace_ends": repr(grace_ends_at(case, ladder).timestamp()),
        "disable_at": repr(disable_at(case, ladder).timestamp()),
    }
    try:
        await redis.hset(lic, mapping=mapping)  # type: ignore[arg-type]
    except (RedisError, OSError) as error:
        raise StoreUnavailable(str(error)) from error


async def clear_summary(redis: Redis, layout: KeyLayout, key: str) -> None:
    try:
        await redis.hdel(layout.for_license(key, 0).license, *SUMMARY_FIELDS)
    except (RedisError, OSError) as error:
        raise StoreUnavailable(str(error)) from error


async def refresh_license(pool: asyncpg.Pool, store: ActivationStore, key: str) -> None:
    """Re-put the license document from PostgreSQL (after the commit: R17)."""
    row = await pool.fetchrow(
        f"SELECT {LICENSE_COLUMNS}, l.xmin::text AS version FROM licenses l WHERE l.key = $1", key
    )
    if row is not None:
        await store.put_license(license_from_row(row))
        await mark_synced(pool, [(key, row["version"])])
