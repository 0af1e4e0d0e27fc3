"""Ed25519 signing nonces computed ahead of time by a helper process (online/offline signing).

An Ed25519 signature is (R, S) with R = r·B and S = r + H(R ‖ A ‖ M)·a mod L. libsodium
derives r from the key and the message, so the scalar multiplication r·B, ≈ 23 µs and 90% of
a signature, sits on the request path of every activation. Verification never looks at how r
was chosen: any r drawn uniformly at random and never used twice gives a signature every
RFC 8032 verifier accepts, and r·B does not depend on the message. So a helper process draws
r from the OS's CSPRNG and computes R ahead of time, and the request path keeps one SHA-512
and two constant-time libsodium scalar operations (see `Signer`).

The rules that keep this as safe as deterministic signing:

- a pair is handed out once: only the event-loop thread of the API process takes pairs, and a
  pair leaves the buffer as it is taken;
- pairs never cross a fork: a forked child drops every buffered pair at once (`os.
  register_at_fork`) and its sources never read the parent's pipe;
- the pipe is private to the API process (the helper's stdout), not inherited by others;
- the helper computes only while the pipe has room (1 MiB, ≈ 16k pairs) and only on idle CPU
  time (SCHED_IDLE), so it never competes with requests;
- when no pair is ready (a burst emptied the pipe, the helper is starting or died) the signer
  falls back to libsodium's deterministic signing: same format, just slower. A dead helper is
  restarted at most every 10 s.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import sys
import time
import weakref

log = logging.getLogger(__name__)

PAIR_BYTES = 64  # r (32-byte scalar) ‖ R (32-byte compressed point)
PAIRS_PER_WRITE = 64  # 4,096 bytes = PIPE_BUF: every write reaches the reader whole
PIPE_BYTES = 1 << 20
READ_BYTES = 1 << 16
RESTART_AFTER_SECONDS = 10.0
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


class NonceSource:
    """The API process's end of the helper's pipe."""

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._buffer = b""
        self._offset = 0
        self._helper: subprocess.Popen[bytes] | None = None
        self._fd = -1
        self._started_at = 0.0
        self.taken = 0
        self.missed = 0
        _SOURCES.add(self)
        self._start()

    def _start(self) -> None:
        self._started_at = time.monotonic()
        try:
            helper = subprocess.Popen(
                [sys.executable, "-m", "activation.api.nonces"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
            )
        except OSError as error:
            log.warning("signing nonce helper did not start (%s): signing inline", error)
            return
        assert helper.stdout is not None
        fd = helper.stdout.fileno()
        os.set_blocking(fd, False)
        with contextlib.suppress(OSError):  # a smaller pipe only means smaller bursts
            fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_BYTES)
        self._helper, self._fd = helper, fd

    @property
    def helper_pid(self) -> int | None:
        return None if self._helper is None else self._helper.pid

    def take(self) -> tuple[bytes, bytes] | None:
        """(r, R), never the same twice; None when none is ready (sign inline)."""
        offset = self._offset
        if offset >= len(self._buffer):
            if not self._refill():
                self.missed += 1
                return None
            offset = 0
        buffer = self._buffer
        self._offset = offset + PAIR_BYTES
        self.taken += 1
        return buffer[offset : offset + 32], buffer[offset + 32 : offset + PAIR_BYTES]

    def _refill(self) -> bool:
        if os.getpid() != self._pid:
            return False  # a copy in a forked process: its pairs are not its own
        if self._fd < 0:
            self._maybe_restart()
            return False
        try:
            data = os.read(self._fd, READ_BYTES)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:
            log.warning("signing nonce helper stopped: signing inline until it is restarted")
            self._stop_helper()
            return False
        # Never split in practice: every write is whole pairs and at most PIPE_BUF, so atomic.
        whole = len(data) - len(data) % PAIR_BYTES
        self._buffer, self._offset = data[:whole], 0
        return whole > 0

    def _maybe_restart(self) -> None:
        if time.monotonic() - self._started_at >= RESTART_AFTER_SECONDS:
            self._start()

    def _stop_helper(self) -> None:
        helper, self._helper = self._helper, None
        if helper is None:
            return
        self._fd = -1
        if helper.stdout is not None:
            helper.stdout.close()  # the helper's next write fails and it exits
        with contextlib.suppress(ProcessLookupError):
            helper.terminate()
        try:
            helper.wait(timeout=2)
        except subprocess.TimeoutExpired:
            helper.kill()
            helper.wait()

    def close(self) -> None:
        """Stop the helper; pairs already read are dropped, never reused."""
        self._buffer, self._offset = b"", 0
        if os.getpid() == self._pid:
            self._stop_helper()


_SOURCES: weakref.WeakSet[NonceSource] = weakref.WeakSet()


def _drop_pairs_in_child() -> None:
    for source in _SOURCES:
        source._buffer, source._offset = b"", 0


os.register_at_fork(after_in_child=_drop_pairs_in_child)


def _run_only_when_idle() -> None:
    """SCHED_IDLE: the helper runs only on a CPU nobody else wants, and gives it up the moment
    a request handler wakes (a niced process still takes its time slices)."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux, or not permitted
        with contextlib.suppress(OSError):
            os.nice(19)


def produce(fd: int) -> None:
    """The helper: fill the pipe with fresh (r, R) pairs until the reader goes away."""
    from nacl.bindings import (
        crypto_core_ed25519_scalar_reduce,
        crypto_scalarmult_ed25519_base_noclamp,
    )
    from nacl.exceptions import RuntimeError as SodiumError

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the server, which stops us
    _run_only_when_idle()
    while True:
        chunk = bytearray()
        for _ in range(PAIRS_PER_WRITE):
            # 64 random bytes reduced mod L: a uniform scalar (the bias is below 2^-250).
            r = crypto_core_ed25519_scalar_reduce(os.urandom(64))
            try:
                point = crypto_scalarmult_ed25519_base_noclamp(r)
            except SodiumError:  # r = 0, probability 2^-252: draw again
                continue
            chunk += r
            chunk += point
        try:
            os.write(fd, chunk)
        except (BrokenPipeError, OSError):
            return


if __name__ == "__main__":
    produce(sys.stdout.fileno())
