"""When an API process hands the signature's r·B to its nonce helper: only when it is busy.

The helper (`nonces.py`) takes the scalar multiplication off every answer, which lets a
saturated API process serve ≈ 20 % more activations. But its work is not free while the process
has headroom: on the 2-vCPU virtual machines we measure on, a program computing on the other
vCPU slows the server and Redis down (a 25 %-duty spinner there, idle-priority or niced, raised
the half-load p99 from 2.5 to 4.2–5.0 ms), and at half of the peak the p99 was 4.2–5.8 ms with
the helper at work against 2.0–2.5 ms signing inline (README, Benchmark, seventh session). So
every quarter of a second the process measures how busy it would be signing inline — its own
CPU time plus, for each answer signed with a precomputed nonce, what an inline signature costs
more (inline signatures are timed in place by the signer) — and takes precomputed nonces only
while that share is high:

- from 80 % busy on: above it inline signing runs into the queueing cliff (one process signing
  inline: 13,000 answers/s at 79 % busy, p99 3.1–3.5 ms; 14,000/s at 83 %, p99 29–66 ms; with
  the helper at work 5.5 and 7.4 ms);
- back to inline below 72 %: the gap keeps a load near the threshold from switching every window
  (signing with precomputed nonces also spares the rest of the process some cache misses, so
  the share measured while engaged can read up to ≈ 0.08 lower than the same load inline).

The share the switch looks at is smoothed (each window counts half, the windows before it the
other half): at half of the peak single windows reached 81–86 % while the load was steady at
69 %, and one of them engaged the helper for the rest of the run. A window of 95 % or more is
taken as it is: the process is saturated now, and waiting three windows for the average cost
1–2 % of the answers of a ten-second burst.

The pipe to the helper stays full while nonces are not taken, so the helper sleeps in `write`.
`signatures_inline_total` counts only the answers signed inline while the process wanted a
precomputed nonce (helper off, starting, restarting or behind a burst), as its alert expects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import NamedTuple

from nacl.bindings import (
    crypto_core_ed25519_scalar_reduce,
    crypto_scalarmult_ed25519_base_noclamp,
    crypto_sign,
    crypto_sign_seed_keypair,
)

from activation.api.signing import Signer

log = logging.getLogger(__name__)

ENGAGE_AT = 0.80
RELEASE_AT = 0.72
SATURATED_AT = 0.95
WINDOW_SECONDS = 0.25
MIN_TIMED = 32  # inline signatures in a window before their average replaces the last


def wants_precomputed(engaged: bool, busy: float) -> bool:
    """The switch with its hysteresis: `busy` is the share of one CPU the process would use
    signing every answer inline."""
    return busy >= (RELEASE_AT if engaged else ENGAGE_AT)


def inline_busy_share(
    cpu_seconds: float, wall_seconds: float, precomputed: int, saving_each: float
) -> float:
    """The share of one CPU the process would have used over a window signing inline: its own
    CPU time plus, for each answer signed with a precomputed nonce, what inline signing costs
    more. Whichever way the process signed, the same load gives the same share, so the
    switch does not feed back on itself."""
    if wall_seconds <= 0:
        return 0.0
    return (cpu_seconds + precomputed * max(0.0, saving_each)) / wall_seconds


def signing_costs(rounds: int = 5, calls: int = 20) -> tuple[float, float]:
    """(inline signature, scalar multiplication r·B) in seconds, the fastest of `rounds` in a
    tight loop: the starting estimate until the server has timed its own signatures."""
    _, secret_key = crypto_sign_seed_keypair(bytes(32))
    scalar = crypto_core_ed25519_scalar_reduce(bytes(range(64)))
    body = bytes(400)
    inline = multiplication = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            crypto_sign(body, secret_key)
        inline = min(inline, (time.perf_counter() - started) / calls)
        started = time.perf_counter()
        for _ in range(calls):
            crypto_scalarmult_ed25519_base_noclamp(scalar)
        multiplication = min(multiplication, (time.perf_counter() - started) / calls)
    return inline, multiplication


class _Reading(NamedTuple):
    cpu: float
    wall: float
    inline_seconds: float
    inline_signed: int
    precomputed_signed: int


class SigningLoad:
    """Measures the process every `WINDOW_SECONDS` (`window_busy`), smooths it (`busy`) and
    switches `signer` between inline signatures and the helper's nonces (`Signer.want_nonces`).
    An inline signature's cost is the signer's own timing of them (in place they cost ≈ 1.5×
    a tight loop's), `signing_costs()` until it has signed some; the rest of a signature with a
    precomputed nonce is taken from `signing_costs()` alone (≈ 3 µs: not timed, so that a
    saturated process spends nothing on measuring).
    `cpu_time` and `wall_time` are the process's CPU clock and a monotonic clock (tests pass
    their own)."""

    def __init__(
        self,
        signer: Signer,
        *,
        cpu_time: Callable[[], float] = time.process_time,
        wall_time: Callable[[], float] = time.monotonic,
        costs: tuple[float, float] | None = None,
    ) -> None:
        inline, multiplication = signing_costs() if costs is None else costs
        self._signer = signer
        self._cpu_time = cpu_time
        self._wall_time = wall_time
        self.inline_cost = inline
        self.precomputed_cost = inline - multiplication
        self.window_busy = 0.0
        self.busy = 0.0
        self.switches = 0
        self._mark = self._reading()

    def _reading(self) -> _Reading:
        signer = self._signer
        return _Reading(
            self._cpu_time(),
            self._wall_time(),
            signer.inline_seconds,
            signer.inline_signed,
            0 if signer.nonces is None else signer.nonces.taken,  # one pair per signature
        )

    @property
    def engaged(self) -> bool:
        return self._signer.wants_nonces

    def sample(self) -> None:
        """Close the current window: measure it and switch if the share crossed a threshold."""
        now, mark = self._reading(), self._mark
        self._mark = now
        inline_signed = now.inline_signed - mark.inline_signed
        if inline_signed >= MIN_TIMED:
            self.inline_cost = (now.inline_seconds - mark.inline_seconds) / inline_signed
        precomputed = now.precomputed_signed - mark.precomputed_signed
        self.window_busy = inline_busy_share(
            now.cpu - mark.cpu,
            now.wall - mark.wall,
            precomputed,
            self.inline_cost - self.precomputed_cost,
        )
        # A saturated window says enough by itself: no need to wait for the average.
        saturated = self.window_busy >= SATURATED_AT
        self.busy = self.window_busy if saturated else (self.busy + self.window_busy) / 2
        engaged = wants_precomputed(self.engaged, self.busy)
        if engaged != self.engaged:
            self.switches += 1
            self._signer.want_nonces(engaged)
            mode = "precomputed nonces" if engaged else "inline"
            log.debug("signing %s from %.0f %% busy", mode, self.busy * 100)

    @contextlib.contextmanager
    def running(self, loop: asyncio.AbstractEventLoop) -> Iterator[SigningLoad]:
        """Sample every window while the block runs; the signer starts inline (a process
        that starts busy engages the helper after one window)."""
        self._signer.want_nonces(False)
        handle: asyncio.TimerHandle | None = None

        def tick() -> None:
            nonlocal handle
            self.sample()
            handle = loop.call_later(WINDOW_SECONDS, tick)

        self._mark = self._reading()
        handle = loop.call_later(WINDOW_SECONDS, tick)
        try:
            yield self
        finally:
            handle.cancel()
            self._signer.want_nonces(True)
