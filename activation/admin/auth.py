"""Bearer tokens with roles (SPEC §6): stored as sha256 in `api_tokens.token_hash`.

- `Authorization: Bearer <token>`; missing, unknown or revoked → 401 problem.
- A role lower than the route needs → 403 problem (viewer < reviewer < admin).
- `ADMIN_BOOTSTRAP_TOKEN` is accepted as an admin named "bootstrap", so a fresh deployment can
  create its first real tokens.
- Wrong tokens are throttled per client address → 429 problem with Retry-After
  (auth_failures.py, shared with the console's login).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web

from activation.admin.auth_failures import AuthFailures
from activation.admin.state import PRINCIPAL, Principal, Role, resources_of
from activation.client_address import request_client
from activation.runtime import Resources
from activation.web.problems import ProblemError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

BOOTSTRAP_NAME = "bootstrap"


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _unauthorized(detail: str) -> ProblemError:
    error = ProblemError(401, detail)
    error.headers = {"WWW-Authenticate": 'Bearer realm="admin"'}
    return error


async def authenticate(request: web.Request) -> Principal:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("an Authorization: Bearer <token> header is required")
    resources = resources_of(request)
    failures = failures_of(resources)
    address = request_client(request, resources.settings.trusted_proxies)
    wait = await failures.blocked_for(address)
    if wait:
        error = ProblemError(429, "too many wrong tokens from this address; retry later")
        error.headers = {"Retry-After": str(wait)}
        raise error
    principal = await principal_for(resources, token)
    if principal is None:
        await failures.count(address)
        raise _unauthorized("unknown or revoked token")
    return principal


def failures_of(resources: Resources) -> AuthFailures:
    """The failed-authentication counts of this deployment (admin API and console)."""
    return AuthFailures(resources.redis, resources.layout.prefix)


async def principal_for(resources: Resources, token: str) -> Principal | None:
    """Who a token is (the bootstrap token is an admin); None if unknown or revoked. The one
    lookup behind both the JSON API's bearer tokens and the console's login."""
    if not token.isascii():  # tokens are URL-safe ASCII; undecodable header bytes name none
        return None
    bootstrap = resources.settings.admin_bootstrap_token
    if bootstrap and hmac.compare_digest(token.encode(), bootstrap.encode()):
        return Principal(BOOTSTRAP_NAME, Role.ADMIN, None)
    row = await resources.pool.fetchrow(
        "SELECT id, name, role FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
        token_hash(token),
    )
    return None if row is None else Principal(row["name"], Role(row["role"]), row["id"])


def requires(role: Role) -> Callable[[Handler], Handler]:
    """Route decorator: authenticate, check the role, keep the principal on the request."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            principal = await authenticate(request)
            if not principal.role.allows(role):
                raise ProblemError(
                    403, f"this needs the {role.value} role; token has {principal.role.value}"
                )
            request[PRINCIPAL] = principal
            return await handler(request)

        return guarded

    return decorate


def actor(request: web.Request) -> str:
    return request[PRINCIPAL].name
