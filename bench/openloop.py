"""An open-loop, fixed-rate HTTP load generator (Debian has no wrk2).

    python bench/openloop.py --url http://127.0.0.1:8080/v1/activations \
        --bodies bodies.json --phase 3000:1 --phase 3000:10 [--record-from 1]

Requests are *scheduled* at the rate of the current phase (request i of a phase is due at the
phase's start + i / rate), whether or not earlier answers have come back: a closed-loop tool
such as wrk waits for an answer before it sends the next request, so a slow server quietly
lowers the load it is offered. Here a slow server meets more concurrent requests instead, as
it does from real clients. `--connections` keep-alive connections are open before the first
request (clients with a connection each, or a load balancer's pool); when every one is busy
the generator opens another (up to `--max-connections`; beyond it requests wait in the
generator, counted as `queued`, and their wait is part of their latency).

A request's latency runs from its dispatch (the scheduler's tick, at most about a
millisecond after it was due; the lag is reported as `lag_p99_ms`) to the last byte of its
answer. Requests due before `--record-from` seconds are sent but not recorded.

Prints one JSON object: per phase the answers by status, p50/p99 of all answers and of the
200s; per window of `--window` seconds (by dispatch time) the requests, the 200s, p99 and the
answers slower than `--slow-ms`, so the caller can see when a server recovered.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import resource
import subprocess
import sys
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

FAILED = 0  # the status recorded for a request that got no answer (connection lost, timeout)


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with at most one request in flight."""

    def __init__(self, generator: Generator) -> None:
        self.generator = generator
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.dispatched = 0.0
        self.recorded = False
        self.busy = False
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but implement its methods.
        self.transport = cast(asyncio.Transport, transport)
        self.generator.opened(self)

    def send(self, request: bytes, dispatched: float, recorded: bool) -> None:
        assert self.transport is not None
        self.busy = True
        self.dispatched = dispatched
        self.recorded = recorded
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        marker = head.find(b"\r\ncontent-length:")
        if marker < 0:  # chunked or close-delimited answers are not expected here
            self.fail("no content-length")
            return
        line_end = head.find(b"\r\n", marker + 2)
        length = int(head[marker + 17 : line_end if line_end >= 0 else len(head)])
        if len(self.buffer) < end + 4 + length:
            return
        del self.buffer[: end + 4 + length]
        self.closing = b"\r\nconnection: close" in head
        self.busy = False
        self.generator.answered(self, int(head[9:12]))

    def fail(self, reason: str) -> None:
        if self.busy:
            self.busy = False
            self.generator.failed(self, reason)
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self.busy:
            self.busy = False
            self.generator.failed(self, "connection lost")
        self.generator.closed(self)


@dataclass
class Generator:
    requests: list[list[bytes]]
    host: str
    port: int
    max_connections: int
    # One entry per recorded request: (dispatched, latency in seconds, status; FAILED if none).
    records: list[tuple[float, float, int]] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    idle: list[Connection] = field(default_factory=list)
    waiting: deque[tuple[float, bool]] = field(default_factory=deque)
    connections: int = 0  # open or opening
    most_connections: int = 0
    queued: int = 0  # requests that found every connection busy and the limit reached
    outstanding: int = 0
    dispatching: bool = True
    drained: asyncio.Event = field(default_factory=asyncio.Event)

    def pick(self) -> bytes:
        return random.choice(random.choice(self.requests))

    def dispatch(self, dispatched: float, recorded: bool) -> None:
        self.outstanding += 1
        if self.idle:
            self.idle.pop().send(self.pick(), dispatched, recorded)
            return
        self.waiting.append((dispatched, recorded))
        if self.connections < self.max_connections:
            self.open()
        else:
            self.queued += 1

    def open(self) -> None:
        self.connections += 1
        self.most_connections = max(self.most_connections, self.connections)
        loop = asyncio.get_running_loop()
        task = loop.create_task(
            loop.create_connection(lambda: Connection(self), self.host, self.port)
        )
        task.add_done_callback(self._open_done)

    def _open_done(self, task: asyncio.Task[object]) -> None:
        error = None if task.cancelled() else task.exception()
        if task.cancelled() or error is not None:
            self.connections -= 1
            self.errors[f"connect: {type(error).__name__}"] += 1
            if self.waiting:  # the request that asked for it fails, the rest keep waiting
                dispatched, recorded = self.waiting.popleft()
                self._record(dispatched, recorded, FAILED)

    def opened(self, connection: Connection) -> None:
        self._next(connection)

    def answered(self, connection: Connection, status: int) -> None:
        self._record(connection.dispatched, connection.recorded, status)
        if connection.closing:
            if connection.transport is not None:
                connection.transport.close()
            return
        self._next(connection)

    def failed(self, connection: Connection, reason: str) -> None:
        self.errors[reason] += 1
        self._record(connection.dispatched, connection.recorded, FAILED)

    def closed(self, connection: Connection) -> None:
        self.connections -= 1
        if connection in self.idle:
            self.idle.remove(connection)
        if self.waiting and self.connections < self.max_connections:
            self.open()

    def _record(self, dispatched: float, recorded: bool, status: int) -> None:
        self.outstanding -= 1
        if not self.dispatching and self.outstanding == 0:
            self.drained.set()
        if recorded:
            self.records.append((dispatched, time.perf_counter() - dispatched, status))

    def _next(self, connection: Connection) -> None:
        if self.waiting:
            dispatched, recorded = self.waiting.popleft()
            connection.send(self.pick(), dispatched, recorded)
        else:
            self.idle.append(connection)


def load_requests(path: str, host: str, port: int, target: str) -> list[list[bytes]]:
    with open(path, encoding="utf-8") as file:
        licenses: list[list[str]] = json.load(file)
    head = f"POST {target} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
    return [
        [
            (head + f"Content-Length: {len(body.encode())}\r\n\r\n").encode() + body.encode()
            for body in servers
        ]
        for servers in licenses
    ]


def summary(records: list[tuple[float, float, int]], seconds: float) -> dict[str, object]:
    """Answers by status, p50/p99 of all answers and of the 200s, over `seconds`."""
    statuses = Counter(status for _, _, status in records)
    answered = sorted(latency for _, latency, status in records if status != FAILED)
    served = sorted(latency for _, latency, status in records if status == 200)
    return {
        "requests": len(records),
        "rate": round(len(records) / seconds, 1) if seconds > 0 else None,
        "statuses": {str(status): count for status, count in sorted(statuses.items())},
        "p50_ms": ms(percentile(answered, 0.50)),
        "p99_ms": ms(percentile(answered, 0.99)),
        "served_p50_ms": ms(percentile(served, 0.50)),
        "served_p99_ms": ms(percentile(served, 0.99)),
        "max_ms": ms(answered[-1]) if answered else None,
    }


async def run(args: argparse.Namespace) -> dict[str, object]:
    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    generator = Generator(
        load_requests(args.bodies, host, port, url.path or "/"), host, port, args.max_connections
    )
    loop = asyncio.get_running_loop()
    # Opened in small groups with a pause for the server to accept them: a burst beyond its
    # listen backlog would wait for SYN retransmits.
    for start in range(0, args.connections, 100):
        count = min(100, args.connections - start)
        await asyncio.gather(
            *(
                loop.create_connection(lambda: Connection(generator), host, port)
                for _ in range(count)
            )
        )
        await asyncio.sleep(0.02)
    generator.connections = generator.most_connections = args.connections
    phases = [(float(rate), float(seconds)) for rate, seconds in args.phase]
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    phase_start = 0.0
    for rate, seconds in phases:
        total, sent = int(rate * seconds), 0
        while sent < total:
            now = time.perf_counter()
            due = min(total, int((now - t0 - phase_start) * rate) + 1)
            while sent < due:
                intended = phase_start + sent / rate
                recorded = intended >= args.record_from
                if recorded:
                    generator.lags.append(now - t0 - intended)
                generator.dispatch(now, recorded)
                sent += 1
            await asyncio.sleep(0.001)
        phase_start += seconds
    generator.dispatching = False
    if generator.outstanding == 0:
        generator.drained.set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(generator.drained.wait(), args.timeout)
    unfinished = generator.outstanding
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    for connection in [*generator.idle]:
        if connection.transport is not None:
            connection.transport.close()

    records = sorted(generator.records)
    report_phases, phase_start = [], 0.0
    for rate, seconds in phases:
        start = max(phase_start, args.record_from)
        end = phase_start + seconds
        inside = [r for r in records if start <= r[0] - t0 < end]
        if end > start:
            report_phases.append(
                {
                    "target_rate": rate,
                    "seconds": round(end - start, 3),
                    **summary(inside, end - start),
                }
            )
        phase_start = end
    windows: dict[int, list[tuple[float, float, int]]] = {}
    for record in records:
        windows.setdefault(int((record[0] - t0) / args.window), []).append(record)
    timeline = [
        {
            "start_s": round(index * args.window, 3),
            "requests": len(inside),
            "ok": sum(1 for _, _, status in inside if status == 200),
            "p99_ms": ms(percentile(sorted(latency for _, latency, _ in inside), 0.99)),
            "slow": sum(1 for _, latency, _ in inside if latency * 1000 > args.slow_ms),
        }
        for index, inside in sorted(windows.items())
    ]
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    dispatched = sum(int(rate * seconds) for rate, seconds in phases)
    return {
        "phases": report_phases,
        "errors": dict(generator.errors),
        "unfinished": unfinished,
        "most_connections": generator.most_connections,
        "queued_in_generator": generator.queued,
        "lag_p99_ms": ms(percentile(sorted(generator.lags), 0.99)),
        "generator_cpu_us_per_request": round(cpu / max(1, dispatched) * 1e6, 1),
        "window_s": args.window,
        "timeline": timeline,
    }


def measure(
    url: str,
    bodies_json: Path,
    phases: Sequence[tuple[float, float]],
    *,
    record_from: float = 0.0,
    slow_ms: float = float("inf"),
    connections: int = 32,
    max_connections: int = 4000,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """Run this generator in a process of its own (its CPU apart from the caller's) with
    `phases` of (requests per second, seconds); its JSON report."""
    command = [sys.executable, __file__, "--url", url, "--bodies", str(bodies_json)]
    command += [f"--phase={rate:.1f}:{seconds}" for rate, seconds in phases]
    command += ["--record-from", str(record_from), "--timeout", str(timeout)]
    command += ["--slow-ms", str(slow_ms)]
    command += ["--connections", str(connections), "--max-connections", str(max_connections)]
    limit = sum(seconds for _, seconds in phases) + timeout + 60
    finished = subprocess.run(command, capture_output=True, text=True, timeout=limit)
    if finished.returncode != 0:
        raise RuntimeError(f"openloop.py failed:\n{finished.stdout}\n{finished.stderr}")
    report: dict[str, Any] = json.loads(finished.stdout.strip().splitlines()[-1])
    return report


def phase(text: str) -> tuple[float, float]:
    rate, _, seconds = text.partition(":")
    value = (float(rate), float(seconds))
    if value[0] <= 0 or value[1] <= 0:
        raise argparse.ArgumentTypeError(f"a phase is RATE:SECONDS, both positive: {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", required=True)
    parser.add_argument("--bodies", required=True, help="JSON: list of lists of body strings")
    parser.add_argument(
        "--phase",
        type=phase,
        action="append",
        required=True,
        help="RATE:SECONDS, requests per second for that long (repeatable)",
    )
    parser.add_argument("--record-from", type=float, default=0.0, help="unrecorded seconds")
    parser.add_argument("--connections", type=int, default=32, help="opened up front")
    parser.add_argument("--max-connections", type=int, default=4000)
    parser.add_argument("--window", type=float, default=0.1, help="timeline window, seconds")
    parser.add_argument("--timeout", type=float, default=10.0, help="wait for stragglers")
    parser.add_argument(
        "--slow-ms", type=float, default=float("inf"), help="counted per window when slower"
    )
    args = parser.parse_args(argv)
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        print(json.dumps(runner.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
