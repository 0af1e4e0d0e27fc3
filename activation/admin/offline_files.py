"""Offline license files for air-gapped servers (SPEC §5, "Offline activation").

`POST /admin/v1/licenses/{key}/offline-files` (reviewer or admin; the console's license and
case pages issue them through `issue` too):

- The file's body is the answer `POST /v1/activations` would give this server now: the same
  activation script records the server (it counts, remembers when the key went over its limit,
  appends the event from which the worker opens a case), and the same `Answerer` decides and
  renders, with `valid_until` = now + `days` (1–400) and `"offline": true` added.
- The server stays an active installation until `valid_until` although it never phones home:
  its last-seen time in Redis is raised to `valid_until` − the active window, so the activation
  script, the worker and the reviewers' counts (all "seen within the window", R11) count it
  until `valid_until`, and no longer. (With fewer days than the window it counts for the
  window, like any activation.)
- A disabled key gets 409 (R17: no new installations of it). A server beyond the key's allowed
  servers (R12) gets 409 too unless `confirm_over_limit` is true: then it is recorded like such
  an activation, and the worker opens the case (R13) from its event.
- Each file is stored (`offline_files`, with the armored text) and audited
  (`license.offline_file`).
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import orjson
from aiohttp import web
from redis.exceptions import RedisError

from activation.admin import audit
from activation.admin import parsing as p
from activation.admin.auth import actor, requires
from activation.admin.license_common import not_found, path_key
from activation.admin.state import Role, render, resources_of
from activation.api.answers import Answerer
from activation.api.parsing import ActivationBody, parse_activation
from activation.licensing.model import LicenseStatus
from activation.runtime import Resources
from activation.store import admin_store
from activation.store.redis_store import (
    ActivationRequest,
    RateLimited,
    Recorded,
    StoreUnavailable,
)
from activation.web.problems import ProblemError
from activation_client.licensefile import LicenseFile

MIN_DAYS, MAX_DAYS = 1, 400
OFFLINE_IP = "offline"  # what the installation's address shows: the file was not fetched

routes = web.RouteTableDef()


@dataclass(frozen=True, slots=True)
class OfflineOrder:
    body: ActivationBody
    days: int
    confirm_over_limit: bool


@dataclass(frozen=True, slots=True)
class IssuedFile:
    id: int
    code: str
    valid_until: datetime | None
    signed: LicenseFile

    def document(self) -> dict[str, Any]:
        signed = self.signed
        return {
            "id": self.id,
            "body": base64.b64encode(signed.body).decode(),
            "signature": signed.signature,
            "key_id": signed.key_id,
            "file": signed.armored(),
        }


def parse_order(key: str, data: dict[str, Any]) -> OfflineOrder:
    """The request, validated as an activation's fields are (api/parsing.py), plus `days` and
    `confirm_over_limit`; 400 naming the field otherwise."""
    fields = {name: data.get(name) for name in ("fingerprint", "hostname", "product", "version")}
    fields |= {"addons": data.get("addons"), "license_key": key, "nonce": secrets.token_hex(16)}
    days = p.opt_integer(data, "days", minimum=MIN_DAYS, maximum=MAX_DAYS)
    if days is None:
        raise ProblemError(400, f"days: is required ({MIN_DAYS} to {MAX_DAYS})", field="days")
    confirm = p.boolean(data, "confirm_over_limit", default=False)
    return OfflineOrder(parse_activation(fields), days, confirm)


def beyond_limit(servers_active: int, already_counted: bool, servers_allowed: int) -> bool:
    """Whether recording one more server takes the key over its allowed servers (R12)."""
    return not already_counted and servers_active + 1 > servers_allowed


@routes.post("/admin/v1/licenses/{key}/offline-files")
@requires(Role.REVIEWER)
async def create_offline_file(request: web.Request) -> web.Response:
    order = parse_order(path_key(request), await p.json_body(request))
    resources = resources_of(request)
    issued = await issue(resources, order, actor(request), await resources.clock.now())
    return render(issued.document(), 201)


async def issue(resources: Resources, order: OfflineOrder, who: str, at: datetime) -> IssuedFile:
    """Decide, record, sign, store and audit one offline file (see the module docstring)."""
    signer = resources.signer
    if signer is None:
        raise RuntimeError("issuing offline files needs the signing key")
    body = order.body
    key = body.license_key
    async with resources.pool.acquire() as conn:
        record = await admin_store.fetch_license(conn, key)
    if record is None:
        raise not_found(key)
    if record.license.status is LicenseStatus.DISABLED:
        raise ProblemError(409, f"license {key} is disabled: no offline file can be issued")
    window = resources.settings.active_window
    counted, active = await _servers(resources, key, body.fingerprint, at - window)
    allowed = record.license.max_servers
    if beyond_limit(active, counted, allowed) and not order.confirm_over_limit:
        raise ProblemError(
            409,
            f"this server would be server {active + 1} of the {allowed} license {key} allows; "
            "send confirm_over_limit: true to issue the file anyway (a fraud case opens, as "
            "for such an activation)",
            field="confirm_over_limit",
        )
    outcome = await resources.store.activate(
        ActivationRequest(
            key, body.fingerprint, body.hostname, body.version_text, OFFLINE_IP,
            f"offline-{secrets.token_hex(12)}",
        ),
        at,
    )  # fmt: skip
    if isinstance(outcome, RateLimited):
        error = ProblemError(429, f"too many requests ({outcome.limited_by} limit); retry later")
        error.headers = {"Retry-After": str(outcome.retry_after)}
        raise error
    if not isinstance(outcome, Recorded):
        raise not_found(key)
    valid_for = timedelta(days=order.days)
    await _keep_active_until(resources, key, body.fingerprint, at + valid_for - window)
    releases = resources.releases
    code, answer = Answerer(resources.settings.grace, valid_for).answer(
        body, outcome, (releases.generation, releases.for_product(body.product)), at
    )
    document = orjson.loads(answer) | {"offline": True}
    signed_body = orjson.dumps(document)
    signed = LicenseFile(signed_body, signer.header(signed_body), signer.key_id)
    valid_until = at + valid_for if document["valid_until"] is not None else None
    async with resources.pool.acquire() as conn, conn.transaction():
        file_id = await _store(conn, order, code, document["valid"], signed, at, valid_until, who)
        await audit.record(
            conn, at=at, actor=who, action="license.offline_file", target=f"license:{key}",
            after={
                "offline_file": file_id, "fingerprint": body.fingerprint,
                "hostname": body.hostname, "version": body.version_text, "code": code,
                "valid_until": valid_until, "key_id": signer.key_id,
                "servers_active": outcome.servers_active,
                "servers_allowed": outcome.servers_allowed,
            },
        )  # fmt: skip
    return IssuedFile(file_id, code, valid_until, signed)


async def _servers(
    resources: Resources, key: str, fingerprint: str, cutoff: datetime
) -> tuple[bool, int]:
    """(whether `fingerprint` is an active installation, the active installations) now."""
    installations = resources.layout.for_license(key, 0).installations
    try:
        seen = await resources.redis.zscore(installations, fingerprint)
        active = await resources.redis.zcount(installations, cutoff.timestamp(), "+inf")
    except (RedisError, OSError) as error:
        raise StoreUnavailable(str(error)) from error
    return seen is not None and seen >= cutoff.timestamp(), int(active)


async def _keep_active_until(
    resources: Resources, key: str, fingerprint: str, last_seen: datetime
) -> None:
    """Raise the server's last-seen time (never lower it): active until `valid_until`. Only
    raising keeps the script's `purge_due` (a lower bound of the oldest last-seen) right."""
    installations = resources.layout.for_license(key, 0).installations
    try:
        await resources.redis.zadd(installations, {fingerprint: last_seen.timestamp()}, gt=True)
    except (RedisError, OSError) as error:
        raise StoreUnavailable(str(error)) from error


async def _store(
    conn: asyncpg.Connection,
    order: OfflineOrder,
    code: str,
    valid: bool,
    signed: LicenseFile,
    at: datetime,
    valid_until: datetime | None,
    who: str,
) -> int:
    body = order.body
    file_id: int = await conn.fetchval(
        """INSERT INTO offline_files (license_key, fingerprint, hostname, product, version, code,
               valid, key_id, issued_at, valid_until, issued_by, file)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id""",
        body.license_key, body.fingerprint, body.hostname, body.product, body.version_text,
        code, valid, signed.key_id, at, valid_until, who, signed.armored(),
    )  # fmt: skip
    return file_id


async def offline_files(conn: asyncpg.Connection, key: str) -> list[dict[str, Any]]:
    """The files issued for a license, newest first (the console's list)."""
    rows = await conn.fetch(
        """SELECT id, fingerprint, hostname, product, version, code, valid, key_id, issued_at,
                  valid_until, issued_by, file
           FROM offline_files WHERE license_key = $1 ORDER BY id DESC""",
        key,
    )
    return [dict(row) for row in rows]
