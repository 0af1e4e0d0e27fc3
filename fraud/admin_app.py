"""The whole admin app as the composition roots serve it: the admin API with the fraud side
mounted (the case routes, the review console, each license's open case)."""

from __future__ import annotations

from aiohttp import web

from activation.admin import app as admin
from activation.admin.case_side import CaseSide
from activation.runtime import Resources
from fraud.console import create_console_app
from fraud.review import queries, routes

CASES = CaseSide(
    routes=routes.routes,
    prepare=routes.prepare,
    console=create_console_app,
    open_case=queries.open_case_of,
    case_item=routes.case_item,
    enable_disabled_case=routes.enable_disabled_case,
)


def create_admin_app(resources: Resources) -> web.Application:
    return admin.create_admin_app(resources, CASES)
