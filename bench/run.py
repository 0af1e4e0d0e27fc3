"""`make bench`: activations per second against a bare aiohttp endpoint, same machine, same run.

    .venv/bin/python bench/run.py [--duration 10] [--connections 64] [--processes 1,2]
                                  [--licenses 10000]

Per process count it starts `activation-server serve --processes N` on real PostgreSQL and
Redis with `--licenses` perpetual licenses (a fresh database `lic_bench_<random>` and a fresh
Redis key prefix), and `bench/bare.py --processes N` (constant JSON answer) twice: on a
`web.Application` (the bare endpoint of the ratio) and on aiohttp's low-level `web.Server`
(what the public API runs on; its ratio is printed beside), and `bench/floor.py redis nonces
--low-level --processes N` (the design's floor on the API's own plumbing: parse, one EVALSHA,
a signature, the one-buffer answer). It primes the Redis cache
with one request per license and server, warms all up, then runs `wrk -t1 -c<connections>
-d<duration>s --latency` interleaved (bare, bare low-level, floor, activations) x `--runs` and
takes medians. Latency at half load: `wrk2 -R` when the OS has it, else bench/openloop.py at half of
the measured activation peak, with two controls: the bare endpoint at that same rate (the tail
the machine and the load generator add by themselves) and at half of its own peak (as busy as
the activation server was). Every wrk run also records the CPU the server's processes and
redis-server spent per request (bench/cpu.py), steadier than req/s on a shared machine. Prints
the tables and writes build/bench.json; stops the servers, drops the database and deletes the
Redis keys of its prefix in every case.

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
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import redis
from common import (  # bench/ is on sys.path when run as a script
    KEY_ALPHABET,
    VENV_BIN,
    create_database,
    delete_redis_prefix,
    drop_database,
    migrate,
    with_database,
)
from cpu import CpuUse, per_request_us

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
BUILD = ROOT / "build"
PRODUCT = "smartermail"
VERSION = "16.3.6989"
SECOND_SERVER_SHARE = 0.05


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --------------------------------------------------------------------------- wrk


def ensure_tool(binary: str, package: str) -> str | None:
    """The path of `binary`, installing `package` with apt-get when missing (None if impossible)."""
    found = shutil.which(binary)
    if found:
        return found
    if shutil.which("apt-get") is None:
        return None
    command = ["apt-get", "install", "-y", "-q", package]
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            return None
        command = ["sudo", "-n", *command]
    say(f"{binary} not found: running {' '.join(command)}")
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        update = [*command[: command.index("apt-get")], "apt-get", "update", "-q"]
        say(f"install failed, running {' '.join(update)} first")
        subprocess.run(update, capture_output=True, text=True, timeout=600)
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            say(f"apt-get install {package} failed:\n{result.stderr.strip()[-2000:]}")
            return None
    say(f"installed {package}")
    return shutil.which(binary)


def apt_candidate(package: str) -> bool:
    """True when apt knows an installable version of `package`."""
    if shutil.which("apt-cache") is None:
        return False
    result = subprocess.run(
        ["apt-cache", "policy", package], capture_output=True, text=True, timeout=60
    )
    match = re.search(r"Candidate:\s*(\S+)", result.stdout)
    return bool(match and match.group(1) != "(none)")


@dataclass
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: dict[str, int]
    others_cpu: float = 0.0
    server_cpu_us: float | None = None  # the server's processes' CPU per request (bench/cpu.py)
    redis_cpu_us: float | None = None  # redis-server's CPU per request


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def parse_duration_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if match is None:
        raise ValueError(f"unrecognised wrk duration {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(output: str) -> WrkResult:
    """Requests/s, p50/p99 (`--latency`), non-2xx and socket errors from wrk or wrk2 output."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    if rps is None:
        raise ValueError(f"no Requests/sec in wrk output:\n{output}")
    percentiles: dict[str, float] = {}
    for match in re.finditer(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+(?:us|ms|s|m|h))\s*$", output, re.M):
        percentiles.setdefault(match.group(1), parse_duration_ms(match.group(2)))
    if "50" not in percentiles or "99" not in percentiles:
        raise ValueError(f"no latency distribution in wrk output (--latency?):\n{output}")
    total = re.search(r"^\s*(\d+) requests in", output, re.MULTILINE)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    socket_errors = (
        dict(zip(("connect", "read", "write", "timeout"), map(int, errors.groups()), strict=True))
        if errors
        else {}
    )
    return WrkResult(
        requests_per_second=float(rps.group(1)),
        p50_ms=percentiles["50"],
        p99_ms=percentiles["99"],
        requests=int(total.group(1)) if total else 0,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=socket_errors,
    )


def run_wrk(
    wrk: str,
    url: str,
    bodies_lua: Path,
    *,
    connections: int,
    duration: float,
    rate: float | None = None,
    server_pid: int | None = None,
) -> WrkResult:
    command = [
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--latency",
        "--timeout",
        "5s",
        "-s",
        str(BENCH / "activations.lua"),
    ]
    if rate is not None:
        command.insert(1, f"-R{round(rate)}")
    command += [url, "--", str(bodies_lua)]
    with CpuUse(server_pid) as cpu:
        result = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    parsed = parse_wrk(result.stdout)
    parsed.others_cpu = cpu.others
    parsed.server_cpu_us = per_request_us(cpu.server_seconds, parsed.requests)
    parsed.redis_cpu_us = per_request_us(cpu.redis_seconds, parsed.requests)
    return parsed


# --------------------------------------------------------------------------- data


@dataclass
class Fixture:
    """The licenses' keys and each license's servers (fingerprint, hostname)."""

    licenses: list[tuple[str, list[tuple[str, str]]]]

    @property
    def servers(self) -> int:
        return sum(len(servers) for _, servers in self.licenses)


def make_fixture(count: int, rng: random.Random) -> Fixture:
    keys: set[str] = set()
    while len(keys) < count:
        chars = "".join(rng.choice(KEY_ALPHABET) for _ in range(25))
        keys.add("-".join(chars[i : i + 5] for i in range(0, 25, 5)))
    licenses = []
    for number, key in enumerate(sorted(keys)):
        server_count = 2 if rng.random() < SECOND_SERVER_SHARE else 1
        servers = [
            (f"{rng.getrandbits(160):040x}", f"mail{n + 1}.customer{number}.example.com")
            for n in range(server_count)
        ]
        licenses.append((key, servers))
    return Fixture(licenses)


def activation_body(key: str, fingerprint: str, hostname: str, rng: random.Random) -> str:
    return json.dumps(
        {
            "license_key": key,
            "fingerprint": fingerprint,
            "hostname": hostname,
            "product": PRODUCT,
            "version": VERSION,
            "addons": ["eas"],
            "nonce": f"{rng.getrandbits(64):016x}",
        },
        separators=(",", ":"),
    )


def lua_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def write_bodies(fixture: Fixture, directory: Path, rng: random.Random) -> tuple[Path, Path]:
    """bodies.lua for wrk (chunked: LuaJIT caps constants per function) and bodies.json."""
    bodies = [
        [activation_body(key, fingerprint, hostname, rng) for fingerprint, hostname in servers]
        for key, servers in fixture.licenses
    ]
    lines = [
        "-- generated by bench/run.py: one entry per license, its servers' bodies",
        "local t = {}",
    ]
    for start in range(0, len(bodies), 2000):
        lines.append(";(function() for _, s in ipairs({")
        for servers in bodies[start : start + 2000]:
            lines.append("{" + ", ".join(lua_string(body) for body in servers) + "},")
        lines.append("}) do t[#t + 1] = s end end)()")
    lines.append("return t")
    lua_path = directory / "bodies.lua"
    lua_path.write_text("\n".join(lines) + "\n")
    json_path = directory / "bodies.json"
    json_path.write_text(json.dumps(bodies))
    return lua_path, json_path


async def seed(database_url: str, fixture: Fixture) -> None:
    today = dt.date.today()
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        async with connection.transaction():
            customer_id = await connection.fetchval(
                "INSERT INTO customers (name, email) VALUES ($1, $2) RETURNING id",
                "Bench Hosting Ltd",
                "ops@bench.example.com",
            )
            # One statement for all licenses: the keys come in as one array.
            await connection.execute(
                """
                INSERT INTO licenses (key, customer_id, product, kind, edition, purchased_on,
                                      ms_covered_through, limits)
                SELECT k, $2, $3, 'perpetual', 'enterprise', $4, $5, '{"mailboxes": 250}'
                FROM unnest($1::text[]) AS k
                """,
                [key for key, _ in fixture.licenses],
                customer_id,
                PRODUCT,
                today - dt.timedelta(days=200),
                today + dt.timedelta(days=5 * 365),
            )
            await connection.execute(
                "INSERT INTO license_addons (license_key, name, added_on) "
                "SELECT key, 'eas', purchased_on FROM licenses"
            )
            await connection.executemany(
                "INSERT INTO releases (product, major, minor, build, released_on) "
                "VALUES ($1, $2, $3, $4, $5)",
                [
                    (PRODUCT, 16, 2, 6900, today - dt.timedelta(days=120)),
                    (PRODUCT, 16, 3, 6989, today - dt.timedelta(days=30)),
                ],
            )
        count = await connection.fetchval("SELECT count(*) FROM licenses")
        if count != len(fixture.licenses):
            raise RuntimeError(f"seeded {count} licenses, expected {len(fixture.licenses)}")
    finally:
        await connection.close()


def write_signing_key(path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.write_bytes(pem)
    path.chmod(0o600)


# --------------------------------------------------------------------------- processes


def others_busy_share(seconds: float = 2.0) -> float:
    """CPU used by other programs over `seconds` while the benchmark is idle (not /proc/stat's
    total: the servers' own nonce helpers fill their pipes right after start)."""
    with CpuUse() as cpu:
        time.sleep(seconds)
    return cpu.others


def settle(limit_s: float) -> float:
    """Wait, at most `limit_s`, until other programs leave the CPU idle (≤ 5 %); their share
    at the end. Right after seeding and a server start the kernel's writeback of dirty pages
    and the VM balloon's page reporting (kworker threads) took 34-60 % of the CPU for tens of
    seconds on the benchmark machine, enough to slow the first runs of a row."""
    deadline = time.monotonic() + limit_s
    share = others_busy_share(2.0)
    while share > 0.05 and time.monotonic() < deadline:
        say(f"  waiting for other programs to leave the CPU ({share:.0%} busy)")
        share = others_busy_share(2.0)
    return share


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    ready_url: str

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def start_server(
    name: str, command: Sequence[str], env: dict[str, str], workdir: Path, ready_url: str
) -> Server:
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(command),
            env=env,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Server(name, process, log_path, ready_url)


async def wait_ready(server: Server, limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(
                    f"{server.name} exited with {server.process.returncode}:\n{server.log_tail()}"
                )
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                async with session.get(server.ready_url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{server.name} not ready after {limit_s:.0f} s:\n{server.log_tail()}")


def stop_server(server: Server, timeout: float = 10.0) -> None:
    """SIGTERM to the server's process group (it and its children), then SIGKILL."""
    process = server.process
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            say(f"{server.name} ignored SIGTERM for {timeout:.0f} s: killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
    # Children of a multi-process server may outlive their parent for a moment.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


async def prime(
    url: str, bodies: list[list[str]], samples: list[str], concurrency: int = 32
) -> Counter[str]:
    """One request per license and server: loads every license into the Redis cache and
    records every installation. Returns the count of each answer code (or HTTP status); the
    first unexpected answer goes to `samples`."""
    codes: Counter[str] = Counter()
    work = [body for servers in bodies for body in servers]
    position = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal position
        while position < len(work):
            body = work[position]
            position += 1
            async with session.post(
                url, data=body, headers={"Content-Type": "application/json"}
            ) as response:
                if response.status == 200:
                    codes[str((await response.json()).get("code"))] += 1
                else:
                    codes[f"HTTP {response.status}"] += 1
                    if not samples:
                        samples.append(f"HTTP {response.status}: {(await response.text())[:500]}")

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return codes


# --------------------------------------------------------------------------- the run


@dataclass
class Summary:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    others_cpu_max: float
    server_cpu_us: float | None = None
    redis_cpu_us: float | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)


def _median_of(values: Iterable[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return round(statistics.median(known), 1) if known else None


def summarise(results: list[WrkResult]) -> Summary:
    return Summary(
        requests_per_second=round(statistics.median(r.requests_per_second for r in results), 1),
        p50_ms=round(statistics.median(r.p50_ms for r in results), 3),
        p99_ms=round(statistics.median(r.p99_ms for r in results), 3),
        non_2xx=sum(r.non_2xx for r in results),
        socket_errors=sum(sum(r.socket_errors.values()) for r in results),
        others_cpu_max=max(r.others_cpu for r in results),
        server_cpu_us=_median_of(r.server_cpu_us for r in results),
        redis_cpu_us=_median_of(r.redis_cpu_us for r in results),
        runs=[asdict(r) for r in results],
    )


def half_load(
    url: str,
    rate: float,
    args: argparse.Namespace,
    bodies_lua: Path,
    bodies_json: Path,
    wrk2: str | None,
) -> dict[str, Any]:
    if wrk2 is not None:
        result = run_wrk(
            wrk2, url, bodies_lua, connections=args.connections, duration=args.duration, rate=rate
        )
        return {
            "tool": "wrk2 -R (open loop, fixed rate)",
            "target_rate": round(rate, 1),
            "achieved_rate": result.requests_per_second,
            "p50_ms": result.p50_ms,
            "p99_ms": result.p99_ms,
            "non_2xx": result.non_2xx,
            "socket_errors": result.socket_errors,
            "others_cpu": result.others_cpu,
        }
    command = [
        sys.executable,
        str(BENCH / "openloop.py"),
        "--url",
        url,
        "--rate",
        f"{rate:.1f}",
        "--duration",
        str(args.duration),
        "--warmup",
        "1",
        "--connections",
        str(args.connections),
        "--bodies",
        str(bodies_json),
    ]
    with CpuUse() as cpu:
        finished = subprocess.run(
            command, capture_output=True, text=True, timeout=args.duration + 60
        )
    if finished.returncode != 0:
        raise RuntimeError(f"openloop.py failed:\n{finished.stdout}\n{finished.stderr}")
    return {**json.loads(finished.stdout.strip().splitlines()[-1]), "others_cpu": cpu.others}


@dataclass
class Target:
    """One activation server under test (a `REDIS_HOT_CLIENT` variant, or the default)."""

    label: str
    url: str
    server: Server
    runs: list[WrkResult] = field(default_factory=list)
    codes: Counter[str] = field(default_factory=Counter)


def bench_processes(
    processes: int,
    args: argparse.Namespace,
    env: dict[str, str],
    workdir: Path,
    wrk: str,
    wrk2: str | None,
    bodies_lua: Path,
    bodies_json: Path,
    bodies: list[list[str]],
) -> list[dict[str, Any]]:
    """Bare endpoint and activation server(s) with `processes` processes: one row per variant."""
    bare_port, bare_low_port, floor_port = free_port(), free_port(), free_port()
    bare_url = f"http://127.0.0.1:{bare_port}/v1/activations"
    bare_low_url = f"http://127.0.0.1:{bare_low_port}/v1/activations"
    floor_url = f"http://127.0.0.1:{floor_port}/v1/activations"
    servers: list[Server] = []
    targets: list[Target] = []
    try:
        for variant in args.hot_clients:
            public_port, admin_port = free_port(), free_port()
            label = variant or "default"
            server_env = dict(env) if variant is None else {**env, "REDIS_HOT_CLIENT": variant}
            server = start_server(
                f"activation-server-p{processes}-{label}",
                [
                    str(VENV_BIN / "activation-server"),
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--public-port",
                    str(public_port),
                    "--admin-port",
                    str(admin_port),
                    "--processes",
                    str(processes),
                ],
                server_env,
                workdir,
                f"http://127.0.0.1:{public_port}/readyz",
            )
            servers.append(server)
            targets.append(Target(label, f"http://127.0.0.1:{public_port}/v1/activations", server))
        # The two bare endpoints, then the design's floor on the public API's own plumbing
        # (low-level server, one-buffer answer): parse, one EVALSHA of a trivial script, a
        # signature with precomputed nonces, nothing else (bench/floor.py --low-level).
        for name, port, script, arguments in (
            (f"bare-p{processes}", bare_port, "bare.py", ["--port", str(bare_port)]),
            (
                f"bare-low-level-p{processes}",
                bare_low_port,
                "bare.py",
                ["--port", str(bare_low_port), "--low-level"],
            ),
            (
                f"floor-p{processes}",
                floor_port,
                "floor.py",
                [str(floor_port), "redis", "nonces", "--low-level"],
            ),
        ):
            servers.append(
                start_server(
                    name,
                    [
                        sys.executable,
                        str(BENCH / script),
                        *arguments,
                        "--processes",
                        str(processes),
                    ],
                    env,
                    workdir,
                    f"http://127.0.0.1:{port}/readyz",
                )
            )
        for server in servers:
            asyncio.run(wait_ready(server))
        say(f"{processes} process(es): servers ready ({', '.join(s.name for s in servers)})")
        background = settle(limit_s=60.0)
        say(f"  CPU busy while the benchmark is idle: {background:.0%} (other programs)")
        if background > 0.05:
            say("  warning: another program is using the CPU; these numbers will be noisy")
        for target in targets:
            started = time.monotonic()
            samples: list[str] = []
            target.codes = asyncio.run(prime(target.url, bodies, samples))
            say(
                f"  primed {target.label} with {sum(map(len, bodies))} requests (one per license"
                f" and server) in {time.monotonic() - started:.1f} s: {dict(target.codes)}"
            )
            if samples:
                say(f"  first unexpected answer: {samples[0]}")
            if not any(code in target.codes for code in ("VALID", "GRACE", "OVERDUE")):
                raise RuntimeError(
                    "no valid activation while priming: the server is broken, not slow.\n"
                    f"{target.server.name} log:\n{target.server.log_tail()}"
                )
        for url in (bare_url, bare_low_url, floor_url, *(target.url for target in targets)):
            run_wrk(wrk, url, bodies_lua, connections=args.connections, duration=args.warmup)
        bare_runs: list[WrkResult] = []
        bare_low_runs: list[WrkResult] = []
        floor_runs: list[WrkResult] = []
        bare_server, bare_low_server, floor_server = servers[len(targets) :]
        for run in range(args.runs):
            rounds = [
                ("bare", bare_url, bare_server, bare_runs),
                ("bare:low-level", bare_low_url, bare_low_server, bare_low_runs),
                ("floor", floor_url, floor_server, floor_runs),
            ]
            rounds += [(f"act:{t.label}", t.url, t.server, t.runs) for t in targets]
            for label, url, server, results in rounds:
                result = run_wrk(
                    wrk,
                    url,
                    bodies_lua,
                    connections=args.connections,
                    duration=args.duration,
                    server_pid=server.process.pid,
                )
                results.append(result)
                say(
                    f"  run {run + 1}/{args.runs} {label:<14} {result.requests_per_second:>9.1f}"
                    f" req/s  p50 {result.p50_ms:.2f} ms  p99 {result.p99_ms:.2f} ms"
                    f"  CPU/request: server {result.server_cpu_us} µs, Redis"
                    f" {result.redis_cpu_us} µs  non-2xx {result.non_2xx}"
                    f"  others' CPU {result.others_cpu:.0%}"
                )
        bare = summarise(bare_runs)
        bare_low = summarise(bare_low_runs)
        floor = summarise(floor_runs)
        rows = []
        for target in targets:
            activations = summarise(target.runs)
            rate = activations.requests_per_second / 2
            say(f"  half load {target.label}: {rate:.0f} req/s for {args.duration} s")
            half = half_load(target.url, rate, args, bodies_lua, bodies_json, wrk2)
            say(
                f"  half load {target.label}: p50 {half['p50_ms']} ms  p99 {half['p99_ms']} ms"
                f" (achieved {half['achieved_rate']} req/s, non-2xx {half.get('non_2xx')},"
                f" others' CPU {half['others_cpu']:.0%})"
            )
            # The control: the bare endpoint at the same rate, with the same load generator.
            # What it shows of a tail comes from the machine and the generator, not the server.
            half_bare = half_load(bare_url, rate, args, bodies_lua, bodies_json, wrk2)
            say(
                f"  same rate, bare endpoint: p50 {half_bare['p50_ms']} ms"
                f"  p99 {half_bare['p99_ms']} ms (others' CPU {half_bare['others_cpu']:.0%})"
            )
            # The second control: the bare endpoint at half of *its own* peak, i.e. as busy as
            # the activation server was above. What the target "p99 < 5 ms at half of peak"
            # asks of the activations, asked of the bare endpoint.
            bare_half_rate = bare.requests_per_second / 2
            half_bare_own = half_load(bare_url, bare_half_rate, args, bodies_lua, bodies_json, wrk2)
            say(
                f"  bare endpoint at half its own peak ({bare_half_rate:.0f} req/s): p50"
                f" {half_bare_own['p50_ms']} ms  p99 {half_bare_own['p99_ms']} ms"
                f" (others' CPU {half_bare_own['others_cpu']:.0%})"
            )
            rows.append(
                {
                    "processes": processes,
                    "hot_client": target.label,
                    "bare": asdict(bare),
                    "activations": asdict(activations),
                    "ratio": round(activations.requests_per_second / bare.requests_per_second, 3),
                    "bare_low_level": asdict(bare_low),
                    "floor": asdict(floor),
                    "ratio_floor": round(
                        activations.requests_per_second / floor.requests_per_second, 3
                    ),
                    "ratio_low_level": round(
                        activations.requests_per_second / bare_low.requests_per_second, 3
                    ),
                    "half_load": half,
                    "half_load_bare": half_bare,
                    "half_load_bare_own_peak": half_bare_own,
                    "prime_codes": dict(target.codes),
                    "background_cpu_busy": background,
                }
            )
        for server in servers:
            if server.process.poll() is not None:
                raise RuntimeError(f"{server.name} died during the run:\n{server.log_tail()}")
        return rows
    finally:
        for server in servers:
            stop_server(server)


def machine_info(redis_url: str, wrk: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(redis.RedisError):
        client = redis.Redis.from_url(redis_url, socket_timeout=5)
        server_info = client.info("server")
        info["redis_server"] = server_info.get("redis_version")
        persistence = client.info("persistence")
        info["redis_aof"] = bool(persistence.get("aof_enabled"))
        client.close()
    info["redis_py"] = redis.__version__
    version = subprocess.run([wrk, "--version"], capture_output=True, text=True, timeout=10)
    info["wrk"] = (version.stdout or version.stderr).splitlines()[0].strip()
    return info


def print_table(results: list[dict[str, Any]]) -> None:
    header = (
        f"{'procs':>5} {'hot client':<10} | {'bare req/s':>10} {'p50':>7} {'p99':>7} |"
        f" {'activ. req/s':>12} {'p50':>7} {'p99':>7} | {'ratio':>5} | {'low-level':>15} |"
        f" {'half-load req/s':>15} {'p50':>7} {'p99':>7} | {'bare p99':>8} |"
        f" {'non-2xx':>7} | {'others':>6}"
    )
    print()
    print(header)
    print("-" * len(header))
    for row in results:
        bare, act, half = row["bare"], row["activations"], row["half_load"]
        non_2xx = bare["non_2xx"] + act["non_2xx"] + int(half.get("non_2xx", 0))
        others = max(bare["others_cpu_max"], act["others_cpu_max"], half.get("others_cpu", 0))
        print(
            f"{row['processes']:>5} {row['hot_client']:<10} |"
            f" {bare['requests_per_second']:>10.0f} {bare['p50_ms']:>5.2f}ms"
            f" {bare['p99_ms']:>5.2f}ms | {act['requests_per_second']:>12.0f}"
            f" {act['p50_ms']:>5.2f}ms {act['p99_ms']:>5.2f}ms | {row['ratio']:>5.2f} |"
            f" {row['bare_low_level']['requests_per_second']:>7.0f}"
            f" / {row['ratio_low_level']:.2f} |"
            f" {half['achieved_rate']:>15.0f} {half['p50_ms']:>5.2f}ms {half['p99_ms']:>5.2f}ms"
            f" | {row['half_load_bare']['p99_ms']:>6.2f}ms | {non_2xx:>7} | {others:>6.0%}"
        )
    print(
        "ratio = activations / bare req/s (medians of interleaved wrk runs); low-level = the"
        " same bare endpoint on aiohttp's low-level web.Server (as the public API runs), req/s"
        " and the ratio against it; half load ="
        " fixed-rate open loop at half the activation median; bare p99 = the bare endpoint"
        " at that same rate (the machine's and the load generator's own tail); others = the"
        " most CPU other"
        " programs used during any of the row's runs (share of all CPUs; > 5% = noisy)."
    )
    print()
    header = (
        f"{'procs':>5} {'hot client':<10} | {'floor req/s':>11} {'act./floor':>10} |"
        f" {'CPU µs/request: bare':>20} {'low-level':>9} {'floor':>6} {'activations':>11}"
        f" {'+ Redis':>7} | {'half-load p99: activations':>26} {'bare same rate':>14}"
        f" {'bare at ½ its peak':>18}"
    )
    print(header)
    print("-" * len(header))
    for row in results:
        own_peak = row["half_load_bare_own_peak"]
        print(
            f"{row['processes']:>5} {row['hot_client']:<10} |"
            f" {row['floor']['requests_per_second']:>11.0f} {row['ratio_floor']:>10.2f} |"
            f" {_us(row['bare']['server_cpu_us']):>20}"
            f" {_us(row['bare_low_level']['server_cpu_us']):>9}"
            f" {_us(row['floor']['server_cpu_us']):>6}"
            f" {_us(row['activations']['server_cpu_us']):>11}"
            f" {_us(row['activations']['redis_cpu_us']):>7} |"
            f" {row['half_load']['p99_ms']:>24.2f}ms {row['half_load_bare']['p99_ms']:>12.2f}ms"
            f" {own_peak['p99_ms']:>8.2f}ms at {own_peak['achieved_rate']:.0f}/s"
        )
    print(
        "floor = bench/floor.py --low-level: parse the body, one EVALSHA of a trivial script, an"
        " Ed25519 signature with precomputed nonces, nothing else, on the public API's plumbing"
        " (low-level server, one-buffer answer): the cheapest handler of the"
        " activation's shape; act./floor = activations / floor req/s. CPU µs/request = CPU"
        " time of the server's processes (for activations and the floor: with their"
        " signing-nonce helpers) and of redis-server (per activation) over the wrk runs, divided"
        " by the requests served (medians); bare at ½ its peak = the bare endpoint at half of"
        " its own median req/s, as busy as the activation server is at its half load."
    )
    print()


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


@contextlib.contextmanager
def step(label: str) -> Iterator[None]:
    try:
        yield
    except Exception as error:  # cleanup must go on after one failed step
        say(f"cleanup: {label} failed: {error}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument("--processes", default="1,2", help="comma-separated process counts")
    parser.add_argument("--licenses", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs per endpoint")
    parser.add_argument("--warmup", type=float, default=2.0, help="wrk warm-up seconds")
    parser.add_argument("--output", type=Path, default=BUILD / "bench.json")
    parser.add_argument("--seed", type=int, help="random seed of the generated data")
    parser.add_argument(
        "--hot-clients",
        default="",
        help="comma-separated REDIS_HOT_CLIENT values to compare in the same run, e.g."
        " lean,redis-py (default: the server's own default)",
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))  # run the finally blocks
    process_counts = [int(n) for n in args.processes.split(",") if n.strip()]
    args.hot_clients = [c.strip() for c in args.hot_clients.split(",") if c.strip()] or [None]
    if not process_counts or min(process_counts) < 1 or args.licenses < 1 or args.runs < 1:
        parser.error("--processes, --licenses and --runs need positive values")

    wrk = ensure_tool("wrk", "wrk")
    if wrk is None:
        say("wrk is not available and could not be installed")
        return 2
    wrk2 = shutil.which("wrk2")
    if wrk2 is None and apt_candidate("wrk2"):
        wrk2 = ensure_tool("wrk2", "wrk2")
    say(f"load generator: {wrk}; half-load: {wrk2 or 'bench/openloop.py (no wrk2 package)'}")

    admin_url = os.environ.get(
        "BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    redis_url = os.environ.get(
        "BENCH_REDIS_URL", os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    token = secrets.token_hex(4)
    database = f"lic_bench_{token}"
    prefix = f"lic_bench_{token}"
    database_url = with_database(admin_url, database)
    rng = random.Random(args.seed)
    results: list[dict[str, Any]] = []
    created = False
    workdir = Path(tempfile.mkdtemp(prefix="lic-bench-"))
    try:
        say(f"creating database {database}, Redis prefix {prefix}")
        asyncio.run(create_database(admin_url, database))
        created = True
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("RATE_LIMIT_", "TEST_"))},
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "REDIS_PREFIX": prefix,
            "SIGNING_KEY_FILE": str(workdir / "signing.pem"),
            "RATE_LIMIT_IP_PER_MINUTE": "0",
            "RATE_LIMIT_KEY_PER_MINUTE": "0",
            "RATE_LIMIT_NOT_FOUND_PER_MINUTE": "0",
            "DEV": "0",
            "TEST_CLOCK": "0",
            "PYTHONUNBUFFERED": "1",
        }
        write_signing_key(workdir / "signing.pem")
        asyncio.run(migrate(database_url, redis_url))
        fixture = make_fixture(args.licenses, rng)
        started = time.monotonic()
        asyncio.run(seed(database_url, fixture))
        say(
            f"seeded {args.licenses} licenses ({fixture.servers} servers) and 2 releases "
            f"in {time.monotonic() - started:.1f} s"
        )
        bodies_lua, bodies_json = write_bodies(fixture, workdir, rng)
        bodies: list[list[str]] = json.loads(bodies_json.read_text())
        for processes in process_counts:
            results.extend(
                bench_processes(
                    processes, args, env, workdir, wrk, wrk2, bodies_lua, bodies_json, bodies
                )
            )
        report = {
            "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": machine_info(redis_url, wrk),
            "settings": {
                "duration_s": args.duration,
                "connections": args.connections,
                "wrk_threads": 1,
                "runs": args.runs,
                "warmup_s": args.warmup,
                "licenses": args.licenses,
                "servers": fixture.servers,
                "statistic": "median of interleaved runs",
            },
            "results": results,
        }
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n")
        print_table(results)
        say(f"wrote {args.output}")
        failures = [
            f"{row['processes']}/{row['hot_client']}"
            for row in results
            if row["bare"]["non_2xx"]
            or row["activations"]["non_2xx"]
            or row["half_load"].get("non_2xx")
            or row["half_load"].get("errors")
            or row["half_load"].get("unfinished")
        ]
        for row in results:
            errors = row["bare"]["socket_errors"] + row["activations"]["socket_errors"]
            if errors:
                say(f"warning: {errors} wrk socket errors with {row['processes']} process(es)")
        if failures:
            say(f"non-2xx answers or failed requests with (processes/client) {failures}")
            return 1
        return 0
    finally:
        with step("redis keys"):
            client = redis.Redis.from_url(redis_url, socket_timeout=10)
            try:
                say(f"deleted {delete_redis_prefix(client, prefix)} Redis keys of {prefix}:*")
            finally:
                client.close()
        if created:
            with step("drop database"):
                asyncio.run(drop_database(admin_url, database))
                say(f"dropped database {database}")
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
