"""HTML rendering for the console: one autoescaping Jinja2 environment, the security headers,
and the request's session (set by the app's middleware)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import jinja2
from aiohttp import web

from activation.admin.state import Role
from fraud.console.sessions import Session

SESSION = web.RequestKey("console_session", Session)
FORM = web.RequestKey("console_form", dict)

# No inline script or style anywhere: the CSP allows only the console's own files.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def _when(value: datetime | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.strftime("%Y-%m-%d %H:%M")


def _day(value: date | datetime | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value[:10]
    return value.strftime("%Y-%m-%d")


ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("fraud.console", "templates"),
    autoescape=True,  # every template: a hostile hostname renders as text
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters["when"] = _when
ENV.filters["day"] = _day


def session_of(request: web.Request) -> Session | None:
    return request.get(SESSION)


def role_of(request: web.Request) -> Role | None:
    session = session_of(request)
    return None if session is None else Role(session.role)


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    session, role = session_of(request), role_of(request)
    base = {
        "me": session,
        "csrf": "" if session is None else session.csrf,
        "can_act": role is not None and role.allows(Role.REVIEWER),
        "is_admin": role is not None and role.allows(Role.ADMIN),
        "path": request.path,
    }
    text = ENV.get_template(template).render(base | context)
    response = web.Response(text=text, status=status, content_type="text/html", charset="utf-8")
    response.headers["Cache-Control"] = "no-store"
    return response


def redirect(location: str) -> web.Response:
    """303 See Other: after a form, the browser GETs the page (no resubmission on reload)."""
    return web.Response(status=303, headers={"Location": location})
