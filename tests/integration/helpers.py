"""Small helpers shared by the integration tests: HTTP calls, where everything goes through the
APIs, and a count of what the shard streams hold pending."""

from __future__ import annotations

import asyncio
import base64
import os
import random
from collections.abc import Sequence
from datetime import date
from typing import Any

import asyncpg
import orjson
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from activation.runtime import Resources, public_api
from activation.store.redis_store import ActivationRequest
from activation.web.wire import ProblemAppRunner
from fraud.admin_app import create_admin_app
from fraud.ingest import GROUP

Client = TestClient[Any, Any]

# Values that have broken form and query handling elsewhere: NUL (PostgreSQL text refuses it),
# digits int() refuses, more digits than int() takes, LIKE wildcards, markup, SQL, control and
# bidi characters, a field far over every length limit.
HOSTILE_VALUES = (
    "", " ", "\x00", "x\x00y", "²", "٣", "9" * 5000, "-1", "1e9", "NaN", "%", "_", "\\",
    "' OR 1=1 --", "<script>alert(1)</script>", "\r\n", "\u202egrace", "😀", "a" * 100_000,
)  # fmt: skip
# JSON values of every other type, for fields that expect a string, and the reverse.
WRONG_TYPES: tuple[Any, ...] = (10**30, -(10**30), 1.5, -1, 0, True, None, [], {}, ["x"], {"a": 1})


async def create_customer(admin: Client, headers: dict[str, str], name: str = "Acme") -> int:
    response = await admin.post(
        "/admin/v1/customers",
        json={"name": name, "email": f"{name.lower()}@example.com", "phone": "+1 555 0100"},
        headers=headers,
    )
    assert response.status == 201, await response.text()
    customer_id: int = (await response.json())["id"]
    return customer_id


async def create_license(admin: Client, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    if "customer_id" not in fields:
        fields["customer_id"] = await create_customer(admin, headers)
    body = {
        "product": "smartermail",
        "kind": "perpetual",
        "edition": "enterprise",
        "purchased_on": "2026-06-01",
        "failover": False,
    }
    body.update(fields)
    response = await admin.post("/admin/v1/licenses", json=body, headers=headers)
    assert response.status == 201, await response.text()
    created: dict[str, Any] = await response.json()
    return created


async def create_release(
    admin: Client,
    headers: dict[str, str],
    version: str,
    released_on: str,
    product: str = "smartermail",
) -> None:
    response = await admin.post(
        "/admin/v1/releases",
        json={"product": product, "version": version, "released_on": released_on},
        headers=headers,
    )
    assert response.status == 201, await response.text()


async def set_clock(admin: Client, headers: dict[str, str], now: str) -> None:
    response = await admin.post("/admin/v1/test-clock", json={"now": now}, headers=headers)
    assert response.status == 200, await response.text()


async def advance_clock(admin: Client, headers: dict[str, str], seconds: float) -> None:
    response = await admin.post(
        "/admin/v1/test-clock", json={"advance_seconds": seconds}, headers=headers
    )
    assert response.status == 200, await response.text()


async def assert_outage(response: ClientResponse, dependency: str) -> None:
    """`response` is the fail-closed answer to an outage of `dependency` ("Redis" or
    "PostgreSQL"; SPEC §5): 503 problem JSON with Retry-After, naming it."""
    text = await response.text()
    assert response.status == 503, text
    assert response.headers["Retry-After"]
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert dependency in text


def activation_body(key: str, fingerprint: str = "server-a", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "license_key": key,
        "fingerprint": fingerprint,
        "hostname": f"{fingerprint}.example.com",
        "product": "smartermail",
        "version": "16.3.6989",
        "nonce": "c0ffee42",
    }
    body.update(fields)
    return body


async def activate(
    public: Client, key: str, fingerprint: str = "server-a", **fields: Any
) -> dict[str, Any]:
    response = await public.post(
        "/v1/activations", json=activation_body(key, fingerprint, **fields)
    )
    assert response.status == 200, await response.text()
    answer: dict[str, Any] = orjson.loads(await response.read())
    return answer


def verify_signature(public_key_b64: str, body: bytes, header: str) -> None:
    """Raises InvalidSignature unless `header` signs exactly `body`."""
    scheme, _, signature = header.partition("=")
    assert scheme == "ed25519"
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64))
    key.verify(base64.b64decode(signature), body)


async def pending_total(resources: Resources) -> int:
    """Entries read from the shard streams and not yet acknowledged by the ingest group."""
    total = 0
    for stream in resources.layout.streams():
        if await resources.redis.exists(stream):
            total += int((await resources.redis.xpending(stream, GROUP))["pending"])
    return total


async def raw_exchange(
    resources: Resources,
    raw: bytes | Sequence[bytes],
    *,
    admin: bool = False,
    app: web.Application | None = None,
    half_close: bool = False,
) -> bytes:
    """`raw` sent to the public API's own server (`PublicApi.server()`), or to the admin app
    (or `app`) served as `activation-server` and `fraud-worker` serve theirs
    (`ProblemAppRunner`), everything it answers until it closes the connection. A sequence of
    parts is sent part by part, 50 ms apart (a body arriving in several TCP segments);
    `half_close` then closes the sending side 50 ms later (a client gone mid-request)."""
    runner: web.ServerRunner | ProblemAppRunner
    if app is not None or admin:
        runner = ProblemAppRunner(app or create_admin_app(resources), access_log=None)
        served = await runner.setup()
    else:
        runner = served = web.ServerRunner(public_api(resources).server())
        await served.setup()
    site = web.TCPSite(served, "127.0.0.1", 0)
    await site.start()
    try:
        port = served.addresses[0][1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for number, part in enumerate([raw] if isinstance(raw, bytes) else raw):
            if number:
                await asyncio.sleep(0.05)
            writer.write(part)
            await writer.drain()
        if half_close:
            await asyncio.sleep(0.05)
            writer.write_eof()
        answer = await asyncio.wait_for(reader.read(), timeout=10)
        writer.close()
        return answer
    finally:
        await runner.cleanup()


KEY_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def license_keys(count: int, rng: random.Random) -> list[str]:
    """`count` license keys in the product's format, drawn from `rng`."""
    return [
        "-".join("".join(rng.choices(KEY_ALPHABET, k=5)) for _ in range(5)) for _ in range(count)
    ]


async def insert_licenses(
    connection: asyncpg.Connection, keys: list[str], email: str, max_servers: int
) -> None:
    """One customer (`email`) with `keys` as perpetual licenses of `max_servers` servers,
    written in one statement (the fault and crash tests seed hundreds)."""
    customer = await connection.fetchval(
        "INSERT INTO customers (name, email) VALUES ('Fault Test Hosting', $1) RETURNING id",
        email,
    )
    await connection.execute(
        "INSERT INTO licenses (key, customer_id, product, kind, edition, purchased_on,"
        " max_servers) SELECT k, $2, 'smartermail', 'perpetual', 'enterprise', $3, $4"
        " FROM unnest($1::text[]) AS k",
        keys,
        customer,
        date(2026, 1, 5),
        max_servers,
    )


def activation_requests(keys: list[str], count: int) -> list[ActivationRequest]:
    """`count` phone-homes of random `keys` from two servers each ("server-a", "server-b")."""
    return [
        ActivationRequest(
            license_key=random.choice(keys),
            fingerprint=random.choice(("server-a", "server-b")),
            hostname="mail.example.com",
            version="16.3.6989",
            ip="203.0.113.9",
            event_id=os.urandom(16).hex(),
        )
        for _ in range(count)
    ]
