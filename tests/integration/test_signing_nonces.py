"""Signatures with precomputed nonces (activation/api/nonces.py): every one verifies with the
published key, no nonce is used twice, and signing falls back to libsodium's deterministic
signatures whenever no nonce is ready (SPEC §5 Signatures)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import time
from collections.abc import Callable, Iterator

import pytest
from aiohttp.test_utils import RawTestServer, TestClient
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from activation.api import nonces as nonces_module
from activation.api.app import PublicApi
from activation.api.nonces import NonceSource
from activation.api.signing import Signer
from activation.config import Settings
from activation.runtime import open_resources
from metrics import ApiMetrics
from tests.integration.helpers import activation_body, verify_signature


@pytest.fixture
def source() -> Iterator[NonceSource]:
    started = NonceSource()
    yield started
    started.close()


def _wait_ready(source: NonceSource, limit_s: float = 10.0) -> None:
    """Until the helper has delivered (the probe uses up one pair, never handed out again)."""
    deadline = time.monotonic() + limit_s
    while source.take() is None:
        assert time.monotonic() < deadline, "the nonce helper delivered nothing"
        time.sleep(0.01)


def _signature(header: str) -> bytes:
    assert header.startswith("ed25519=")
    return base64.b64decode(header.removeprefix("ed25519="))


def test_precomputed_signatures_verify_and_never_repeat_a_nonce(source: NonceSource) -> None:
    private = Ed25519PrivateKey.generate()
    signer = Signer(private)
    signer.attach(source)
    _wait_ready(source)
    taken = source.taken
    points = set()
    for n in range(2_000):
        body = b'{"n":%d,"valid":true}' % n
        signature = _signature(signer.header(body))
        private.public_key().verify(signature, body)
        with pytest.raises(InvalidSignature):
            private.public_key().verify(signature, body + b" ")
        points.add(signature[:32])
    assert source.taken - taken > 1_000  # most came from the helper, not the fallback
    assert len(points) == 2_000  # R = r·B differs every time: no nonce was used twice


def test_inline_fallback_when_the_helper_is_gone_and_restart(
    source: NonceSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    private = Ed25519PrivateKey.generate()
    metrics = ApiMetrics()
    signer = Signer(private, metrics.signatures_inline)
    signer.attach(source)
    _wait_ready(source)
    signer.header(b"a precomputed nonce: not inline")
    assert _inline_signatures(metrics) == 0
    source.close()  # the helper stops; buffered pairs are dropped
    missed = source.missed
    body = b'{"valid":true}'
    first, second = _signature(signer.header(body)), _signature(signer.header(body))
    private.public_key().verify(first, body)
    assert first == second  # deterministic: libsodium's own nonce
    assert source.missed == missed + 2
    assert _inline_signatures(metrics) == 2  # signatures_inline_total
    monkeypatch.setattr(nonces_module, "RESTART_AFTER_SECONDS", 0.0)
    assert source.take() is None  # this miss restarts the helper
    _wait_ready(source)
    signature = _signature(signer.header(body))
    private.public_key().verify(signature, body)
    assert signature != first


def test_the_helper_only_uses_idle_cpu(source: NonceSource) -> None:
    _wait_ready(source)
    assert source.helper_pid is not None
    assert os.sched_getscheduler(source.helper_pid) == os.SCHED_IDLE


def test_a_forked_process_never_uses_the_parents_nonces(source: NonceSource) -> None:
    _wait_ready(source)
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os._exit(0 if source.take() is None else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert source.take() is not None  # the parent's own pairs are still there


def test_the_secret_scalar_matches_the_key() -> None:
    """RFC 8032 §5.1.5 scalar derivation, checked against a signature made by OpenSSL."""
    private = Ed25519PrivateKey.generate()
    signer = Signer(private)
    body = b"same message"
    assert _signature(signer.header(body)) == private.sign(body)  # inline = RFC 8032 exactly


async def test_answers_through_http_use_precomputed_nonces(settings: Settings) -> None:
    helper_on = dataclasses.replace(settings, signing_nonce_helper=True)
    async with open_resources(helper_on) as resources:
        api = PublicApi(resources)
        nonces_always = api.signing_nonces(adaptive=False)
        async with nonces_always as nonces, TestClient(RawTestServer(api.handle)) as public:
            assert nonces is not None and api.signer.nonces is nonces
            _wait_ready(nonces)
            published = await (await public.get("/v1/signing-key")).json()
            before = nonces.taken
            for n in range(20):
                key = "ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ"
                response = await public.post(
                    "/v1/activations", json=activation_body(key, f"server-{n}")
                )
                assert response.status == 200
                verify_signature(
                    published["public_key"], await response.read(), response.headers["X-Signature"]
                )
            assert nonces.taken - before == 20
            assert _inline_signatures(resources.metrics) == 0
        assert api.signer.nonces is None  # detached when the API stopped


async def test_answers_signed_inline_are_counted(settings: Settings) -> None:
    """With the helper off every answer is signed inline, and while the process wants
    precomputed nonces `signatures_inline_total` says so (an operator sees a helper that is
    off, dead or behind)."""
    helper_off = dataclasses.replace(settings, signing_nonce_helper=False)
    async with open_resources(helper_off) as resources:
        api = PublicApi(resources)
        nonces_always = api.signing_nonces(adaptive=False)
        async with nonces_always as nonces, TestClient(RawTestServer(api.handle)) as public:
            assert nonces is None
            for n in range(3):
                body = activation_body("ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ", f"server-{n}")
                assert (await public.post("/v1/activations", json=body)).status == 200
            exposed = await (await public.get("/metrics")).text()
    assert "signatures_inline_total 3.0" in exposed.splitlines()


async def test_a_process_with_headroom_signs_inline_and_a_busy_one_takes_nonces(
    settings: Settings,
) -> None:
    """The default (activation/api/signing_load.py): the helper's nonces are taken only while
    the process is busy; inline by choice is not counted as inline for want of a nonce."""
    helper_on = dataclasses.replace(settings, signing_nonce_helper=True)
    async with open_resources(helper_on) as resources:
        api = PublicApi(resources)
        async with api.signing_nonces() as nonces, TestClient(RawTestServer(api.handle)) as public:
            assert nonces is not None
            _wait_ready(nonces)
            published = await (await public.get("/v1/signing-key")).json()

            async def activate(n: int) -> None:
                body = activation_body("ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ", f"server-{n}")
                response = await public.post("/v1/activations", json=body)
                assert response.status == 200
                verify_signature(
                    published["public_key"], await response.read(), response.headers["X-Signature"]
                )

            before = nonces.taken
            for n in range(5):
                await activate(n)
            assert not api.signer.wants_nonces
            assert nonces.taken == before  # signed inline: the helper's pairs stay for later
            # Busy: CPU-bound in stretches of 50 ms, the windows' samples running in between,
            # until the smoothed share has crossed the threshold (three windows or so).
            deadline = time.monotonic() + 10
            while not api.signer.wants_nonces:
                assert time.monotonic() < deadline, "a busy process never took the nonces"
                spent = time.process_time()
                while time.process_time() - spent < 0.05:
                    pass
                await asyncio.sleep(0)
            await activate(5)
            assert nonces.taken == before + 1
            await _until(lambda: not api.signer.wants_nonces)  # idle again: inline
            await activate(6)
            assert nonces.taken == before + 1
            assert _inline_signatures(resources.metrics) == 0


async def _until(condition: Callable[[], bool], limit_s: float = 5.0) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, "the signing load never switched"
        await asyncio.sleep(0.01)


def _inline_signatures(metrics: ApiMetrics) -> float | None:
    return metrics.registry.get_sample_value("signatures_inline_total")
