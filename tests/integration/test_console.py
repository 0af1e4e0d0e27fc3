"""The review console over HTTP (SPEC §6): login and sessions, CSRF on every state-changing
route (enumerated from the router), escaping, the security headers on every response, roles,
and actions audited exactly as the JSON API audits them."""

from __future__ import annotations

import re
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from redis import exceptions as redis_errors

from activation.admin.state import RESOURCES
from activation.runtime import Resources
from activation.store.redis_store import StoreUnavailable
from activation.web.problems import RETRY_AFTER_SECONDS
from fraud.console import create_console_app
from fraud.console.app import console_middleware
from fraud.escalation import DEFAULT_LADDER
from fraud.worker import Worker
from metrics import WorkerMetrics
from tests.conftest import BOOTSTRAP_TOKEN
from tests.integration.helpers import HOSTILE_VALUES, activate, create_license

Client = TestClient[Any, Any]
Headers = dict[str, str]
HOSTILE = "<script>alert(1)</script>"
CSP = (
    "default-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


async def login(client: Client, token: str) -> str:
    """Log in through the form; the session's CSRF token (from the queue page)."""
    client.session.cookie_jar.clear()
    form = await client.get("/console/login")
    response = await client.post(
        "/console/login",
        data={"csrf": csrf_of(await form.text()), "token": token},
        allow_redirects=False,
    )
    assert response.status == 303, await response.text()
    queue = await client.get("/console/")
    assert queue.status == 200
    return csrf_of(await queue.text())


async def new_token(admin: Client, headers: Headers, role: str) -> str:
    response = await admin.post(
        "/admin/v1/tokens", json={"name": f"{role}-1", "role": role}, headers=headers
    )
    assert response.status == 201, await response.text()
    secret: str = (await response.json())["token"]
    return secret


@pytest.fixture
async def case(
    admin_client: Client, public_client: Client, admin_headers: Headers, resources: Resources
) -> tuple[int, str]:
    """An open case whose second server has a hostile hostname."""
    key: str = (await create_license(admin_client, admin_headers, purchased_on="2026-09-01"))["key"]
    await activate(public_client, key, "server-a")
    await activate(public_client, key, "server-b", hostname=HOSTILE)
    await Worker(resources, DEFAULT_LADDER, {}, WorkerMetrics()).run_once()
    case_id: int = await resources.pool.fetchval(
        "SELECT id FROM fraud_cases WHERE license_key = $1", key
    )
    return case_id, key


async def audit_count(resources: Resources) -> int:
    count: int = await resources.pool.fetchval("SELECT count(*) FROM audit_log")
    return count


async def test_login_bad_token_cookie_flags_and_logout(admin_client: Client) -> None:
    assert (await admin_client.get("/console/", allow_redirects=False)).headers[
        "Location"
    ] == "/console/login"
    form = await admin_client.get("/console/login")
    response = await admin_client.post(
        "/console/login", data={"csrf": csrf_of(await form.text()), "token": "nope"}
    )
    assert response.status == 401 and "Unknown or revoked token" in await response.text()
    assert (await admin_client.get("/console/", allow_redirects=False)).status == 303

    form = await admin_client.get("/console/login")
    response = await admin_client.post(
        "/console/login",
        data={"csrf": csrf_of(await form.text()), "token": BOOTSTRAP_TOKEN},
        headers={"X-Forwarded-Proto": "https"},
        allow_redirects=False,
    )
    cookie = next(c for c in response.headers.getall("Set-Cookie") if "console_session=" in c)
    for flag in ("HttpOnly", "SameSite=Strict", "Path=/console/", "Secure", "Max-Age="):
        assert flag in cookie, cookie
    csrf = await login(admin_client, BOOTSTRAP_TOKEN)
    sid = admin_client.session.cookie_jar.filter_cookies(admin_client.make_url("/console/"))
    stolen = sid["console_session"].value
    response = await admin_client.post(
        "/console/logout", data={"csrf": csrf}, allow_redirects=False
    )
    assert (response.status, response.headers["Location"]) == (303, "/console/login")
    assert (await admin_client.get("/console/", allow_redirects=False)).status == 303
    replay = await admin_client.get(
        "/console/", cookies={"console_session": stolen}, allow_redirects=False
    )
    assert replay.status == 303  # the session is gone server-side, not only from the browser


async def test_token_guessing_is_throttled_per_client_address(admin_client: Client) -> None:
    """After 10 failed logins from one address even the right token is refused (429) for
    15 minutes: a token cannot be guessed by trying."""
    for _ in range(10):
        form = await admin_client.get("/console/login")
        response = await admin_client.post(
            "/console/login", data={"csrf": csrf_of(await form.text()), "token": "guess"}
        )
        assert response.status == 401
    form = await admin_client.get("/console/login")
    response = await admin_client.post(
        "/console/login",
        data={"csrf": csrf_of(await form.text()), "token": BOOTSTRAP_TOKEN},
        allow_redirects=False,
    )
    assert response.status == 429
    assert 890 <= int(response.headers["Retry-After"]) <= 900  # 15 minutes from the last failure
    assert "Too many failed logins" in await response.text()
    assert (await admin_client.get("/console/", allow_redirects=False)).status == 303


async def test_every_state_changing_route_needs_the_csrf_token(
    admin_client: Client, admin_headers: Headers, resources: Resources, case: tuple[int, str]
) -> None:
    case_id, key = case
    viewer_secret = await new_token(admin_client, admin_headers, "viewer")
    token_id = await resources.pool.fetchval("SELECT max(id) FROM api_tokens")
    changing = [
        route.resource.canonical
        for route in create_console_app(resources).router.routes()
        if route.method not in ("GET", "HEAD") and route.resource is not None
    ]
    ids = {"/cases/": case_id, "/tokens/": token_id}
    paths = sorted(
        "/console"
        + path.replace("{id}", str(next((v for k, v in ids.items() if k in path), 0))).replace(
            "{key}", key
        )
        for path in changing
    )
    assert len(paths) >= 5, paths  # login, logout, case actions, token create and revoke
    body = {
        "action": "disable", "confirm": "yes", "note": "x", "name": "evil", "role": "admin",
        "token": BOOTSTRAP_TOKEN,
    }  # fmt: skip
    audited = await audit_count(resources)
    for csrf in (None, "", "forged-token"):
        await login(admin_client, BOOTSTRAP_TOKEN)
        data = body if csrf is None else body | {"csrf": csrf}
        for path in paths:
            response = await admin_client.post(path, data=data, allow_redirects=False)
            assert response.status == 403, (path, csrf, response.status)
            assert response.headers["Content-Security-Policy"] == CSP
        assert (await admin_client.get("/console/", allow_redirects=False)).status == 200
    admin_client.session.cookie_jar.clear()
    for path in paths:  # no session at all
        assert (await admin_client.post(path, data=body)).status == 403, path
    assert await audit_count(resources) == audited
    row = await resources.pool.fetchrow("SELECT stage, on_hold FROM fraud_cases")
    assert (row["stage"], row["on_hold"]) == ("grace", False)
    assert await resources.pool.fetchval("SELECT count(*) FROM api_tokens") == 1
    assert await resources.pool.fetchval("SELECT revoked_at FROM api_tokens") is None
    await login(admin_client, viewer_secret)  # the viewer's token still works


async def test_hostile_hostname_renders_escaped(
    admin_client: Client, case: tuple[int, str]
) -> None:
    case_id, key = case
    await login(admin_client, BOOTSTRAP_TOKEN)
    for path in (
        f"/console/cases/{case_id}",
        "/console/",
        "/console/?q=%3Cscript",
        f"/console/licenses/{key}",
    ):
        html = await (await admin_client.get(path)).text()
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path
        assert HOSTILE not in html and "<script" not in html, path
    html = await (await admin_client.get("/console/?q=%3Cscript%3Ex")).text()
    assert 'value="&lt;script&gt;x"' in html
    for page in ("%C2%B2", "9" * 5000, "-2", "x"):  # '²' and 5,000 digits: int() refuses both
        response = await admin_client.get(f"/console/?page={page}")
        assert response.status == 200, page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in await response.text(), page  # page 1


async def test_every_page_carries_the_security_headers(
    admin_client: Client, admin_headers: Headers, case: tuple[int, str], resources: Resources
) -> None:
    case_id, key = case
    issued = await admin_client.post(
        f"/admin/v1/licenses/{key}/offline-files",
        json={"fingerprint": "server-a", "product": "smartermail", "version": "16.3.6989",
              "days": 30},
        headers=admin_headers,
    )  # fmt: skip
    assert issued.status == 201, await issued.text()
    file_id = (await issued.json())["id"]
    gets = [
        f"/console/offline-files/{file_id}",
        f"/console/offline-files/{file_id}/license.txt",
        "/console/login",
        "/console/",
        "/console/dashboard",
        "/console/tokens",
        f"/console/cases/{case_id}",
        f"/console/licenses/{key}",
        "/console/cases/999999",
        "/console/nowhere",
        "/console/static/console.css",
    ]
    router = create_console_app(resources).router
    routes = [r.resource.canonical for r in router.routes() if r.method == "GET" and r.resource]
    for path in routes:  # every GET route of the router is among the pages fetched
        if "static" not in path:
            assert any(re.fullmatch(re.sub(r"\{\w+\}", "[^/]+", path), g[8:]) for g in gets)
    await login(admin_client, BOOTSTRAP_TOKEN)
    responses = [await admin_client.get(path) for path in gets]
    responses.append(await admin_client.post("/console/login", data={}))
    responses.append(await admin_client.delete("/console/"))
    for response in responses:
        assert response.headers["Content-Security-Policy"] == CSP, response.url
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"
        if response.content_type == "text/html":
            html = await response.text()
            assert "<script" not in html and " style=" not in html, response.url
    assert [r.status for r in responses[-5:]] == [404, 404, 200, 403, 405]


async def test_viewer_sees_no_actions_and_cannot_forge_one(
    admin_client: Client, admin_headers: Headers, resources: Resources, case: tuple[int, str]
) -> None:
    case_id, _ = case
    csrf = await login(admin_client, await new_token(admin_client, admin_headers, "viewer"))
    html = await (await admin_client.get(f"/console/cases/{case_id}")).text()
    assert "/actions" not in html and "Disable key now" not in html
    assert 'name="action"' not in html
    audited = await audit_count(resources)
    response = await admin_client.post(
        f"/console/cases/{case_id}/actions", data={"csrf": csrf, "action": "hold"}
    )
    assert response.status == 403 and "reviewer" in await response.text()
    assert (await admin_client.get("/console/tokens")).status == 403
    assert await audit_count(resources) == audited
    assert not await resources.pool.fetchval("SELECT on_hold FROM fraud_cases")


async def test_reviewer_actions_take_the_json_api_path(
    admin_client: Client, admin_headers: Headers, resources: Resources, case: tuple[int, str]
) -> None:
    case_id, _ = case
    csrf = await login(admin_client, await new_token(admin_client, admin_headers, "reviewer"))
    url = f"/console/cases/{case_id}/actions"

    async def post(status: int, **fields: str) -> str:
        response = await admin_client.post(url, data={"csrf": csrf} | fields)
        assert response.status == status, await response.text()
        return await response.text()

    assert "The case is on hold." in await post(200, action="hold", note="calling")
    await post(409, action="hold")
    await post(200, action="release_hold")
    assert "days must be a whole number" in await post(422, action="extend", days="x")
    assert "days must be a whole number" in await post(422, action="extend", days="²")
    await post(200, action="extend", days="7")
    assert "I confirm" in await post(422, action="disable")
    assert await resources.pool.fetchval("SELECT status FROM licenses") == "active"
    await post(200, action="disable", confirm="yes", note="resale")
    assert await resources.pool.fetchval("SELECT status FROM licenses") == "disabled"
    html = await post(200, action="enable", note="paid")
    assert "The key is enabled again." in html
    response = await admin_client.get(
        "/admin/v1/audit", params={"target": f"case:{case_id}"}, headers=admin_headers
    )
    items = (await response.json())["items"]
    assert [(i["action"], i["actor"]) for i in items] == [
        (f"case.{name}", "reviewer-1")
        for name in ("enable", "disable", "extend", "release_hold", "hold")
    ]
    dashboard = await (await admin_client.get("/console/dashboard")).text()
    assert "<svg" in dashboard and "Activations per day" in dashboard


async def test_no_console_input_yields_a_server_error(
    admin_client: Client, admin_headers: Headers, resources: Resources, case: tuple[int, str]
) -> None:
    """Every query parameter and form field of the console, given each hostile value, gets a
    page or a 4xx (SPEC §9 Bad input), never a 5xx."""
    case_id, key = case
    token_id = await resources.pool.fetchval("SELECT max(id) FROM api_tokens")
    await login(admin_client, BOOTSTRAP_TOKEN)
    csrf = csrf_of(await (await admin_client.get("/console/")).text())
    queries = {"/console/": ("stage", "severity", "product", "q", "page")}
    queries |= {f"/console/cases/{case_id}": ("done",), f"/console/licenses/{key}": ("x",)}
    # Each field is varied while the others hold values the form accepts.
    forms = {
        f"/console/cases/{case_id}/actions": (
            {"action": "extend", "days": "3", "note": "ok"},
            ("action", "note", "days", "max_servers", "confirm"),
        ),
        "/console/tokens": ({"name": "fuzz", "role": "viewer"}, ("name", "role")),
        f"/console/tokens/{token_id}/revoke": ({"confirm": "no"}, ("confirm",)),
    }
    failures = []
    for value in HOSTILE_VALUES:
        for path, names in queries.items():
            for name in names:
                response = await admin_client.get(path, params={name: value})
                if response.status >= 500:
                    failures.append((path, name, value[:20], response.status))
        for path, (valid, names) in forms.items():
            for name in names:
                fields = valid | {"csrf": csrf, name: value}
                response = await admin_client.post(path, data=fields, allow_redirects=False)
                if response.status >= 500:
                    failures.append((path, name, value[:20], response.status))
        response = await admin_client.post(
            "/console/login", data={"token": value}, allow_redirects=False
        )
        if response.status >= 500:
            failures.append(("/console/login", "token", value[:20], response.status))
    assert failures == [], "\n".join(map(repr, failures))


@pytest.mark.parametrize(
    ("failure", "named"),
    [
        (StoreUnavailable("gone"), "Redis"),
        (redis_errors.ConnectionError("refused"), "Redis"),
        (asyncpg.exceptions.AdminShutdownError("terminating connection"), "PostgreSQL"),
        (asyncpg.exceptions.ConnectionDoesNotExistError("closed"), "PostgreSQL"),
    ],
)
async def test_an_outage_is_a_503_page_with_retry_after(
    resources: Resources, aiohttp_client: Any, failure: Exception, named: str
) -> None:
    """The console answers a dependency outage as the JSON APIs do (503, Retry-After)."""

    async def failing(request: web.Request) -> web.Response:
        raise failure

    app = web.Application(middlewares=[console_middleware])
    app[RESOURCES] = resources
    app.router.add_get("/", failing)
    client: Client = await aiohttp_client(app)
    response = await client.get("/")
    assert response.status == 503
    low, high = RETRY_AFTER_SECONDS
    assert low <= int(response.headers["Retry-After"]) <= high
    assert f"{named} is unavailable" in await response.text()
