"""CPU accounting of a benchmark run, read from /proc: the CPU the server under test spends per
request, and the share of the machine other programs used meanwhile.

On a shared machine requests per second move from one run to the next (another tenant, a
descheduled vCPU); the CPU a process spends per request moves much less, and the share used
by others says how far to trust a run.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

SHARED_SERVICES = {"redis-server", "postgres"}  # the benchmark's own dependencies


class Process(NamedTuple):
    parent: int
    name: str
    started: int  # clock ticks after boot: tells a reused pid from the process it had before
    ticks: int  # CPU used so far, user and system


def process_table() -> dict[int, Process]:
    """Every process by pid, from /proc/<pid>/stat."""
    table: dict[int, Process] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        name = raw[raw.find("(") + 1 : raw.rfind(")")]
        fields = raw[raw.rfind(")") + 2 :].split()  # from field 3 (state) on, see proc(5)
        ticks = int(fields[11]) + int(fields[12])
        table[int(entry.name)] = Process(int(fields[1]), name, int(fields[19]), ticks)
    return table


def descendants(table: dict[int, Process], root: int) -> set[int]:
    """`root` and every process below it."""
    tree = {root}
    changed = True
    while changed:
        changed = False
        for pid, process in table.items():
            if process.parent in tree and pid not in tree:
                tree.add(pid)
                changed = True
    return tree


@dataclass
class CpuUse:
    """Over a `with` block: `others`, the share of all CPUs used by programs that are neither
    this benchmark's processes (the servers it started included) nor Redis and PostgreSQL;
    `server_seconds`, the CPU used by the process tree of `server_pid`."""

    server_pid: int | None = None
    others: float = float("nan")
    server_seconds: float = float("nan")

    def __enter__(self) -> CpuUse:
        self._started = time.monotonic()
        try:
            self._before = process_table()
        except OSError:
            self._before = {}
        return self

    def __exit__(self, *_exc: object) -> None:
        if not self._before:
            return
        after = process_table()
        tick = os.sysconf("SC_CLK_TCK")
        own = descendants(after, os.getpid())
        server = descendants(after, self.server_pid) if self.server_pid else set()
        others = server_ticks = 0
        for pid, process in after.items():
            before = self._before.get(pid)
            same = before is not None and before.started == process.started
            ticks = process.ticks - (before.ticks if before is not None and same else 0)
            name = process.name
            if pid in server:
                server_ticks += ticks
            elif pid not in own and name not in SHARED_SERVICES:
                others += ticks
        capacity = (time.monotonic() - self._started) * tick * (os.cpu_count() or 1)
        self.others = round(others / capacity, 3) if capacity > 0 else float("nan")
        if self.server_pid:
            self.server_seconds = server_ticks / tick


def per_request_us(seconds: float, requests: int) -> float | None:
    if requests <= 0 or seconds != seconds:  # nan: not measured
        return None
    return round(seconds / requests * 1e6, 1)
