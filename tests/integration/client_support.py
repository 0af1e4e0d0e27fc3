"""What the product-client tests share: a relay in front of the real API that can refuse,
alter or replay its answers (a real HTTP server on a free port), a virtual clock for the
client, and the client built against a test server.

The client is synchronous (urllib), the servers run in the test's event loop: tests call the
client through `asyncio.to_thread`."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, web
from aiohttp.test_utils import TestClient, TestServer

from activation_client.backoff import Backoff
from activation_client.client import ActivationClient, Verdict
from activation_client.verify import PinnedKeys

Client = TestClient[Any, Any]


@dataclass(frozen=True, slots=True)
class Relayed:
    status: int
    headers: dict[str, str]
    body: bytes


class Relay:
    """Forwards POST /v1/activations to `upstream`; `rule(n, answer)` sees the n-th request
    (1-based) before it is forwarded (answer None: return a Relayed to answer instead) and
    after (the upstream's answer: return it, changed or not)."""

    def __init__(self, upstream: str, rule: Callable[[int, Relayed | None], Relayed | None]):
        self.upstream = upstream.rstrip("/")
        self.rule = rule
        self.requests = 0
        self.server: TestServer | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        number = self.requests
        before = self.rule(number, None)
        if before is None:
            async with (
                ClientSession() as session,
                session.post(
                    self.upstream + request.path,
                    data=await request.read(),
                    headers={"Content-Type": "application/json"},
                ) as answer,
            ):
                upstream = Relayed(answer.status, dict(answer.headers), await answer.read())
            before = self.rule(number, upstream) or upstream
        keep = ("Content-Type", "X-Signature", "X-Signature-Key-Id", "Retry-After")
        headers = {name: value for name, value in before.headers.items() if name in keep}
        return web.Response(status=before.status, body=before.body, headers=headers)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/activations", self._handle)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        return str(self.server.make_url("")).rstrip("/")

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()


def unavailable(retry_after: str = "1") -> Relayed:
    """The API's own answer to an outage (SPEC §5): 503 problem JSON with Retry-After."""
    body = b'{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"Redis"}'
    return Relayed(
        503, {"Content-Type": "application/problem+json", "Retry-After": retry_after}, body
    )


@dataclass
class VirtualClock:
    """The client's clock in tests: starts at the real time (the server's answers must be
    fresh), moves only by `sleep` and `skip`, and records every sleep."""

    wall: datetime = field(default_factory=lambda: datetime.now(UTC))
    mono: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    def now(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.skip(seconds)

    def skip(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += timedelta(seconds=seconds)


def url_of(client: Client) -> str:
    return str(client.make_url("")).rstrip("/")


async def pinned(public: Client, *ids: str) -> PinnedKeys:
    """The keys `GET /v1/signing-keys` lists (only those with the given ids, when given)."""
    listed = (await (await public.get("/v1/signing-keys")).json())["keys"]
    return PinnedKeys.from_base64(k["public_key"] for k in listed if not ids or k["id"] in ids)


def product_client(
    server: str,
    key: str,
    keys: PinnedKeys,
    *,
    fingerprint: str = "server-a",
    state_dir: Path | None = None,
    clock: Any = None,
    seed: int | None = None,
    max_wait: float = 30.0,
    backoff: Backoff | None = None,
) -> ActivationClient:
    extra: dict[str, Any] = {}
    if clock is not None:
        extra["clock"] = clock
    if seed is not None:
        extra["rng"] = random.Random(seed)
    return ActivationClient(
        server=server, license_key=key, fingerprint=fingerprint, product="smartermail",
        version="16.3.6989", public_keys=keys, state_dir=state_dir,
        hostname=f"{fingerprint}.example.com", max_wait=max_wait,
        backoff=backoff or Backoff(), **extra,
    )  # fmt: skip


async def check(client: ActivationClient) -> Verdict:
    return await asyncio.to_thread(client.check)
