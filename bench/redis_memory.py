"""Measure Redis memory per license and per installation (README "Scale and sizing").

    .venv/bin/python bench/redis_memory.py [--sizes 10000 100000] [--redis-url redis://…]

Without --redis-url a private `redis-server` (from PATH) is started on a free port with
persistence off, so nothing else shares its memory. For each size N the script fills a fresh
key prefix through the real hot path (`ActivationStore.activate`: the activation Lua script,
first call a cache miss filled from a realistic license document, exactly as in production),
with one installation per license, then a second installation per license, and reads
`INFO memory` used_memory after each phase. Streams are measured, then trimmed, because the
worker acknowledges and trims them continuously (they are transient, not per license).
`MEMORY USAGE` of a sample of keys gives the per-structure break-down.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from activation.licensing.model import Edition, License, LicenseKind
from activation.store.keys import KeyLayout
from activation.store.redis_store import ActivationRequest, ActivationStore, Limits

SHARDS = 16
CONCURRENCY = 256
SAMPLE = 200


def license_key(n: int) -> str:
    raw = hashlib.sha256(f"license-{n}".encode()).hexdigest().upper()[:25]
    return "-".join(raw[i : i + 5] for i in range(0, 25, 5))


def fingerprint(n: int, server: int) -> str:
    return hashlib.sha256(f"server-{n}-{server}".encode()).hexdigest()


def make_license(key: str) -> License:
    return License(
        key=key,
        product="smartermail",
        kind=LicenseKind.PERPETUAL,
        edition=Edition.ENTERPRISE,
        purchased_on=date(2026, 1, 15),
        ms_covered_through=date(2027, 1, 14),
        failover=True,
        max_servers=2,
        addons=frozenset({"eas", "mapi"}),
        limits={"mailboxes": 250, "domains": 50},
    )


@contextlib.contextmanager
def private_redis() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not on PATH; pass --redis-url")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="redis-memory-")
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", workdir]
    command += ["--save", "", "--appendonly", "no"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


async def used_memory(redis: Redis) -> int:
    await asyncio.sleep(0.2)  # let lazy frees and incremental rehashing settle
    info = await redis.info("memory")
    # Client buffers (this script's pooled connections) are not data: leave them out.
    return int(info["used_memory"]) - int(info.get("mem_clients_normal", 0))


async def phase(store: ActivationStore, count: int, server: int, now: datetime) -> None:
    async def one(n: int) -> None:
        await store.activate(
            ActivationRequest(
                license_key=license_key(n),
                fingerprint=fingerprint(n, server),
                hostname=f"mail{server}.customer{n}.example.com",
                version="16.3.6989",
                ip=f"203.0.{(n >> 8) & 255}.{n & 255}",
                event_id=os.urandom(16).hex(),
            ),
            now,
        )

    for start in range(0, count, CONCURRENCY):
        await asyncio.gather(*(one(n) for n in range(start, min(start + CONCURRENCY, count))))


async def sample_usage(redis: Redis, layout: KeyLayout, count: int) -> dict[str, float]:
    totals = {"license hash": 0, "installations zset": 0, "details hash": 0}
    step = max(count // SAMPLE, 1)
    picked = range(0, count, step)
    for n in picked:
        keys = layout.for_license(license_key(n), 0)
        totals["license hash"] += await redis.memory_usage(keys.license, samples=0) or 0
        totals["installations zset"] += await redis.memory_usage(keys.installations, samples=0) or 0
        totals["details hash"] += await redis.memory_usage(keys.details, samples=0) or 0
    return {name: total / len(picked) for name, total in totals.items()}


async def stream_bytes(redis: Redis, layout: KeyLayout) -> tuple[int, int]:
    entries = size = 0
    for stream in layout.streams():
        entries += await redis.xlen(stream)
        size += await redis.memory_usage(stream, samples=0) or 0
    return entries, size


async def measure(url: str, count: int) -> dict[str, float]:
    redis = Redis.from_url(url, max_connections=CONCURRENCY)
    await redis.flushdb()
    prefix = f"mem{count}"
    layout = KeyLayout(prefix, SHARDS, cluster=False)
    limits = Limits(
        ip_per_minute=0, key_per_minute=0, unknown_per_minute=0, active_window_seconds=7 * 86_400
    )

    async def loader(key: str) -> License | None:
        return make_license(key)

    store = ActivationStore(redis, layout, limits, loader)
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    base = await used_memory(redis)
    await phase(store, count, 1, now)
    entries, streams = await stream_bytes(redis, layout)
    with_streams = await used_memory(redis)
    for stream in layout.streams():
        await redis.xtrim(stream, maxlen=0)
    one = await used_memory(redis)
    await phase(store, count, 2, now)
    for stream in layout.streams():
        await redis.xtrim(stream, maxlen=0)
    two = await used_memory(redis)
    assert store.cache_misses == count, store.cache_misses
    keys = await redis.dbsize()
    usage = await sample_usage(redis, layout, count)
    await redis.flushdb()
    await redis.aclose()
    return {
        "licenses": count,
        "keys": keys,
        "per_license_1_install": (one - base) / count,
        "per_extra_install": (two - one) / count,
        "per_license_2_installs": (two - base) / count,
        "stream_per_event": (with_streams - one) / entries,
        "stream_memory_usage_per_event": streams / entries,
        **{f"MEMORY USAGE {name}": value for name, value in usage.items()},
    }


def report(results: list[dict[str, float]]) -> None:
    print("\nRedis memory (used_memory deltas; INFO memory), bytes")
    header = f"{'licenses':>10} {'keys':>9} {'lic+1 inst':>11} {'+1 inst':>8} {'lic+2 inst':>11}"
    print(header + f" {'stream/event':>13}")
    for r in results:
        print(
            f"{r['licenses']:>10,.0f} {r['keys']:>9,.0f} {r['per_license_1_install']:>11,.0f} "
            f"{r['per_extra_install']:>8,.0f} {r['per_license_2_installs']:>11,.0f} "
            f"{r['stream_per_event']:>13,.0f}"
        )
    print("\nMEMORY USAGE samples (bytes per key, mean over the sample; 2 installations)")
    for r in results:
        parts = ", ".join(
            f"{k.removeprefix('MEMORY USAGE ')}: {v:,.0f}"
            for k, v in r.items()
            if k.startswith("MEMORY")
        )
        print(f"  {r['licenses']:>9,.0f} licenses: {parts}")
    largest = results[-1]
    per_license, per_install = largest["per_license_1_install"], largest["per_extra_install"]
    print("\nSizing (from the largest run; dataset only, before Redis' own overhead and replicas)")
    print(f"{'licenses':>10} {'1 server each':>14} {'2 servers each':>15}")
    for licenses in (10_000, 100_000, 1_000_000):
        one = licenses * per_license
        two = licenses * (per_license + per_install)
        print(f"{licenses:>10,} {one / 2**20:>11,.0f} MiB {two / 2**20:>12,.0f} MiB")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--redis-url", help="a Redis to FLUSH and use (default: a private one)")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        url = args.redis_url or stack.enter_context(private_redis())
        results = []
        for count in args.sizes:
            started = time.perf_counter()
            results.append(await measure(url, count))
            print(
                f"{count:,} licenses measured in {time.perf_counter() - started:.1f}s", flush=True
            )
        report(results)


if __name__ == "__main__":
    asyncio.run(main())
