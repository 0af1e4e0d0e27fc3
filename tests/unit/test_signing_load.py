"""The switch between inline signatures and the nonce helper (activation/api/signing_load.py):
its thresholds, the busy share it measures, and a process walked through windows of load with
its own clocks."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from activation.api.nonces import NonceSource
from activation.api.signing import Signer
from activation.api.signing_load import (
    ENGAGE_AT,
    RELEASE_AT,
    SATURATED_AT,
    SigningLoad,
    inline_busy_share,
    signing_costs,
    wants_precomputed,
)


@pytest.mark.parametrize(
    ("engaged", "busy", "expected"),
    [
        (False, 0.0, False),
        (False, 0.69, False),
        (False, 0.79, False),  # headroom left: inline, the helper's work would cost latency
        (False, 0.80, True),  # the engage threshold itself
        (False, 1.30, True),  # more than a CPU's worth inline: the process is saturated
        (True, 0.80, True),
        (True, 0.75, True),  # inside the gap: stays as it is
        (True, 0.72, True),  # the release threshold itself still holds
        (True, 0.7199, False),
        (True, 0.0, False),
    ],
)
def test_the_switch_and_its_gap(engaged: bool, busy: float, expected: bool) -> None:
    assert (ENGAGE_AT, RELEASE_AT, SATURATED_AT) == (0.80, 0.72, 0.95)
    assert wants_precomputed(engaged, busy) is expected


@pytest.mark.parametrize(
    ("cpu", "wall", "precomputed", "saving", "expected"),
    [
        (0.20, 0.25, 0, 14e-6, 0.80),  # all inline: the process's own share
        (0.15, 0.25, 2_000, 14e-6, 0.712),  # plus what 2,000 inline signatures would have cost
        (0.0, 0.25, 0, 14e-6, 0.0),  # idle
        (0.10, 0.0, 10, 14e-6, 0.0),  # no time passed: nothing to say
        (0.10, 0.25, 1_000, -2e-6, 0.40),  # timings that say inline is cheaper count as 0
    ],
)
def test_busy_share_counts_the_signatures_the_helper_did(
    cpu: float, wall: float, precomputed: int, saving: float, expected: float
) -> None:
    assert inline_busy_share(cpu, wall, precomputed, saving) == pytest.approx(expected)


class _PairsTaken:
    """Stands for the helper's nonce source: SigningLoad reads only its count of pairs taken."""

    def __init__(self) -> None:
        self.taken = 0


class _Clocks:
    def __init__(self) -> None:
        self.cpu = 100.0
        self.wall = 1_000.0
        self.pairs = _PairsTaken()

    def window(self, signer: Signer, *, cpu: float, inline: int = 0, precomputed: int = 0) -> None:
        """A quarter second in which the process used `cpu` seconds and signed so many answers
        each way (the inline ones timed at 20 µs)."""
        self.cpu += cpu
        self.wall += 0.25
        signer.inline_signed += inline
        signer.inline_seconds += inline * 20e-6
        self.pairs.taken += precomputed


def _load(signer: Signer, clocks: _Clocks) -> SigningLoad:
    signer.attach(cast(NonceSource, clocks.pairs))
    return SigningLoad(
        signer,
        cpu_time=lambda: clocks.cpu,
        wall_time=lambda: clocks.wall,
        costs=(30e-6, 24e-6),  # a tight loop's: 6 µs for the rest of a precomputed signature
    )


async def test_a_process_engages_the_helper_only_while_busy() -> None:
    signer = Signer(Ed25519PrivateKey.generate())
    clocks = _Clocks()
    load = _load(signer, clocks)
    with load.running(asyncio.get_running_loop()):
        assert not signer.wants_nonces  # starts inline
        for _ in range(8):  # 68 %: half load, for two seconds
            clocks.window(signer, cpu=0.17, inline=3_000)
            load.sample()
        assert (load.window_busy, signer.wants_nonces) == (pytest.approx(0.68), False)
        assert load.busy == pytest.approx(0.68, abs=0.01)
        assert load.inline_cost == pytest.approx(20e-6)  # timed in place now
        clocks.window(signer, cpu=0.22, inline=4_000)  # one window at 88 %: smoothed, 78 %
        load.sample()
        assert not signer.wants_nonces
        clocks.window(signer, cpu=0.22, inline=4_000)  # it lasts: 83 %
        load.sample()
        assert signer.wants_nonces and load.switches == 1
        # Same load, now signed with the helper's nonces: 14 µs less each, the same share.
        clocks.window(signer, cpu=0.22 - 4_000 * 14e-6, precomputed=4_000)
        load.sample()
        assert (load.window_busy, signer.wants_nonces) == (pytest.approx(0.88), True)
        clocks.window(signer, cpu=0.12, precomputed=2_500)  # 62 %: smoothed, 74 %: holds
        load.sample()
        assert signer.wants_nonces
        clocks.window(signer, cpu=0.12, precomputed=2_500)  # it lasts: 68 %
        load.sample()
        assert not signer.wants_nonces and load.switches == 2
        for _ in range(8):  # 76 %: inside the gap, stays inline
            clocks.window(signer, cpu=0.19, inline=3_500)
            load.sample()
        assert not signer.wants_nonces and load.switches == 2
    assert signer.wants_nonces  # the signer's own default again


async def test_a_saturated_process_engages_at_once() -> None:
    signer = Signer(Ed25519PrivateKey.generate())
    clocks = _Clocks()
    load = _load(signer, clocks)
    with load.running(asyncio.get_running_loop()):
        windows = 0
        while not signer.wants_nonces:
            clocks.window(signer, cpu=0.25, inline=10_000)
            load.sample()
            windows += 1
            assert windows <= 4
        assert windows == 1  # saturated: taken as it is, not averaged
        assert load.busy == pytest.approx(1.0)
        clocks.window(signer, cpu=0.2 - 5_000 * 14e-6, precomputed=5_000)  # busy but not flat out
        load.sample()
        assert signer.wants_nonces and load.busy == pytest.approx(0.9)


async def test_a_rising_load_engages_once_it_lasts() -> None:
    signer = Signer(Ed25519PrivateKey.generate())
    clocks = _Clocks()
    load = _load(signer, clocks)
    with load.running(asyncio.get_running_loop()):
        for expected in (0.45, 0.675, 0.7875):  # windows at 90 %: averaged
            clocks.window(signer, cpu=0.225, inline=9_000)
            load.sample()
            assert (load.busy, signer.wants_nonces) == (pytest.approx(expected), False)
        clocks.window(signer, cpu=0.225, inline=9_000)
        load.sample()
        assert signer.wants_nonces


def test_the_starting_estimate_is_a_signature_and_its_multiplication() -> None:
    inline, multiplication = signing_costs(rounds=2, calls=5)
    assert 0 < multiplication < inline < 0.01
