"""A small open-loop, fixed-rate HTTP load generator (Debian has no wrk2).

    python bench/openloop.py --url http://127.0.0.1:8080/v1/activations --rate 5000 \
        --duration 10 --bodies build/bench/bodies.json [--connections 64] [--warmup 1]

Requests are *scheduled* at a fixed rate (request i is due at t0 + i / rate), whether or not
earlier answers have come back: this is what "latency at half load" means, and what a
closed-loop tool such as wrk cannot do (it waits for an answer before sending the next
request, so a slow server silently lowers the offered load).

What the latency measures: from the moment the generator dispatches a request (its scheduler
tick, at most ~1 ms after the due time) to the last byte of the answer. It includes the time
a request waits for a free keep-alive connection when all of them are busy (that is the
server being slow), and excludes the generator's own scheduling lag, reported separately as
`lag_p99_ms` so a reader can see whether the generator kept up. Requests due during the first
`--warmup` seconds are sent but not recorded.

The client is a bare asyncio protocol over pre-formatted HTTP/1.1 requests (no aiohttp
client: ~10x cheaper per request), because it shares the machine's cores with the server; its
CPU cost per request is reported as `client_cpu_us_per_request`.

Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import resource
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import urlsplit


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with at most one request in flight."""

    def __init__(self, generator: Generator) -> None:
        self.generator = generator
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.started = 0.0
        self.measured = False
        self.busy = False
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but implement its methods.
        self.transport = cast(asyncio.Transport, transport)
        self.ready.set_result(None)

    def send(self, request: bytes, started: float, measured: bool) -> None:
        assert self.transport is not None
        self.busy = True
        self.started = started
        self.measured = measured
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            marker = head.find(b"\r\ncontent-length:")
            if marker < 0:
                # Chunked or close-delimited answers are not expected from this server.
                self.generator.failed(self, "no content-length")
                self.close()
                return
            line_end = head.find(b"\r\n", marker + 2)
            length = int(head[marker + 17 : line_end if line_end >= 0 else len(head)])
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            status = int(head[9:12])
            del self.buffer[:total]
            self.busy = False
            self.generator.completed(self, status)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(exc or ConnectionError("connection closed"))
        self.generator.lost(self)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


@dataclass
class Generator:
    requests: list[list[bytes]]
    latencies: list[float] = field(default_factory=list)
    samples: list[tuple[float, float]] = field(default_factory=list)  # (dispatched, latency)
    lags: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    idle: list[Connection] = field(default_factory=list)
    queue: deque[tuple[float, bool]] = field(default_factory=deque)
    outstanding: int = 0
    all_done: asyncio.Event = field(default_factory=asyncio.Event)
    dispatching: bool = True

    def pick(self) -> bytes:
        servers = random.choice(self.requests)
        return random.choice(servers)

    def dispatch(self, started: float, measured: bool) -> None:
        self.outstanding += 1
        if self.idle:
            self.idle.pop().send(self.pick(), started, measured)
        else:
            self.queue.append((started, measured))

    def completed(self, connection: Connection, status: int) -> None:
        now = time.perf_counter()
        if connection.measured:
            self.latencies.append(now - connection.started)
            self.samples.append((connection.started, now - connection.started))
            self.statuses[status] = self.statuses.get(status, 0) + 1
        self._finish_one()
        self._next(connection)

    def failed(self, connection: Connection, reason: str) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1
        if connection.busy:
            connection.busy = False
            self._finish_one()

    def lost(self, connection: Connection) -> None:
        if connection in self.idle:
            self.idle.remove(connection)
        if connection.busy:
            self.failed(connection, "connection lost")

    def _finish_one(self) -> None:
        self.outstanding -= 1
        if not self.dispatching and self.outstanding == 0:
            self.all_done.set()

    def _next(self, connection: Connection) -> None:
        if self.queue:
            started, measured = self.queue.popleft()
            connection.send(self.pick(), started, measured)
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


async def run(args: argparse.Namespace) -> dict[str, object]:
    url = urlsplit(args.url)
    host = url.hostname or "127.0.0.1"
    port = url.port or 80
    generator = Generator(load_requests(args.bodies, host, port, url.path or "/"))
    loop = asyncio.get_running_loop()
    connections: list[Connection] = []
    for _ in range(args.connections):
        _, protocol = await asyncio.wait_for(
            loop.create_connection(lambda: Connection(generator), host, port), timeout=5
        )
        connections.append(protocol)
    generator.idle.extend(connections)

    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    rate = float(args.rate)
    total = int(rate * (args.warmup + args.duration))
    measure_from = args.warmup
    t0 = time.perf_counter()
    sent = 0
    while sent < total:
        now = time.perf_counter()
        due = min(total, int((now - t0) * rate) + 1)
        while sent < due:
            intended = sent / rate
            measured = intended >= measure_from
            if measured:
                generator.lags.append(now - t0 - intended)
            generator.dispatch(now, measured)
            sent += 1
        await asyncio.sleep(0.001)
    dispatched_in = time.perf_counter() - t0
    generator.dispatching = False
    if generator.outstanding == 0:
        generator.all_done.set()
    unfinished = 0
    try:
        await asyncio.wait_for(generator.all_done.wait(), timeout=args.timeout)
    except TimeoutError:
        unfinished = generator.outstanding
    elapsed = time.perf_counter() - t0
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    for connection in connections:
        connection.close()

    latencies = sorted(generator.latencies)
    per_second: dict[int, list[float]] = {}
    for started, latency in generator.samples:
        second = min(int(started - t0 - measure_from), max(0, int(args.duration) - 1))
        per_second.setdefault(second, []).append(latency)
    timeline = [
        {
            "second": second,
            "requests": len(values),
            "p50_ms": round(percentile(sorted(values), 0.50) * 1000, 3),
            "p99_ms": round(percentile(sorted(values), 0.99) * 1000, 3),
            "max_ms": round(max(values) * 1000, 3),
        }
        for second, values in sorted(per_second.items())
    ]
    lags = sorted(generator.lags)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    ok = sum(count for status, count in generator.statuses.items() if 200 <= status < 300)
    return {
        "tool": "bench/openloop.py (open loop, fixed rate)",
        "target_rate": rate,
        "offered_rate": round(total / dispatched_in, 1),
        "achieved_rate": round(len(latencies) / args.duration, 1),
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "connections": args.connections,
        "requests": len(latencies),
        "non_2xx": len(latencies) - ok,
        "statuses": {str(status): count for status, count in sorted(generator.statuses.items())},
        "errors": generator.errors,
        "unfinished": unfinished,
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 3),
        "p90_ms": round(percentile(latencies, 0.90) * 1000, 3),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 3),
        "p999_ms": round(percentile(latencies, 0.999) * 1000, 3),
        "max_ms": round((latencies[-1] if latencies else float("nan")) * 1000, 3),
        "lag_p99_ms": round(percentile(lags, 0.99) * 1000, 3),
        "client_cpu_us_per_request": round(cpu / max(1, total) * 1e6, 1),
        "elapsed_s": round(elapsed, 2),
        "per_second": timeline,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="unrecorded seconds first")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--bodies", required=True, help="JSON: list of lists of body strings")
    parser.add_argument("--timeout", type=float, default=10.0, help="wait for stragglers")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0:
        sys.exit("--rate and --duration must be positive")
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover
        runner = asyncio.Runner()
    with runner, contextlib.suppress(KeyboardInterrupt):
        print(json.dumps(runner.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
