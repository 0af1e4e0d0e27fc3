"""Console sessions and CSRF (SPEC §6): server-side sessions in Redis, one CSRF token each.

- A login with an API token (the admin API's tokens and roles) creates a session: a random
  id in the cookie, and in Redis, under `{prefix}:console:session:{sha256(id)}`, the name, role,
  token id and the session's CSRF token. Redis holds only the id's hash, so a dump of Redis
  cannot be replayed as cookies.
- Expiry: 8 hours idle (the key's TTL, renewed on each request) and 24 hours at most (the
  cookie's Max-Age and the stored creation time). A token revoked since the login ends its
  sessions at their next request. Logout deletes the key. Redis unreachable fails closed
  (`StoreUnavailable`: the console answers 503, nobody is logged in).
- The cookie is HttpOnly, SameSite=Strict, path /console/, and Secure when the request came
  over TLS (directly, or `X-Forwarded-Proto: https` from the proxy in front).
- CSRF: every state-changing form carries the session's token, compared with
  `hmac.compare_digest`. The login form has no session yet: it carries a token that must match
  a short-lived login cookie (double submit), so another site cannot log a browser in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import asdict, dataclass

import orjson
from aiohttp import web
from redis.exceptions import RedisError

from activation.admin.state import Principal, Role
from activation.runtime import Resources
from activation.store.redis_store import StoreUnavailable

COOKIE = "console_session"
LOGIN_COOKIE = "console_login"
PATH = "/console/"
IDLE_SECONDS = 8 * 3600
MAX_SECONDS = 24 * 3600


@dataclass(frozen=True, slots=True)
class Session:
    name: str
    role: str
    token_id: int | None
    csrf: str
    created: float

    @property
    def principal(self) -> Principal:
        return Principal(self.name, Role(self.role), self.token_id)


def _key(resources: Resources, session_id: str) -> str:
    digest = hashlib.sha256(session_id.encode()).hexdigest()
    return f"{resources.layout.prefix}:console:session:{digest}"


async def create(resources: Resources, principal: Principal) -> tuple[str, Session]:
    session_id = secrets.token_urlsafe(32)
    session = Session(
        principal.name, principal.role.value, principal.token_id, secrets.token_urlsafe(32),
        time.time(),
    )  # fmt: skip
    try:
        await resources.redis.set(
            _key(resources, session_id), orjson.dumps(asdict(session)), ex=IDLE_SECONDS
        )
    except (RedisError, OSError) as error:
        raise StoreUnavailable(str(error)) from error
    return session_id, session


async def load(resources: Resources, session_id: str | None) -> Session | None:
    """The live session for the cookie's id, its idle expiry renewed; None when gone."""
    if not session_id or len(session_id) > 100 or not session_id.isascii():
        return None  # ids are URL-safe ASCII; undecodable cookie bytes name no session
    try:
        raw = await resources.redis.getex(_key(resources, session_id), ex=IDLE_SECONDS)
    except (RedisError, OSError) as error:
        raise StoreUnavailable(str(error)) from error
    if raw is None:
        return None
    session = Session(**orjson.loads(raw))
    revoked = session.token_id is not None and not await resources.pool.fetchval(
        "SELECT revoked_at IS NULL FROM api_tokens WHERE id = $1", session.token_id
    )
    if revoked or time.time() - session.created > MAX_SECONDS:
        await end(resources, session_id)
        return None
    return session


async def end(resources: Resources, session_id: str) -> None:
    try:
        await resources.redis.delete(_key(resources, session_id))
    except (RedisError, OSError) as error:
        raise StoreUnavailable(str(error)) from error


def tokens_match(expected: str | None, given: object) -> bool:
    if not expected or not isinstance(given, str) or not given or not given.isascii():
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def is_tls(request: web.Request) -> bool:
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def set_cookie(
    request: web.Request, response: web.StreamResponse, name: str, value: str, max_age: int
) -> None:
    response.set_cookie(
        name, value, path=PATH, max_age=max_age, httponly=True, samesite="Strict",
        secure=is_tls(request),
    )  # fmt: skip


def clear_cookie(response: web.StreamResponse, name: str) -> None:
    response.del_cookie(name, path=PATH)
