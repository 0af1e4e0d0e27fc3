"""The admin app's typed state: what handlers reach through `request.app[...]`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

import orjson
from aiohttp import web

from activation.runtime import Resources


class Role(StrEnum):
    """Token roles, ordered: viewer < reviewer < admin."""

    VIEWER = "viewer"
    REVIEWER = "reviewer"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


@dataclass(frozen=True, slots=True)
class Principal:
    """Who sent the request: the token's name is the audit log's actor."""

    name: str
    role: Role
    token_id: int | None


RESOURCES = web.AppKey("resources", Resources)
PRINCIPAL = web.RequestKey("principal", Principal)


def resources_of(request: web.Request) -> Resources:
    return request.app[RESOURCES]


async def today(request: web.Request) -> date:
    return (await resources_of(request).clock.now()).date()


async def now(request: web.Request) -> datetime:
    return await resources_of(request).clock.now()


def to_json(value: Any) -> bytes:
    """Dates as YYYY-MM-DD, datetimes as ISO-8601 UTC with 'Z'."""
    return orjson.dumps(value, option=orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS)


def render(value: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=to_json(value), content_type="application/json")
