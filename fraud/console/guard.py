"""Route guards: who may see a page, and who may send a form (session, CSRF, role).

In this order, for a form (every non-GET route):
- no session → 403; a CSRF token missing or not the session's → 403 (nothing is changed);
- a role below the route's → 403 (a viewer's forged POST is refused even with its token).
A page without a session redirects to the login page; a role below it is 403.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from aiohttp import web

from activation.admin.state import Role
from fraud.console.render import FORM, redirect, role_of, session_of
from fraud.console.sessions import tokens_match

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LOGIN = "/console/login"
MAX_FIELD = 4000


def page(role: Role) -> Callable[[Handler], Handler]:
    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            have = role_of(request)
            if have is None:
                return redirect(LOGIN)
            if not have.allows(role):
                raise web.HTTPForbidden(reason=f"this page needs the {role.value} role")
            return await handler(request)

        return guarded

    return decorate


async def read_form(request: web.Request) -> dict[str, str]:
    """The posted fields as text. The console's forms are URL-encoded (no file fields): other
    bodies are 415; undecodable bytes, an unknown charset, files, over-long values and NUL
    (which PostgreSQL text cannot hold) are 400."""
    if request.content_type != "application/x-www-form-urlencoded":
        raise web.HTTPUnsupportedMediaType(reason="forms are sent URL-encoded")
    try:
        posted = await request.post()
    except (ValueError, LookupError):  # UnicodeDecodeError is a ValueError
        raise web.HTTPBadRequest(reason="the form is not readable text") from None
    fields: dict[str, str] = {}
    for name, value in posted.items():
        if not isinstance(value, str) or len(value) > MAX_FIELD or "\x00" in value:
            raise web.HTTPBadRequest(reason=f"field {name[:40]!r} is not a short text")
        fields[name] = value
    return fields


def form(role: Role) -> Callable[[Handler], Handler]:
    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            session = session_of(request)
            fields = await read_form(request)
            if session is None:
                raise web.HTTPForbidden(reason="your session has ended; log in again")
            if not tokens_match(session.csrf, fields.get("csrf")):
                raise web.HTTPForbidden(reason="the form's CSRF token is missing or wrong")
            if not role_of(request) or not Role(session.role).allows(role):
                raise web.HTTPForbidden(reason=f"this needs the {role.value} role")
            request[FORM] = fields
            return await handler(request)

        return guarded

    return decorate
