"""Closed-loop throughput: wrk at full speed against one endpoint, requests/s with p50/p99.

wrk (one thread, `--connections` keep-alive connections) sends the bodies of bodies.lua
through bench/activations.lua. Every run also records the CPU the server's process spent per
request and the share of the machine other programs used meanwhile (bench/cpu.py): on a
shared machine requests/s moves from run to run, CPU per request much less.
"""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cpu import CpuUse, per_request_us  # bench/ is on sys.path when run as a script

LUA_SCRIPT = Path(__file__).resolve().parent / "activations.lua"
_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def find_wrk() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit("wrk is not installed: run `make wrk` (apt-get install wrk, as root)")
    return found


@dataclass
class Run:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    server_cpu_us: float | None = None
    others_cpu: float = 0.0


def parse_duration_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if match is None:
        raise ValueError(f"unrecognised wrk duration {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(output: str) -> Run:
    """Requests/s, p50/p99 (`--latency`), non-2xx answers and socket errors of wrk's output."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    if rps is None:
        raise ValueError(f"no Requests/sec in wrk output:\n{output}")
    percentiles: dict[str, float] = {}
    for match in re.finditer(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+(?:us|ms|s|m|h))\s*$", output, re.M):
        percentiles.setdefault(match.group(1), parse_duration_ms(match.group(2)))
    total = re.search(r"^\s*(\d+) requests in", output, re.MULTILINE)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return Run(
        requests_per_second=float(rps.group(1)),
        p50_ms=percentiles["50"],
        p99_ms=percentiles["99"],
        requests=int(total.group(1)) if total else 0,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(map(int, errors.groups())) if errors else 0,
    )


def run_wrk(
    url: str, bodies_lua: Path, *, connections: int, seconds: float, server_pid: int | None = None
) -> Run:
    command = [
        find_wrk(),
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "--timeout",
        "5s",
        "-s",
        str(LUA_SCRIPT),
        url,
        "--",
        str(bodies_lua),
    ]
    with CpuUse(server_pid) as cpu:
        finished = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if finished.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{finished.stdout}\n{finished.stderr}")
    run = parse_wrk(finished.stdout)
    run.server_cpu_us = per_request_us(cpu.server_seconds, run.requests)
    run.others_cpu = cpu.others
    return run


@dataclass
class Throughput:
    """The medians of several runs against one endpoint."""

    requests_per_second: float
    p50_ms: float
    p99_ms: float
    server_cpu_us: float | None
    non_2xx: int
    socket_errors: int
    others_cpu_max: float


def median_of(runs: list[Run]) -> Throughput:
    cpu = [run.server_cpu_us for run in runs if run.server_cpu_us is not None]
    return Throughput(
        requests_per_second=round(statistics.median(r.requests_per_second for r in runs), 1),
        p50_ms=round(statistics.median(r.p50_ms for r in runs), 3),
        p99_ms=round(statistics.median(r.p99_ms for r in runs), 3),
        server_cpu_us=round(statistics.median(cpu), 1) if cpu else None,
        non_2xx=sum(r.non_2xx for r in runs),
        socket_errors=sum(r.socket_errors for r in runs),
        others_cpu_max=max(r.others_cpu for r in runs),
    )
