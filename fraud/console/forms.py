"""The console's forms: log in, log out, and the fraud team's case actions.

A case action goes through `fraud.review.actions.perform`, the code path of
`POST /admin/v1/cases/{id}/actions`: same rules, same transaction, same audit rows. Disable and
resolve need the "I confirm" box ticked (checked here, on the server, before anything runs). A
refusal re-renders the case page with the reason (422 bad input, 409 the case's state); success
redirects to the case page (303), which shows the new state and timeline.
"""

from __future__ import annotations

import secrets

from aiohttp import web

from activation.admin.auth import failures_of, principal_for
from activation.admin.parsing import whole_number
from activation.admin.state import Role, resources_of
from activation.client_address import request_client
from activation.licensing.model import TeamAction
from fraud.cases import ActionRefused
from fraud.console import sessions
from fraud.console.guard import LOGIN, form, read_form
from fraud.console.pages import show_case
from fraud.console.render import FORM, redirect, render, session_of
from fraud.console.views import DESTRUCTIVE
from fraud.review import actions
from fraud.review.routes import MAX_NOTE, ladder_of

LOGIN_SECONDS = 1800

routes = web.RouteTableDef()


@routes.get("/login")
async def login_page(request: web.Request) -> web.Response:
    if session_of(request) is not None:
        return redirect("/console/")
    return _login_form(request)


def _login_form(request: web.Request, error: str | None = None) -> web.Response:
    token = secrets.token_urlsafe(32)
    response = render(
        request, "login.html", status=401 if error else 200, login_csrf=token, error=error
    )
    sessions.set_cookie(request, response, sessions.LOGIN_COOKIE, token, LOGIN_SECONDS)
    return response


@routes.post("/login")
async def login(request: web.Request) -> web.Response:
    fields = await read_form(request)
    if not sessions.tokens_match(request.cookies.get(sessions.LOGIN_COOKIE), fields.get("csrf")):
        raise web.HTTPForbidden(reason="the login form expired or came from elsewhere; reload it")
    resources = resources_of(request)
    failures = failures_of(resources)
    address = request_client(request, resources.settings.trusted_proxies)
    wait = await failures.blocked_for(address)
    if wait:
        minutes = -(-wait // 60)
        response = _login_form(request, f"Too many failed logins; try again in {minutes} min.")
        response.set_status(429)
        response.headers["Retry-After"] = str(wait)
        return response
    principal = await principal_for(resources, fields.get("token", "").strip())
    if principal is None:
        await failures.count(address)
        return _login_form(request, "Unknown or revoked token.")
    session_id, _ = await sessions.create(resources, principal)
    response = redirect("/console/")
    sessions.set_cookie(request, response, sessions.COOKIE, session_id, sessions.MAX_SECONDS)
    sessions.clear_cookie(response, sessions.LOGIN_COOKIE)
    return response


@routes.post("/logout")
@form(Role.VIEWER)
async def logout(request: web.Request) -> web.Response:
    await sessions.end(resources_of(request), request.cookies.get(sessions.COOKIE, ""))
    response = redirect(LOGIN)
    sessions.clear_cookie(response, sessions.COOKIE)
    return response


@routes.post(r"/cases/{id:\d{1,18}}/actions")
@form(Role.REVIEWER)
async def case_action(request: web.Request) -> web.Response:
    case_id = int(request.match_info["id"])
    fields = request[FORM]
    try:
        action = TeamAction(fields.get("action", ""))
    except ValueError:
        return await show_case(request, case_id, status=422, error="Unknown action.")
    if action in DESTRUCTIVE and fields.get("confirm") != "yes":
        error = f"Tick “I confirm” to {action.value.replace('_', ' ')} this case."
        return await show_case(request, case_id, status=422, error=error)
    note = fields.get("note", "").strip()[:MAX_NOTE] or None
    try:
        days, max_servers = _number(fields, "days"), _number(fields, "max_servers")
        await actions.perform(
            resources_of(request), ladder_of(request), case_id, action,
            actor=_actor(request), at=await resources_of(request).clock.now(), note=note,
            days=days, max_servers=max_servers,
        )  # fmt: skip
    except actions.CaseNotFound:
        raise web.HTTPNotFound(reason=f"no case {case_id}") from None
    except ActionRefused as refused:
        status = 422 if refused.invalid_input else 409
        return await show_case(request, case_id, status=status, error=refused.reason)
    return redirect(f"/console/cases/{case_id}?done={action.value}")


def _actor(request: web.Request) -> str:
    session = session_of(request)
    assert session is not None  # the form guard ran
    return session.name


def _number(fields: dict[str, str], name: str) -> int | None:
    raw = fields.get(name, "").strip()
    if not raw:
        return None
    number = whole_number(raw, max_digits=9)
    if number is None:
        raise ActionRefused(f"{name.replace('_', ' ')} must be a whole number", invalid_input=True)
    return number
