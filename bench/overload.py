"""The overload row: twice the activation capacity, open loop, for a bounded time, then half
of it, and what the server did.

Offered 2x what it can serve, a server must shed the excess (503 with Retry-After, or 429 from
a rate limit) and keep the latency of what it does serve bounded, rather than queue without
end; once the load drops it must be back to normal at once.

The generator holds `connections` keep-alive connections open from the start (2000 from
`make bench`: twice the server's default MAX_INFLIGHT; clients with a connection each, or a
load balancer's pool) and opens no more: what is measured is how the server answers
requests, not how fast a saturated process accepts new connections. Measured:

- served p99: the p99 latency of the 200 answers to requests sent during the overload;
- the share of those requests answered 503, the 429s, and every other outcome (another
  status, a lost connection, no answer at all), which must be none;
- the server process's resident memory before the overload and after the whole run;
- recovery: when the load drops to half the capacity, the time from the drop to the first
  window of 100 ms (by send time) from which one second of windows all answer 200 and,
  taken together, have a p99 under the recovery level (the half-load p99 or 5 ms, whichever
  is higher): the p99 of a second's answers, as the half-load p99 is of all its answers
  (the p99 of a window of 100 ms is about its slowest answer or two, which a server at
  half load exceeds in most seconds).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openloop import measure  # bench/ is on sys.path when run as a script
from servers import Server

STEADY_S = 1.0  # how long the windows must stay healthy to call the server recovered
SHED_STATUSES = {"200", "503", "429"}


@dataclass
class Overload:
    target_rate: float
    offered_rate: float
    requests: int
    served_p99_ms: float
    served: int
    shed_503_share: float
    answered_429: int
    other_outcomes: int
    other_detail: dict[str, int]
    rss_before_mib: float
    rss_after_mib: float
    recovery_level_ms: float
    recovery_s: float | None
    recovery_watched_s: float
    most_connections: int
    queued_in_generator: int
    generator_lag_p99_ms: float


def recovery_seconds(timeline: list[dict[str, Any]], drop_at: float, window: float) -> float | None:
    """Seconds from `drop_at` to the start of the first window from which `STEADY_S` of
    windows all answered 200, with at most 1 % of their answers slow (p99 ≤ the level the
    generator counted `slow` against); None if that never happened."""
    after = [w for w in timeline if w["start_s"] >= drop_at - 1e-9]
    needed = max(1, round(STEADY_S / window))
    for index in range(len(after) - needed + 1):
        steady = after[index : index + needed]
        requests = sum(w["requests"] for w in steady)
        if (
            all(w["requests"] > 0 for w in steady)
            and sum(w["ok"] for w in steady) == requests
            and sum(w["slow"] for w in steady) <= 0.01 * requests
        ):
            return round(float(after[index]["start_s"]) - drop_at, 2)
    return None


def overload(
    server: Server,
    bodies_json: Path,
    capacity: float,
    half_load_p99_ms: float,
    *,
    overload_s: float,
    after_s: float,
    connections: int,
) -> Overload:
    """2x `capacity` for `overload_s`, then half of it for `after_s`, against `server`."""
    rss_before = server.rss_mib()
    phases = [(2 * capacity, overload_s), (capacity / 2, after_s)]
    level = max(half_load_p99_ms, 5.0)
    report = measure(
        server.url,
        bodies_json,
        phases,
        slow_ms=level,
        connections=connections,
        max_connections=connections,
        timeout=10.0,
    )
    server.check_alive()
    rss_after = server.rss_mib()
    over = report["phases"][0]
    statuses: dict[str, int] = {}
    for phase in report["phases"]:
        for status, count in phase["statuses"].items():
            statuses[status] = statuses.get(status, 0) + count
    other = {
        f"HTTP {s}" if s != "0" else "no answer": n
        for s, n in statuses.items()
        if s not in SHED_STATUSES
    }
    if report["unfinished"]:
        other["unfinished"] = report["unfinished"]
    requests = over["requests"]
    return Overload(
        target_rate=round(2 * capacity),
        offered_rate=over["rate"],
        requests=requests,
        served_p99_ms=over["served_p99_ms"],
        served=over["statuses"].get("200", 0),
        shed_503_share=round(over["statuses"].get("503", 0) / max(1, requests), 3),
        answered_429=statuses.get("429", 0),
        other_outcomes=sum(other.values()),
        other_detail=other,
        rss_before_mib=rss_before,
        rss_after_mib=rss_after,
        recovery_level_ms=level,
        recovery_s=recovery_seconds(report["timeline"], overload_s, report["window_s"]),
        recovery_watched_s=after_s,
        most_connections=report["most_connections"],
        queued_in_generator=report["queued_in_generator"],
        generator_lag_p99_ms=report["lag_p99_ms"],
    )
