"""The fraud side's share of the admin app, handed in by the one who builds it (fraud/admin_app.py
for the composition roots), so the admin API never imports fraud/: the case routes, the review
console mounted under /console/, and how a license's view shows its open case."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiohttp import web

from activation.runtime import Resources

CaseRow = Mapping[str, Any]


@dataclass(frozen=True)
class CaseSide:
    routes: web.RouteTableDef
    # Called once on the admin app before it serves (e.g. to store the escalation ladder).
    prepare: Callable[[web.Application, Resources], None]
    console: Callable[[Resources], web.Application]
    # A license's open case, read on the caller's connection (None without one) ...
    open_case: Callable[[asyncpg.Connection, str], Awaitable[CaseRow | None]]
    # ... and shown as a review-queue item with the license's servers.
    case_item: Callable[[web.Request, CaseRow, list[dict[str, Any]]], dict[str, Any]]
    # Enables a key its open case disabled through that case (True), or does nothing (False).
    enable_disabled_case: Callable[[web.Request, str], Awaitable[bool]]


CASE_SIDE = web.AppKey("case_side", CaseSide)


def case_side_of(request: web.Request) -> CaseSide | None:
    """The case side of the admin app `request` reached, from the console's sub-app too."""
    return request.config_dict.get(CASE_SIDE)
