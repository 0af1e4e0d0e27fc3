"""The product's client (`activation_client`) against the real API on real PostgreSQL and
Redis: the answers it accepts, the ones it refuses, outages, and how a fleet retries."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from activation.config import RateLimits, Settings
from activation.runtime import Resources, open_resources, public_api
from activation_client.backoff import Backoff
from activation_client.client import Verdict
from tests.conftest import PublicTestServer
from tests.integration.client_support import (
    Client,
    Relay,
    Relayed,
    VirtualClock,
    check,
    pinned,
    product_client,
    unavailable,
    url_of,
)
from tests.integration.helpers import activate, create_license

Headers = dict[str, str]
CLIENT = Path(sys.executable).parent / "activation-client"


async def _license(admin: Client, headers: Headers, **fields: object) -> str:
    key: str = (await create_license(admin, headers, **fields))["key"]
    return key


async def test_a_valid_key_is_valid_and_the_answer_is_stored(
    public_client: Client, admin_client: Client, admin_headers: Headers, tmp_path: Path
) -> None:
    key = await _license(admin_client, admin_headers)
    client = product_client(url_of(public_client), key, await pinned(public_client),
                            state_dir=tmp_path)  # fmt: skip
    verdict = await check(client)
    assert (verdict.exit_code, verdict.source, verdict.to_json()["code"]) == (0, "server", "VALID")
    assert verdict.attempts == 1
    store = client.answer_store
    assert store is not None and store.load() is not None, "kept for outages"


async def test_r13_a_second_server_runs_in_grace(
    public_client: Client, admin_client: Client, admin_headers: Headers
) -> None:
    key = await _license(admin_client, admin_headers)
    await activate(public_client, key, "server-a")
    client = product_client(url_of(public_client), key, await pinned(public_client),
                            fingerprint="server-b")  # fmt: skip
    verdict = await check(client)
    assert verdict.exit_code == 0, verdict.to_json()
    assert verdict.to_json()["code"] == "GRACE"
    assert verdict.answer is not None and verdict.answer["installation"]["grace_ends_at"]


async def test_r17_a_disabled_key_exits_1(
    public_client: Client, admin_client: Client, admin_headers: Headers
) -> None:
    key = await _license(admin_client, admin_headers)
    response = await admin_client.post(
        f"/admin/v1/licenses/{key}/disable", json={"reason": "chargeback"}, headers=admin_headers
    )
    assert response.status == 200
    verdict = await check(product_client(url_of(public_client), key, await pinned(public_client)))
    assert (verdict.exit_code, verdict.valid, verdict.to_json()["code"]) == (1, False, "DISABLED")


async def test_server_down_falls_back_to_the_stored_answer_until_valid_until(
    public_client: Client, admin_client: Client, admin_headers: Headers, tmp_path: Path
) -> None:
    """The product reaches the API through a relay (its load balancer); the relay goes away:
    the 7-day answer stored six days ago decides, and two days later nothing does."""
    key = await _license(admin_client, admin_headers)
    relay = Relay(url_of(public_client), lambda n, answer: None)
    clock = VirtualClock()
    client = product_client(await relay.start(), key, await pinned(public_client),
                            state_dir=tmp_path, clock=clock, max_wait=5)  # fmt: skip
    online = await check(client)
    assert (online.exit_code, online.source) == (0, "server"), online.to_json()
    await relay.close()  # nothing listens there any more: the server is down
    clock.skip(6 * 86_400)
    offline = await check(client)
    assert (offline.exit_code, offline.source) == (0, "stored"), offline.to_json()
    assert "cannot be reached" in (offline.problem or "")
    assert offline.attempts > 1 and sum(clock.sleeps) <= 5, clock.sleeps
    clock.skip(2 * 86_400)  # past valid_until
    expired = await check(client)
    assert (expired.exit_code, expired.valid, expired.source) == (2, False, "none")
    assert "expired" in expired.detail, expired.detail


async def test_a_tampered_answer_is_refused(
    public_client: Client, admin_client: Client, admin_headers: Headers, tmp_path: Path
) -> None:
    """A relay (a proxy, a man in the middle) turns DISABLED into VALID: the signature no
    longer verifies, and the client does not believe it."""
    key = await _license(admin_client, admin_headers)
    await admin_client.post(
        f"/admin/v1/licenses/{key}/disable", json={"reason": "fraud"}, headers=admin_headers
    )

    def tamper(number: int, answer: Relayed | None) -> Relayed | None:
        if answer is None:
            return None
        body = answer.body.replace(b'"valid":false', b'"valid":true', 1)
        assert body != answer.body
        return Relayed(answer.status, answer.headers, body)

    relay = Relay(url_of(public_client), tamper)
    try:
        client = product_client(await relay.start(), key, await pinned(public_client))
        verdict = await check(client)
    finally:
        await relay.close()
    assert (verdict.exit_code, verdict.valid) == (2, False), verdict.to_json()
    assert "does not verify" in verdict.detail


async def test_a_replayed_answer_is_refused(
    public_client: Client, admin_client: Client, admin_headers: Headers
) -> None:
    """A relay records the first (genuine, VALID) answer and replays it to every later
    request, after the key was disabled: its nonce is the old request's."""
    key = await _license(admin_client, admin_headers)
    recorded: list[Relayed] = []

    def replay(number: int, answer: Relayed | None) -> Relayed | None:
        if recorded:
            return recorded[0]
        if answer is not None:
            recorded.append(answer)
        return None

    relay = Relay(url_of(public_client), replay)
    try:
        client = product_client(await relay.start(), key, await pinned(public_client))
        first = await check(client)
        await admin_client.post(
            f"/admin/v1/licenses/{key}/disable", json={"reason": "fraud"}, headers=admin_headers
        )
        replayed = await check(client)
    finally:
        await relay.close()
    assert first.exit_code == 0 and first.source == "server"
    assert (replayed.exit_code, replayed.valid) == (2, False), replayed.to_json()
    assert "nonce" in replayed.detail


async def test_an_outage_is_retried_until_the_server_answers(
    public_client: Client, admin_client: Client, admin_headers: Headers
) -> None:
    """Two 503s with Retry-After: 0, then the real answer; the client's real clock sleeps."""
    key = await _license(admin_client, admin_headers)
    relay = Relay(url_of(public_client), lambda n, a: unavailable("0") if n <= 2 else None)
    try:
        client = product_client(await relay.start(), key, await pinned(public_client),
                                backoff=Backoff(base=0.05, cap=0.2))  # fmt: skip
        verdict = await check(client)
    finally:
        await relay.close()
    assert (verdict.exit_code, verdict.attempts, relay.requests) == (0, 3, 3), verdict.to_json()


def _spread(delays: list[float]) -> dict[str, float]:
    return {
        "n": len(delays),
        "min": round(min(delays), 3),
        "max": round(max(delays), 3),
        "stdev": round(statistics.pstdev(delays), 3),
        "distinct": len({round(d, 6) for d in delays}),
        "most_in_one_100ms": max(Counter(int(d * 10) for d in delays).values()),
    }


async def _fleet(
    server: str, key: str, public: Client, *, max_wait: float, requests: list[int] | None = None
) -> list[list[float]]:
    """100 simulated products (virtual clocks, seeded generators) phoning home at once, one
    after the other; the sleeps each one chose (and, into `requests`, how many requests each
    sent)."""
    keys = await pinned(public)
    sleeps = []
    for number in range(100):
        clock = VirtualClock()
        client = product_client(server, key, keys, fingerprint=f"fleet-{number}", clock=clock,
                                seed=number, max_wait=max_wait)  # fmt: skip
        verdict: Verdict = await check(client)
        # Virtual sleeps take no real time: every retry meets the storm again (except across
        # a real minute boundary, where a per-minute limit lets one answer through).
        assert verdict.exit_code == 2 or verdict.source == "server", verdict.to_json()
        assert sum(clock.sleeps) <= max_wait, clock.sleeps
        sleeps.append(clock.sleeps)
        if requests is not None:
            requests.append(verdict.attempts)
    return sleeps


async def test_a_503_storm_is_retried_spread_out_not_in_step(
    public_client: Client, admin_client: Client, admin_headers: Headers
) -> None:
    """Every request answered 503 with `Retry-After: 1`: each client waits at least that, plus
    full jitter, so the fleet comes back spread over the window, not in the same instant."""
    key = await _license(admin_client, admin_headers)
    relay = Relay(url_of(public_client), lambda n, a: unavailable("1"))
    try:
        sleeps = await _fleet(await relay.start(), key, public_client, max_wait=30)
    finally:
        await relay.close()
    first = [s[0] for s in sleeps]
    third = [s[2] for s in sleeps]
    spread_first, spread_third = _spread(first), _spread(third)
    print(f"503 storm, first retry: {spread_first}; third retry: {spread_third}")
    assert all(1.0 <= d <= 1.5 for d in first), spread_first  # Retry-After + [0, 0.5]
    assert spread_first["max"] - spread_first["min"] >= 0.4, spread_first
    assert spread_first["distinct"] == 100, spread_first
    assert spread_first["most_in_one_100ms"] <= 35, spread_first  # in step: 100
    assert all(1.0 <= d <= 3.0 for d in third), spread_third  # window 2 s at attempt 3
    assert spread_third["max"] - spread_third["min"] >= 1.6, spread_third


async def test_a_429_storm_honours_retry_after_and_spreads(
    settings: Settings, resources: Resources, admin_client: Client, admin_headers: Headers,
    aiohttp_client: Any,
) -> None:  # fmt: skip
    """The real API's per-key limit (1 a minute) answers 429 with the seconds left in the
    minute (recorded by a relay on the way): every client waits at least that, plus jitter
    spread over the whole window."""
    key = await _license(admin_client, admin_headers)
    limited = settings.with_overrides(
        rate_limits=RateLimits(ip_per_minute=0, key_per_minute=1, not_found_per_minute=0)
    )
    told: dict[int, float] = {}  # request number -> the Retry-After of its 429

    def record(number: int, answer: Relayed | None) -> Relayed | None:
        if answer is not None and answer.status == 429:
            told[number] = float(answer.headers["Retry-After"])
        return None

    requests: list[int] = []
    async with open_resources(limited) as opened:
        public = await aiohttp_client(PublicTestServer(public_api(opened)))
        await activate(public, key, "server-a")
        relay = Relay(url_of(public), record)
        try:
            sleeps = await _fleet(await relay.start(), key, public, max_wait=120,
                                  requests=requests)  # fmt: skip
        finally:
            await relay.close()
    firsts = [1 + sum(requests[:n]) for n in range(100)]  # each client's first request
    jitter = [s[0] - told[f] for s, f in zip(sleeps, firsts, strict=True) if s and f in told]
    assert len(jitter) >= 95, len(jitter)  # all but those that met a minute boundary
    spread = _spread(jitter)
    print(f"429 storm, first retry minus Retry-After: {spread}")
    assert all(0 <= d <= 0.5 for d in jitter), spread
    assert spread["distinct"] == len(jitter) and spread["max"] - spread["min"] >= 0.4, spread
    assert spread["most_in_one_100ms"] <= 35, spread


async def _cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    process = await asyncio.create_subprocess_exec(
        str(CLIENT), *args, stdout=asyncio.subprocess.PIPE, env=env
    )
    output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, json.loads(output)


async def test_the_command_prints_the_decision_and_exits_by_it(
    public_client: Client, admin_client: Client, admin_headers: Headers, tmp_path: Path
) -> None:
    key = await _license(admin_client, admin_headers)
    public_key = (await (await public_client.get("/v1/signing-key")).json())["public_key"]
    check_args = ("check", "--server", url_of(public_client), "--key", key, "--fingerprint",
                  "server-a", "--product", "smartermail", "--version", "16.3.6989")  # fmt: skip
    code, printed = await _cli(*check_args, "--public-key", public_key, "--state-dir",
                               str(tmp_path))  # fmt: skip
    assert (code, printed["code"], printed["source"]) == (0, "VALID", "server"), printed
    env = os.environ | {"ACTIVATION_PUBLIC_KEYS": f"{public_key}, "}
    code, printed = await _cli(*check_args, env=env)
    assert (code, printed["valid"]) == (0, True), printed
    code, printed = await _cli(*check_args, env=os.environ | {"ACTIVATION_PUBLIC_KEYS": ""})
    assert (code, printed["decided"]) == (2, False) and "pinned" in printed["detail"], printed
    await admin_client.post(f"/admin/v1/licenses/{key}/disable", json={"reason": "x"},
                            headers=admin_headers)  # fmt: skip
    code, printed = await _cli(*check_args, "--public-key", public_key)
    assert (code, printed["code"]) == (1, "DISABLED"), printed
    code, printed = await _cli("verify-file", str(tmp_path / "missing.txt"), "--public-key",
                               public_key)  # fmt: skip
    assert (code, printed["decided"]) == (2, False), printed
