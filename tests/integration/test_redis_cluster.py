"""`REDIS_URL=redis+cluster://…` end to end (SPEC §9 "Scale").

A real three-master Redis Cluster (no replicas) is started from Debian's `redis-server` binary
(installed with apt-get when the machine has none: tests/debian.py) on free loopback ports and
created with `redis-cli --cluster create`. The public and admin apps and the fraud worker run
against it: licenses written through the admin API, activations of many keys spread over every
shard and node, deactivations, the test clock, a per-key rate limit, the worker draining all
shard streams, and one shard's slot resharded to another master midway.
Every acknowledged activation must reach PostgreSQL (none lost), no request may fail with
CROSSSLOT/MOVED, cases open for the keys over their limit and their servers are answered GRACE.
A second test (its own cluster) stops a master: 503 with Retry-After, `/readyz` 503, recovery.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import socket
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import RawTestServer, TestClient, TestServer
from redis.asyncio.cluster import RedisCluster

from activation.config import RateLimits, Settings
from activation.runtime import Resources, open_resources, public_api
from fraud.admin_app import create_admin_app
from fraud.escalation import DEFAULT_LADDER
from fraud.worker import Worker
from metrics import WorkerMetrics
from tests import debian
from tests.conftest import _clean
from tests.integration.helpers import activation_body, create_customer, create_license, set_clock

MASTERS = 3
KEYS = 300
KEY_LIMIT_PER_MINUTE = 3
UNKNOWN_KEY = "ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ"


def redis_server() -> str:
    """Debian's redis-server (with redis-cli), installed when the machine has none."""
    return debian.redis_server()


def redis_cli() -> str:
    redis_server()
    return shutil.which("redis-cli") or "/usr/bin/redis-cli"


def _free_port() -> int:
    """A loopback port that is free, and whose cluster bus port (+10000) is free too."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port + 10_000 > 65_535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def _cli(port: int, *args: str) -> str:
    return subprocess.run(
        [redis_cli(), "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    ).stdout


def _wait_for(condition: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


class LocalCluster:
    """Masters started from the `redis-server` binary, joined by `redis-cli --cluster create`."""

    def __init__(self, root: Path, masters: int = MASTERS, node_timeout_ms: int = 2000) -> None:
        self.root = root
        self.node_timeout_ms = node_timeout_ms
        self.ports: list[int] = []
        while len(self.ports) < masters:
            port = _free_port()
            if port not in self.ports:
                self.ports.append(port)
        self.servers: dict[int, subprocess.Popen[bytes]] = {}

    def start_node(self, port: int) -> None:
        workdir = self.root / str(port)
        workdir.mkdir(exist_ok=True)
        self.servers[port] = subprocess.Popen(
            [
                redis_server(),
                *("--cluster-enabled", "yes"),
                *("--cluster-config-file", str(self.root / f"nodes-{port}.conf")),
                *("--cluster-node-timeout", str(self.node_timeout_ms)),
                *("--port", str(port)),
                *("--bind", "127.0.0.1"),
                *("--save", ""),
                *("--appendonly", "no"),
                *("--daemonize", "no"),
                *("--dir", str(workdir)),
                *("--logfile", str(workdir / "redis.log")),
            ],
            cwd=workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for(lambda: _cli(port, "PING").strip() == "PONG", f"node {port}")

    def stop_node(self, port: int) -> None:
        server = self.servers.pop(port)
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()

    def wait_state(self, state: str, ports: list[int] | None = None) -> None:
        for port in ports or self.ports:
            _wait_for(
                lambda port=port: f"cluster_state:{state}" in _cli(port, "CLUSTER", "INFO"),
                f"cluster_state:{state} on {port}",
            )

    def __enter__(self) -> LocalCluster:
        try:
            for port in self.ports:
                self.start_node(port)
            created = subprocess.run(
                [
                    redis_cli(),
                    *("--cluster", "create"),
                    *(f"127.0.0.1:{port}" for port in self.ports),
                    *("--cluster-replicas", "0", "--cluster-yes"),
                ],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert created.returncode == 0, created.stdout + created.stderr
            self.wait_state("ok")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for port in list(self.servers):
            self.stop_node(port)
        shutil.rmtree(self.root, ignore_errors=True)

    def node_id(self, port: int) -> str:
        return _cli(port, "CLUSTER", "MYID").strip()

    def owner_of(self, key: str) -> int:
        """The port of the master serving `key`'s slot."""
        slot = int(_cli(self.ports[0], "CLUSTER", "KEYSLOT", key))
        for port in self.ports:
            if slot in _owned_slots(_cli(port, "CLUSTER", "NODES"), self.node_id(port)):
                return port
        raise AssertionError(f"slot {slot} is not served")

    def move_slot_of(self, key: str, target: int) -> int:
        """Migrate `key`'s slot with all its keys to the master on `target` (what `redis-cli
        --cluster reshard` does slot by slot); clients see MOVED afterwards. Returns the slot."""
        slot = self.begin_moving_slot_of(key, target)
        self.finish_moving(slot, target)
        return slot

    def begin_moving_slot_of(self, key: str, target: int) -> int:
        """The first half of a move: every key of the slot is on `target`, but the slot is
        still the source's, marked migrating (clients get ASK, or TRYAGAIN)."""
        slot = str(int(_cli(self.ports[0], "CLUSTER", "KEYSLOT", key)))
        source = self.owner_of(key)
        assert source != target
        source_id, target_id = self.node_id(source), self.node_id(target)
        _cli(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        _cli(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        while keys := _cli(source, "CLUSTER", "GETKEYSINSLOT", slot, "1000").split():
            moved = _cli(
                source, "MIGRATE", "127.0.0.1", str(target), "", "0", "5000", "KEYS", *keys
            )
            assert moved.strip() == "OK", moved
        return int(slot)

    def finish_moving(self, slot: int, target: int) -> None:
        target_id = self.node_id(target)
        for port in (target, *self.ports):
            _cli(port, "CLUSTER", "SETSLOT", str(slot), "NODE", target_id)


def _owned_slots(nodes: str, node_id: str) -> set[int]:
    for line in nodes.splitlines():
        fields = line.split()
        if fields and fields[0] == node_id:
            slots: set[int] = set()
            for part in fields[8:]:
                if part.startswith("["):
                    continue
                low, _, high = part.partition("-")
                slots.update(range(int(low), int(high or low) + 1))
            return slots
    return set()


@pytest.fixture(scope="module")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A fresh 3-master cluster for this module; stopped and its files removed afterwards."""
    with LocalCluster(tmp_path_factory.mktemp("redis-cluster")) as running:
        yield running


async def _drop_prefix_on_every_node(url: str, prefix: str) -> None:
    """SCAN walks one node only: in a cluster every primary is scanned."""
    client = RedisCluster.from_url(url)
    try:
        for node in client.get_primaries():
            cursor = 0
            while True:
                cursor, keys = await node.execute_command(
                    "SCAN", cursor, "MATCH", f"{prefix}:*", "COUNT", 1000
                )
                for key in keys:
                    await client.delete(key)
                if int(cursor) == 0:
                    break
    finally:
        await client.aclose()


@dataclasses.dataclass
class ClusterSystem:
    resources: Resources
    public: TestClient[Any, Any]
    admin: TestClient[Any, Any]
    headers: dict[str, str]
    cluster: LocalCluster


@pytest.fixture
async def cluster(
    settings: Settings,
    local_cluster: LocalCluster,
    admin_headers: dict[str, str],
) -> AsyncIterator[ClusterSystem]:
    """The apps on the module's cluster; redis-py's cluster client runs the activation
    script."""
    configured = dataclasses.replace(
        settings,
        redis_url=f"redis+cluster://127.0.0.1:{local_cluster.ports[0]}",
        rate_limits=RateLimits(
            ip_per_minute=1_000_000,  # on, so the per-address counters are written too
            key_per_minute=KEY_LIMIT_PER_MINUTE,
            not_found_per_minute=50,
        ),
    )
    assert configured.redis_cluster
    await _clean(configured)
    try:
        async with (
            open_resources(configured) as resources,
            TestClient(RawTestServer(public_api(resources).handle)) as public,
            TestClient(TestServer(create_admin_app(resources))) as admin,
        ):
            assert isinstance(resources.redis, RedisCluster)
            assert resources.store.hot_client is None  # redis-py runs the script
            yield ClusterSystem(resources, public, admin, admin_headers, local_cluster)
    finally:
        await _drop_prefix_on_every_node(
            f"redis://127.0.0.1:{local_cluster.ports[0]}", configured.redis_prefix
        )


async def _post(client: TestClient[Any, Any], path: str, body: dict[str, Any]) -> Any:
    response = await client.post(path, json=body)
    text = await response.text()
    assert "CROSSSLOT" not in text and "MOVED" not in text, text
    return response.status, (orjson.loads(text) if text else None)


def _node_of_keys(ports: list[int], prefix: str) -> Counter[int]:
    """How many license hashes of this test each master holds."""
    counts: Counter[int] = Counter()
    for port in ports:
        keys = _cli(port, "--scan", "--pattern", f"{prefix}:{{s*}}:lic:*").split()
        counts[port] = len(keys)
    return counts


@pytest.mark.moves_clock
async def test_cluster_activations_worker_and_no_lost_events(cluster: ClusterSystem) -> None:
    resources, public, admin, headers = (
        cluster.resources,
        cluster.public,
        cluster.admin,
        cluster.headers,
    )
    layout = resources.layout

    # readyz pings the cluster.
    ready = await public.get("/readyz")
    assert ready.status == 200, await ready.text()
    assert (await ready.json())["redis"] is True

    # The test clock lives in the cluster too (one key, any node).
    start = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    await set_clock(admin, headers, start.isoformat().replace("+00:00", "Z"))
    read = await admin.get("/admin/v1/test-clock", headers=headers)
    assert read.status == 200
    assert abs(datetime.fromisoformat((await read.json())["now"]) - start) < timedelta(seconds=30)

    # 300 licenses through the admin API (write-through: a MULTI pipeline on one slot each).
    customer = await create_customer(admin, headers)
    semaphore = asyncio.Semaphore(32)

    async def new_license() -> str:
        async with semaphore:
            created = await create_license(
                admin, headers, customer_id=customer, purchased_on="2026-09-01"
            )
            return str(created["key"])

    keys = await asyncio.gather(*(new_license() for _ in range(KEYS)))
    shards = {layout.shard_of(key) for key in keys}
    assert shards == set(range(resources.settings.stream_shards))

    # Every license activates one server; every fifth a second one (over its limit of 1).
    over = keys[::5]
    sent: Counter[tuple[str, str, str]] = Counter()
    answers: dict[tuple[str, str], dict[str, Any]] = {}

    async def phone_home(key: str, fingerprint: str) -> None:
        async with semaphore:
            status, answer = await _post(
                public, "/v1/activations", activation_body(key, fingerprint)
            )
        assert status == 200, answer
        sent[(key, "activation", fingerprint)] += 1
        answers[(key, fingerprint)] = answer

    await asyncio.gather(*(phone_home(key, "server-a") for key in keys))
    await asyncio.gather(*(phone_home(key, "server-b") for key in over))
    assert all(answers[(key, "server-a")]["code"] == "VALID" for key in keys)
    assert {answers[(key, "server-b")]["code"] for key in over} == {"GRACE"}
    assert {answers[(key, "server-b")]["installation"]["servers_active"] for key in over} == {2}

    # The licenses really are spread over all three masters.
    spread = _node_of_keys(cluster.cluster.ports, resources.settings.redis_prefix)
    assert sum(spread.values()) == KEYS
    assert all(count > 0 for count in spread.values()), spread

    # Resharding under the running apps: one shard's slot (its licenses, installations and
    # event stream) moves to another master. The clients follow MOVED; nothing surfaces.
    moving = layout.for_license(over[1], 0).license
    source = cluster.cluster.owner_of(moving)
    target = next(port for port in cluster.cluster.ports if port != source)
    cluster.cluster.move_slot_of(moving, target)
    assert cluster.cluster.owner_of(moving) == target
    status, answer = await _post(public, "/v1/activations", activation_body(over[1], "server-a"))
    assert (status, answer["code"]) == (200, "GRACE")
    sent[(over[1], "activation", "server-a")] += 1
    neighbour = next(
        key for key in keys if key not in over and layout.shard_of(key) == layout.shard_of(over[1])
    )
    status, _ = await _post(public, "/v1/activations", activation_body(neighbour, "server-a"))
    assert status == 200
    sent[(neighbour, "activation", "server-a")] += 1

    # An unknown key: NOT_FOUND (negative cache written in the key's slot), twice.
    for _ in range(2):
        status, answer = await _post(public, "/v1/activations", activation_body(UNKNOWN_KEY))
        assert (status, answer["code"]) == (200, "NOT_FOUND")

    # Deactivations: the second server of some over-limit keys leaves again.
    leaving = over[::4]
    for key in leaving:
        status, answer = await _post(
            public, "/v1/deactivations", {"license_key": key, "fingerprint": "server-b"}
        )
        assert status == 200, answer
        assert answer["servers_active"] == 1
        sent[(key, "deactivation", "server-b")] += 1

    # Installations as the admin API shows them (a non-transactional pipeline on one slot).
    shown = await admin.get(f"/admin/v1/licenses/{over[1]}", headers=headers)
    assert shown.status == 200, await shown.text()

    # The per-key rate limit (counted in the key's slot); other keys are not affected.
    limited = keys[1]
    codes = []
    for _ in range(KEY_LIMIT_PER_MINUTE):
        status, answer = await _post(public, "/v1/activations", activation_body(limited))
        codes.append(status)
        if status == 200:
            sent[(limited, "activation", "server-a")] += 1
    assert codes[-1] == 429 and codes.count(429) >= 1, codes
    status, _ = await _post(public, "/v1/activations", activation_body(keys[2]))
    assert status == 200
    sent[(keys[2], "activation", "server-a")] += 1

    # The worker drains every shard stream into PostgreSQL and opens the cases.
    worker = Worker(resources, DEFAULT_LADDER, {}, WorkerMetrics())
    report = await worker.run_once()
    still_over = set(over) - set(leaving)
    # A case opens for every key that went over; those whose second server left resolve.
    assert (report.cases.opened, report.cases.resolved) == (len(over), len(leaving))
    assert (await worker.run_once()).ingested == 0
    assert await worker.ingest.lag() == (0, 0)

    rows = await resources.pool.fetch(
        "SELECT license_key, kind, fingerprint, count(*) AS n FROM activation_events"
        " GROUP BY license_key, kind, fingerprint"
    )
    stored = Counter({(r["license_key"], r["kind"], r["fingerprint"]): r["n"] for r in rows})
    assert stored == sent  # every acknowledged request, exactly once: 0 lost
    cases = await resources.pool.fetch(
        "SELECT license_key, stage, status FROM fraud_cases WHERE status = 'open'"
    )
    assert {c["license_key"] for c in cases} == still_over
    assert {c["stage"] for c in cases} == {"grace"}

    # After the worker wrote the case summaries into the cluster, both servers answer GRACE
    # with the case's deadline.
    await set_clock(admin, headers, (start + timedelta(minutes=5)).isoformat())
    for key in list(still_over)[:20]:
        status, answer = await _post(public, "/v1/activations", activation_body(key, "server-a"))
        assert status == 200, answer
        assert answer["code"] == "GRACE"
        assert answer["installation"]["grace_ends_at"] is not None
    await worker.run_once()
    total = await resources.pool.fetchval("SELECT count(*) FROM activation_events")
    assert total == sum(sent.values()) + 20

    # The case queue reads every case's servers from the cluster concurrently.
    queue = await admin.get("/admin/v1/cases", headers=headers)
    assert queue.status == 200, await queue.text()

    # Trimming acknowledged entries works stream by stream.
    await worker.ingest.trim()
    ready = await public.get("/readyz")
    assert ready.status == 200


async def test_activation_during_a_slot_migration_follows_ask_and_waits_out_tryagain(
    cluster: ClusterSystem,
) -> None:
    """Mid-migration the source answers ASK (none of the script's keys is left there) and the
    importing master TRYAGAIN (some of the keys, this minute's counters, exist nowhere yet):
    redis-py asks the target and retries, the store retries after it every 50 ms
    (store/redis_store.py), and the call succeeds once the slot is
    handed over. No 503 for a migration shorter than half a second."""
    resources, public, admin, headers = (
        cluster.resources,
        cluster.public,
        cluster.admin,
        cluster.headers,
    )
    key = str((await create_license(admin, headers))["key"])
    status, _ = await _post(public, "/v1/activations", activation_body(key))
    assert status == 200
    license_key = resources.layout.for_license(key, 0).license
    source = cluster.cluster.owner_of(license_key)
    target = next(port for port in cluster.cluster.ports if port != source)
    slot = cluster.cluster.begin_moving_slot_of(license_key, target)
    try:
        during = asyncio.create_task(
            _post(public, "/v1/activations", activation_body(key, "server-b"))
        )
        await asyncio.sleep(0.2)
        assert not during.done()  # waiting out TRYAGAIN, not failed
    finally:
        cluster.cluster.finish_moving(slot, target)
    status, answer = await during
    assert (status, answer["code"]) == (200, "GRACE"), answer
    assert cluster.cluster.owner_of(license_key) == target


async def test_cluster_master_down_answers_503_then_recovers(
    settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
    admin_headers: dict[str, str],
) -> None:
    """Fail-closed on a cluster too: a master that is gone, and the cluster refusing every slot
    once it notices (CLUSTERDOWN), are 503 with Retry-After, never a 500 or an acknowledgement."""
    with LocalCluster(tmp_path_factory.mktemp("redis-cluster-down"), node_timeout_ms=500) as nodes:
        configured = dataclasses.replace(
            settings,
            redis_url=f"redis+cluster://127.0.0.1:{nodes.ports[0]}",
        )
        await _clean(configured)
        async with (
            open_resources(configured) as resources,
            TestClient(RawTestServer(public_api(resources).handle)) as public,
            TestClient(TestServer(create_admin_app(resources))) as admin,
        ):
            customer = await create_customer(admin, admin_headers)
            keys = [
                str((await create_license(admin, admin_headers, customer_id=customer))["key"])
                for _ in range(12)
            ]
            owners = {
                key: nodes.owner_of(resources.layout.for_license(key, 0).license) for key in keys
            }
            for key in keys:
                status, _ = await _post(public, "/v1/activations", activation_body(key))
                assert status == 200
            dead = owners[keys[0]]
            alive = next(key for key in keys if owners[key] != dead)
            nodes.stop_node(dead)

            # The master of the first key is gone: its requests fail closed at once, and the
            # readiness probe notices although the other masters still answer PING.
            assert await _unavailable(public, keys[0])
            assert (await public.get("/readyz")).status == 503
            # Once the others mark it failed, the cluster refuses every slot (CLUSTERDOWN).
            nodes.wait_state("fail", [port for port in nodes.ports if port != dead])
            assert await _unavailable(public, alive)
            assert (await public.get("/readyz")).status == 503

            # Back (empty: no persistence here): the caches are rebuilt from PostgreSQL.
            nodes.start_node(dead)
            nodes.wait_state("ok")
            ready = await public.get("/readyz")
            assert ready.status == 200, await ready.text()
            for key in keys:
                status, answer = await _post(public, "/v1/activations", activation_body(key))
                assert (status, answer["code"]) == (200, "VALID"), answer


async def _unavailable(public: TestClient[Any, Any], key: str) -> bool:
    response = await public.post("/v1/activations", json=activation_body(key))
    body = await response.json()
    assert response.status == 503, body
    assert response.headers["Retry-After"], body
    return bool(body["detail"].startswith("Redis"))
