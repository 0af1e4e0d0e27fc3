"""The console's offline license files: the issuing form (license and case pages, reviewer and
up, CSRF-checked by the form guard) and the page that shows an issued file.

Issuing goes through `activation.admin.offline_files.issue`, the code path of
`POST /admin/v1/licenses/{key}/offline-files`: same decision, recording, signature and audit.
A refusal (a disabled key, a server beyond the allowed ones without the confirmation, bad
input) re-renders the page the form was sent from, with the reason.
"""

from __future__ import annotations

from aiohttp import web

from activation.admin.license_common import path_key
from activation.admin.offline_files import issue, parse_order
from activation.admin.parsing import whole_number
from activation.admin.state import Role, resources_of
from activation.web.problems import ProblemError
from fraud.console.guard import form, page
from fraud.console.pages import show_case, show_license
from fraud.console.render import FORM, redirect, render, session_of

routes = web.RouteTableDef()


@routes.post(r"/licenses/{key:[A-Za-z0-9-]{1,64}}/offline-files")
@form(Role.REVIEWER)
async def issue_file(request: web.Request) -> web.Response:
    key = path_key(request)
    fields = request[FORM]
    case_id = whole_number(fields.get("from_case", ""))
    days = whole_number(fields.get("days", "").strip(), max_digits=9)
    session = session_of(request)
    assert session is not None  # the form guard ran
    data = {
        "fingerprint": fields.get("fingerprint", "").strip(),
        "hostname": fields.get("hostname", "").strip() or None,
        "product": fields.get("product", "").strip(),
        "version": fields.get("version", "").strip(),
        "days": days if days is not None else fields.get("days"),
        "confirm_over_limit": fields.get("confirm_over_limit") == "yes",
    }
    resources = resources_of(request)
    try:
        issued = await issue(
            resources, parse_order(key, data), session.name, await resources.clock.now()
        )
    except ProblemError as refused:
        if case_id is not None:
            return await show_case(request, case_id, status=refused.status, error=refused.detail)
        return await show_license(request, key, status=refused.status, error=refused.detail)
    return redirect(f"/console/offline-files/{issued.id}")


@routes.get(r"/offline-files/{id:\d{1,18}}")
@page(Role.VIEWER)
async def file_page(request: web.Request) -> web.Response:
    async with resources_of(request).pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT * FROM offline_files WHERE id = $1", int(request.match_info["id"])
        )
    if row is None:
        raise web.HTTPNotFound(reason="no such offline file")
    return render(request, "offline_file.html", file=dict(row))


@routes.get(r"/offline-files/{id:\d{1,18}}/license.txt")
@page(Role.VIEWER)
async def file_download(request: web.Request) -> web.Response:
    async with resources_of(request).pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT license_key, fingerprint, file FROM offline_files WHERE id = $1",
            int(request.match_info["id"]),
        )
    if row is None:
        raise web.HTTPNotFound(reason="no such offline file")
    response = web.Response(text=row["file"], content_type="text/plain", charset="utf-8")
    name = f"license-{row['license_key']}-{request.match_info['id']}.txt"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
