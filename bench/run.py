"""`make bench`: the activation endpoint's speed against a bare endpoint and the design's floor,
at half load, and at twice its capacity, all on this machine in one run.

    .venv/bin/python bench/run.py [--seconds 5] [--runs 3] [--licenses 10000]
                                  [--overload-connections 2000] [--max-inflight N]
                                  [--output build/bench.json]

Needs wrk (`make wrk`), PostgreSQL and Redis. On a fresh database `lic_bench_<random>` and a
fresh Redis key prefix it seeds `--licenses` licenses and starts, on loopback ports:
`activation-server` (one process), bench/bare.py (the bare endpoint) and bench/floor.py (the
floor: parse, one EVALSHA, one Ed25519 signature). After one activation per license and
server (the cache is warm, as in production) it measures:

1. throughput (bench/throughput.py): wrk at full speed, `--runs` interleaved runs of
   `--seconds` per endpoint, medians; activations/bare and activations/floor;
2. half load: open loop (bench/openloop.py) at half the activations/s of step 1, p99;
3. overload (bench/overload.py): open loop at twice that for `--overload-seconds`, then
   half for `--recovery-seconds`, over `--overload-connections` keep-alive connections:
   served p99, share shed with 503, other outcomes, memory, recovery.

Prints the table, writes `--output` (JSON), and exits 1 if an answer was wrong (anything but
200 below capacity, except 503s the server counted in `activations_shed_total`, which the
table reports: a request that waited past MAX_QUEUE_DELAY_MS, e.g. while other programs held
the CPUs; anything but 200/503/429 above it). It stops its servers, drops the database and
deletes the Redis keys of its prefix in every case.

Environment: BENCH_POSTGRES_URL (an admin connection, default
postgresql://postgres@127.0.0.1:5432/postgres), BENCH_REDIS_URL (default REDIS_URL or
redis://127.0.0.1:6379/0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import random
import secrets
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import redis
import servers
from common import (  # bench/ is on sys.path when run as a script
    VENV_BIN,
    admin_postgres_url,
    bench_redis_url,
    create_database,
    delete_redis_prefix,
    drop_database,
    migrate,
    with_database,
)
from cpu import CpuUse
from fixture import make_fixture, prime, seed, write_bodies, write_signing_key
from openloop import measure
from overload import overload
from report import print_report
from throughput import Run, find_wrk, median_of, run_wrk

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")  # the rest comes from the harness


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def server_env(
    database_url: str,
    redis_url: str,
    prefix: str,
    workdir: Path,
    max_inflight: int | None,
    max_queue_delay_ms: int | None,
) -> dict[str, str]:
    """The servers' whole environment: production defaults, but no rate limits (all the load
    comes from one address) and this run's database, Redis prefix and signing key."""
    env = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
    env |= {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": prefix,
        "SIGNING_KEY_FILE": str(workdir / "signing.pem"),
        "RATE_LIMIT_IP_PER_MINUTE": "0",
        "RATE_LIMIT_KEY_PER_MINUTE": "0",
        "RATE_LIMIT_NOT_FOUND_PER_MINUTE": "0",
        "PYTHONUNBUFFERED": "1",
    }
    if max_inflight is not None:
        env["MAX_INFLIGHT"] = str(max_inflight)
    if max_queue_delay_ms is not None:
        env["MAX_QUEUE_DELAY_MS"] = str(max_queue_delay_ms)
    return env


def start_all(env: dict[str, str], workdir: Path, started: dict[str, servers.Server]) -> None:
    """The activation server, the bare endpoint and the floor, each on a free port, entered in
    `started` as each process starts (the caller stops them, even when one fails to start)."""
    api_port, admin_port = servers.free_port(), servers.free_port()
    api = [
        str(VENV_BIN / "activation-server"),
        "serve",
        "--host",
        "127.0.0.1",
        "--public-port",
        str(api_port),
        "--admin-port",
        str(admin_port),
    ]
    for name, command, port in (
        ("activations", api, api_port),
        ("bare", [sys.executable, str(BENCH / "bare.py")], servers.free_port()),
        ("floor", [sys.executable, str(BENCH / "floor.py")], servers.free_port()),
    ):
        if name != "activations":
            command = [*command, str(port)]
        started[name] = servers.start(name, command, env, workdir, port)
    for server in started.values():
        servers.wait_ready(server)


def shed_total(server: servers.Server) -> float:
    """The activations the server has shed with 503 so far (its `activations_shed_total`)."""
    url = f"http://127.0.0.1:{server.port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("activations_shed_total")
    )


def measure_all(
    args: argparse.Namespace,
    running: dict[str, servers.Server],
    bodies_lua: Path,
    bodies_json: Path,
) -> dict[str, Any]:
    for server in running.values():  # warm-up: connections, caches, the script's sha
        run_wrk(server.url, bodies_lua, connections=args.connections, seconds=2)
    runs: dict[str, list[Run]] = {name: [] for name in running}
    shed_before = shed_total(running["activations"])
    for number in range(args.runs):
        for name, server in running.items():
            run = run_wrk(
                server.url,
                bodies_lua,
                connections=args.connections,
                seconds=args.seconds,
                server_pid=server.process.pid,
            )
            runs[name].append(run)
            say(
                f"  run {number + 1}/{args.runs} {name:<12} {run.requests_per_second:>8.0f} req/s"
                f"  p50 {run.p50_ms:.2f} ms  p99 {run.p99_ms:.2f} ms  non-2xx {run.non_2xx}"
                f"  others' CPU {run.others_cpu:.0%}"
            )
    # A saturating closed loop may make requests wait past MAX_QUEUE_DELAY_MS on a busy
    # machine: the server's own count tells those 503s from wrong answers.
    shed_in_runs = round(shed_total(running["activations"]) - shed_before)
    throughput = {name: median_of(found) for name, found in runs.items()}
    capacity = throughput["activations"].requests_per_second
    api = running["activations"]
    say(f"half load: {capacity / 2:.0f} req/s for {args.half_load_seconds} s (open loop)")
    shed_before = shed_total(api)
    half = measure(
        api.url, bodies_json, [(capacity / 2, 1 + args.half_load_seconds)], record_from=1.0
    )
    half_shed = round(shed_total(api) - shed_before)
    half_p99 = float(half["phases"][0]["p99_ms"])
    # The same open loop against the floor and the bare endpoint: what this machine and the
    # generator give at that rate with next to no work per request.
    reference = {
        name: measure(
            running[name].url,
            bodies_json,
            [(capacity / 2, 1 + args.half_load_seconds)],
            record_from=1.0,
        )["phases"][0]
        for name in ("floor", "bare")
    }
    say(
        f"overload: {2 * capacity:.0f} req/s for {args.overload_seconds} s, then"
        f" {capacity / 2:.0f} req/s for {args.recovery_seconds} s"
    )
    over = overload(
        api,
        bodies_json,
        capacity,
        half_p99,
        overload_s=args.overload_seconds,
        after_s=args.recovery_seconds,
        connections=args.overload_connections,
    )
    return {
        "throughput": {name: asdict(found) for name, found in throughput.items()},
        "throughput_shed": shed_in_runs,
        "ratio_bare": round(capacity / throughput["bare"].requests_per_second, 3),
        "ratio_floor": round(capacity / throughput["floor"].requests_per_second, 3),
        "half_load": {key: half[key] for key in ("lag_p99_ms", "errors", "unfinished")}
        | half["phases"][0]
        | {"shed": half_shed}
        | {
            "reference_p99_ms": {name: found["p99_ms"] for name, found in reference.items()},
            "reference_p50_ms": {name: found["p50_ms"] for name, found in reference.items()},
        },
        "overload": asdict(over),
    }


def wrong_answers(results: dict[str, Any]) -> list[str]:
    """What was answered wrongly: a non-200 below capacity (but a 503 the server counted as
    shed), an unexpected outcome above it."""
    shed = {"activations": results["throughput_shed"]}  # the others shed nothing
    found = [
        f"{name}: {found['non_2xx']} non-2xx ({shed.get(name, 0)} of them shed with 503),"
        f" {found['socket_errors']} socket errors"
        for name, found in results["throughput"].items()
        if found["non_2xx"] > shed.get(name, 0) or found["socket_errors"]
    ]
    half = results["half_load"]
    statuses = half["statuses"]
    not_ok = sum(count for status, count in statuses.items() if status != "200")
    if not_ok > statuses.get("503", 0) or not_ok > half["shed"] or half["unfinished"]:
        found.append(f"half load: {half['statuses']}, {half['unfinished']} unanswered")
    if results["overload"]["other_outcomes"]:
        found.append(f"overload: {results['overload']['other_detail']}")
    return found


def machine(redis_url: str) -> dict[str, Any]:
    info: dict[str, Any] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(redis.RedisError):
        client = redis.Redis.from_url(redis_url, socket_timeout=5)
        info["redis"] = client.info("server").get("redis_version")
        client.close()
    return info


@contextlib.contextmanager
def cleanup(label: str) -> Iterator[None]:
    try:
        yield
    except Exception as error:  # the other clean-up steps still run
        say(f"clean-up: {label} failed: {error}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--runs", type=int, default=3, help="interleaved wrk runs per endpoint")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument("--licenses", type=int, default=10_000)
    parser.add_argument("--half-load-seconds", type=float, default=10.0)
    parser.add_argument("--overload-seconds", type=float, default=5.0)
    parser.add_argument("--recovery-seconds", type=float, default=5.0)
    parser.add_argument("--overload-connections", type=int, default=2000)
    parser.add_argument("--max-inflight", type=int, help="MAX_INFLIGHT (default: the server's)")
    parser.add_argument(
        "--max-queue-delay-ms", type=int, help="MAX_QUEUE_DELAY_MS (default: the server's)"
    )
    parser.add_argument("--output", type=Path, default=ROOT / "build" / "bench.json")
    parser.add_argument("--seed", type=int, help="random seed of the generated data")
    args = parser.parse_args(argv)
    if args.licenses < 1 or args.runs < 1 or args.seconds < 1:
        parser.error("--licenses, --runs and --seconds need positive values")
    find_wrk()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))  # clean up on TERM
    admin_url = admin_postgres_url()
    redis_url = bench_redis_url()
    token = secrets.token_hex(4)
    database = prefix = f"lic_bench_{token}"
    database_url = with_database(admin_url, database)
    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="lic-bench-"))
    running: dict[str, servers.Server] = {}
    created = False
    try:
        asyncio.run(create_database(admin_url, database))
        created = True
        asyncio.run(migrate(database_url, redis_url))
        fixture = make_fixture(args.licenses, rng)
        asyncio.run(seed(database_url, fixture))
        bodies_lua, bodies_json = write_bodies(fixture, workdir, rng)
        write_signing_key(workdir / "signing.pem")
        say(f"database {database}: {args.licenses} licenses, {fixture.servers} servers")
        env = server_env(
            database_url, redis_url, prefix, workdir, args.max_inflight, args.max_queue_delay_ms
        )
        start_all(env, workdir, running)
        started = time.monotonic()
        codes = asyncio.run(prime(running["activations"].url, json.loads(bodies_json.read_text())))
        say(f"primed in {time.monotonic() - started:.1f} s: {dict(codes)}")
        if not {"VALID", "GRACE"} & set(codes):
            raise RuntimeError(f"no valid activation:\n{running['activations'].log_tail()}")
        with CpuUse() as cpu:
            results = measure_all(args, running, bodies_lua, bodies_json)
        for server in running.values():
            server.check_alive()
        report = {
            "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": machine(redis_url),
            "settings": {key: str(value) for key, value in vars(args).items()},
            "servers": fixture.servers,
            "others_cpu": cpu.others,
            **results,
        }
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n")
        print_report(report)
        say(f"wrote {args.output}")
        wrong = wrong_answers(results)
        for line in wrong:
            say(f"wrong answers: {line}")
        return 1 if wrong else 0
    finally:
        for server in running.values():
            with cleanup(server.name):
                servers.stop(server)
        with cleanup("redis keys"):
            client = redis.Redis.from_url(redis_url, socket_timeout=10)
            try:
                delete_redis_prefix(client, prefix)
            finally:
                client.close()
        if created:
            with cleanup("drop database"):
                asyncio.run(drop_database(admin_url, database))
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
