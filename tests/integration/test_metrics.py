"""The metrics of SPEC §8, each seen to move when its event happens, and `/metrics` of
`activation-server --processes 2` shown to report the sum over both processes.

In-process tests drive the real apps and a real worker and read the metrics objects' registries;
the multiprocess test starts the real command on free ports (tests/integration/servers.py) with
TMPDIR pointing at the test's directory, so the per-process metric files the parent's fresh
directory holds can be read one by one as well.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import RawTestServer, TestClient, TestServer
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from activation.config import RateLimits, Settings
from activation.runtime import Resources, open_resources, public_api
from fraud.admin_app import create_admin_app
from fraud.worker import Worker
from metrics import CODES, ApiMetrics, WorkerMetrics
from tests.integration.helpers import (
    activate,
    activation_body,
    advance_clock,
    create_license,
    set_clock,
)
from tests.integration.receivers import Receiver, Smtp
from tests.integration.servers import call, server_env, serving
from tests.integration.systems import wired

Client = TestClient[Any, Any]
JSON = {"Content-Type": "application/json"}
DAY = 86_400


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


# --- in process: every metric moves when its event happens ---------------------------------


@dataclasses.dataclass
class Api:
    public: Client
    admin: Client
    headers: dict[str, str]
    metrics: ApiMetrics
    resources: Resources


@pytest.fixture
async def api(settings: Settings, admin_headers: dict[str, str]) -> AsyncIterator[Api]:
    limited = dataclasses.replace(
        settings, rate_limits=RateLimits(ip_per_minute=0, key_per_minute=2, not_found_per_minute=0)
    )
    from tests.conftest import _clean

    await _clean(limited)
    metrics = ApiMetrics()
    async with (
        open_resources(limited, metrics=metrics) as resources,
        TestClient(RawTestServer(public_api(resources).handle)) as public,
        TestClient(TestServer(create_admin_app(resources))) as admin,
    ):
        yield Api(public, admin, admin_headers, metrics, resources)


async def test_activation_metrics_move_with_their_events(api: Api) -> None:
    registry = api.metrics.registry
    # Every closed label value exists at zero before its first event.
    for code in CODES:
        assert registry.get_sample_value("activations_total", {"code": code}) == 0.0
    for limit in ("ip", "key", "unknown"):
        assert registry.get_sample_value("rate_limited_total", {"limit": limit}) == 0.0

    created = await create_license(api.admin, api.headers)
    key = created["key"]
    await api.resources.store.forget_license(key)  # the admin API wrote it through; drop it
    assert (await activate(api.public, key))["code"] == "VALID"  # cache miss: loaded from PG
    assert value(registry, "license_cache_misses_total") == 1
    assert value(registry, "license_cache_hits_total") == 0
    assert (await activate(api.public, key))["code"] == "VALID"  # cached
    assert value(registry, "license_cache_hits_total") == 1
    assert value(registry, "license_cache_misses_total") == 1
    assert value(registry, "activations_total", code="VALID") == 2
    assert value(registry, "activation_duration_seconds_count") == 2
    assert value(registry, "redis_script_duration_seconds_count") == 2
    assert value(registry, "activation_duration_seconds_sum") > 0
    assert value(registry, "redis_script_duration_seconds_bucket", le="+Inf") == 2

    # Third activation of the key in this minute: over key_per_minute=2.
    response = await api.public.post("/v1/activations", json=activation_body(key))
    assert response.status == 429
    assert value(registry, "rate_limited_total", limit="key") == 1
    assert value(registry, "rate_limited_total", limit="ip") == 0
    assert value(registry, "activations_total", code="VALID") == 2
    assert value(registry, "license_cache_hits_total") == 1  # refused calls are neither

    unknown = await activate(api.public, "NOKEY-NOKEY-NOKEY-NOKEY-NOKEY")
    assert unknown["code"] == "NOT_FOUND"
    assert value(registry, "activations_total", code="NOT_FOUND") == 1

    # The endpoint serves the same numbers (single-process mode: this registry).
    response = await api.public.get("/metrics")
    assert response.status == 200
    scraped = _samples(await response.text())
    assert scraped[("activations_total", (("code", "VALID"),))] == 2
    assert scraped[("rate_limited_total", (("limit", "key"),))] == 1
    assert value(registry, "api_responses_total", status_class="4xx") == 1
    assert value(registry, "api_responses_total", status_class="2xx") == 4  # + this scrape
    malformed = await api.public.post("/v1/activations", data=b"{", headers=JSON)
    assert malformed.status == 400
    assert value(registry, "api_responses_total", status_class="4xx") == 2
    assert value(registry, "api_responses_total", status_class="5xx") == 0


async def test_unreachable_redis_counts_dependency_unavailable(settings: Settings) -> None:
    metrics = ApiMetrics()
    unreachable = dataclasses.replace(settings, redis_url="redis://127.0.0.1:1/0")
    async with (
        open_resources(unreachable, metrics=metrics) as broken,
        TestClient(RawTestServer(public_api(broken).handle)) as client,
    ):
        response = await client.post(
            "/v1/activations", json=activation_body("ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ")
        )
        assert response.status == 503
    assert value(metrics.registry, "dependency_unavailable_total", dependency="redis") == 1
    assert value(metrics.registry, "api_responses_total", status_class="5xx") == 1


@dataclasses.dataclass
class Fleet:
    public: Client
    admin: Client
    headers: dict[str, str]
    worker: Worker
    metrics: WorkerMetrics
    resources: Resources


@pytest.fixture
async def fleet(
    settings: Settings, smtp: Smtp, receiver: Receiver, admin_headers: dict[str, str]
) -> AsyncIterator[Fleet]:
    metrics = WorkerMetrics()
    async with wired(settings, smtp, receiver, metrics) as it:
        yield Fleet(it.public, it.admin, admin_headers, it.worker, metrics, it.resources)


@pytest.mark.moves_clock
async def test_worker_metrics_move_with_their_events(fleet: Fleet) -> None:
    registry = fleet.metrics.registry
    for stage in ("grace", "overdue", "disabled", "resolved"):
        assert registry.get_sample_value("cases", {"stage": stage}) == 0.0
    for channel in ("email", "webhook"):
        for outcome in ("sent", "retried", "dead"):
            labels = {"channel": channel, "outcome": outcome}
            assert registry.get_sample_value("notifications_total", labels) == 0.0

    await set_clock(fleet.admin, fleet.headers, "2026-11-23T12:00:00Z")
    # M&S covered through 2026-11-30: a reminder is due (7 days before, R6).
    await create_license(fleet.admin, fleet.headers, purchased_on="2025-12-01")
    key = (await create_license(fleet.admin, fleet.headers, purchased_on="2026-09-01"))["key"]
    await activate(fleet.public, key, "server-old")
    await activate(fleet.public, key, "server-new")

    await fleet.worker.run_once()
    assert value(registry, "events_ingested_total") == 2
    assert value(registry, "cases_opened_total") == 1
    assert value(registry, "cases", stage="grace") == 1
    assert value(registry, "stream_lag_entries") == 0
    assert value(registry, "stream_pending_entries") == 0
    assert value(registry, "ms_reminders_total") >= 1
    assert value(registry, "notifications_total", channel="email", outcome="sent") >= 1
    assert value(registry, "worker_pass_duration_seconds_count") == 1
    assert value(registry, "worker_last_pass_timestamp_seconds") > time.time() - 60
    assert value(registry, "dead_letters_total") == 0
    assert value(registry, "stream_length_entries") == 0  # the pass trimmed what it stored

    # Two more activations, observed before the worker reads them: lag 2, nothing pending.
    await activate(fleet.public, key, "server-old")
    await activate(fleet.public, key, "server-new")
    await fleet.worker._observe()
    assert value(registry, "stream_lag_entries") == 2
    assert value(registry, "stream_pending_entries") == 0
    assert value(registry, "stream_length_entries") == 2

    # Walk the ladder (R14): both servers keep phoning home; steps at days 30, 37 and 44.
    for days, step in ((30, "grace_over"), (7, "reminder"), (7, "disable")):
        for _ in range(days):
            await advance_clock(fleet.admin, fleet.headers, DAY)
            await activate(fleet.public, key, "server-old")
            await activate(fleet.public, key, "server-new")
        await fleet.worker.run_once()
        assert value(registry, "escalation_steps_total", step=step) == 1
    assert value(registry, "keys_disabled_total", reason="fraud_escalation") == 1
    assert value(registry, "cases", stage="disabled") == 1
    assert value(registry, "cases", stage="grace") == 0
    assert value(registry, "notifications_total", channel="webhook", outcome="sent") >= 2


async def test_dead_letters_are_counted(fleet: Fleet) -> None:
    stream = fleet.resources.layout.streams()[0]
    # An entry the worker cannot store (no fields it knows) goes to dead_letters.
    await fleet.resources.redis.xadd(stream, {"junk": "1"})
    await fleet.worker.run_once()
    assert value(fleet.metrics.registry, "dead_letters_total") == 1


# --- activation-server --processes 2: one scrape reports both processes ---------------------


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@dataclasses.dataclass
class Served:
    public: str
    admin: str
    tmpdir: Path


@pytest.fixture
def two_processes(
    database_url: str, server_urls: tuple[str, str], tmp_path: Path
) -> Iterator[Served]:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    prefix = f"mp{secrets.token_hex(4)}"
    env = server_env(database_url, server_urls[1], prefix, tmp_path, TMPDIR=str(tmpdir))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)

    def both_children_up() -> bool:
        # Ready answers from two different connections are not proof that both children are
        # up, nor are both children's metric files (written before the ports listen): wait
        # until both logged that they serve.
        log = tmp_path / "server.log"
        listening = log.exists() and log.read_text().count("serving public API on") == 2
        return listening and len(list(tmpdir.glob("activation-metrics-*/counter_*.db"))) == 2

    options = ("--processes", "2")
    with serving(env, tmp_path, *options, until=both_children_up, stop_timeout=15) as urls:
        yield Served(urls.public, urls.admin, tmpdir)
    # The parent removes its metrics directory once the children are gone.
    assert list(tmpdir.glob("activation-metrics-*")) == []


def _per_process_activations(metrics_dir: Path) -> list[float]:
    """activations_total of each child, read from its own file alone."""
    totals = []
    for path in sorted(metrics_dir.glob("counter_*.db")):
        alone = metrics_dir.parent / f"alone-{path.stem}"
        alone.mkdir()
        (alone / path.name).write_bytes(path.read_bytes())
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))  # type: ignore[no-untyped-call]
        totals.append(
            sum(
                sample.value
                for family in registry.collect()
                for sample in family.samples
                if sample.name == "activations_total"
            )
        )
    return totals


def test_processes_2_metrics_sum_over_both_processes(two_processes: Served) -> None:
    admin = f"{two_processes.admin}/admin/v1"
    status, body = call(
        "POST", f"{admin}/customers", {"name": "Acme", "email": "ops@acme.example", "phone": "1"}
    )
    assert status == 201, body
    license = {
        "customer_id": json.loads(body)["id"], "product": "smartermail", "kind": "perpetual",
        "edition": "enterprise", "purchased_on": "2026-01-15", "failover": True,
        "max_servers": 100,
    }  # fmt: skip
    status, body = call("POST", f"{admin}/licenses", license)
    assert status == 201, body
    key = json.loads(body)["key"]

    count = 120
    url = f"{two_processes.public}/v1/activations"

    def one(n: int) -> int:
        return call("POST", url, activation_body(key, f"server-{n % 7}"))[0]

    # New connection per request: SO_REUSEPORT spreads them over both children.
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(one, range(count))) == {200}

    def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        status, text = call("GET", f"{two_processes.public}/metrics")
        assert status == 200
        return _samples(text.decode())

    def activations(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
        return sum(value for (name, _), value in samples.items() if name == "activations_total")

    # The process that answers a scrape reports its own updates at once, the other one's
    # within about a second (each folds its tallies once a second, metrics/tally.py).
    waited = time.monotonic()
    while activations(scrape()) != count and time.monotonic() - waited < 3.0:
        time.sleep(0.1)
    assert time.monotonic() - waited < 2.5
    for _ in range(6):  # each scrape may land on either child; every one sees the sum
        samples = scrape()
        assert activations(samples) == count
        assert samples[("activations_total", (("code", "VALID"),))] == count
        assert samples[("activation_duration_seconds_count", ())] == count
        assert samples[("redis_script_duration_seconds_count", ())] == count
        hits = samples[("license_cache_hits_total", ())]
        misses = samples[("license_cache_misses_total", ())]
        assert hits + misses == count

    (metrics_dir,) = two_processes.tmpdir.glob("activation-metrics-*")
    per_process = _per_process_activations(metrics_dir)
    assert len(per_process) == 2
    assert sum(per_process) == count
    assert all(share > 0 for share in per_process), per_process  # both children served
