"""The table `make bench` prints, from the report bench/run.py writes as JSON."""

from __future__ import annotations

from typing import Any

TARGET_FLOOR_RATIO = 0.90
TARGET_HALF_LOAD_P99_MS = 5.0
TARGET_SERVED_P99_MS = 100.0
TARGET_RECOVERY_S = 2.0

NAMES = {
    "bare": "bare aiohttp endpoint",
    "floor": "floor (parse, EVALSHA, sign)",
    "activations": "POST /v1/activations",
}


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def print_report(report: dict[str, Any]) -> None:
    settings, machine = report["settings"], report["machine"]
    throughput = report["throughput"]
    print()
    print(
        f"make bench, {report['generated_at']}: {machine.get('cpu', '?')}, {machine['cpus']} CPUs,"
        f" Python {machine['python']}, Redis {machine.get('redis', '?')}; loopback, one API"
        f" process; {settings['licenses']} licenses ({report['servers']} servers)"
    )
    print(
        f"other programs used {report['others_cpu']:.0%} of the CPUs during the measurements"
        " (more than a few % makes the numbers noisy)"
    )
    print()
    print(
        f"Throughput: wrk -t1 -c{settings['connections']}, medians of {settings['runs']}"
        f" interleaved runs of {settings['seconds']} s"
    )
    print(f"  {'endpoint':<30} {'req/s':>8} {'p50':>9} {'p99':>9} {'CPU/req':>9}")
    for name, label in NAMES.items():
        found = throughput[name]
        cpu = found["server_cpu_us"]
        print(
            f"  {label:<30} {found['requests_per_second']:>8.0f} {found['p50_ms']:>6.2f} ms"
            f" {found['p99_ms']:>6.2f} ms {'-' if cpu is None else f'{cpu:.0f} µs':>9}"
        )
    shed = report.get("throughput_shed", 0)
    if shed:
        print(f"  (the activation server shed {shed} requests with 503 during these runs)")
    ratio_floor = report["ratio_floor"]
    print(f"  activations / bare   {report['ratio_bare']:.2f}")
    print(
        f"  activations / floor  {ratio_floor:.2f}   target ≥ {TARGET_FLOOR_RATIO:.2f}:"
        f" {verdict(ratio_floor >= TARGET_FLOOR_RATIO)}"
    )
    half = report["half_load"]
    print()
    print(
        f"Half load: open loop at {half['target_rate']:.0f} req/s for {half['seconds']:.0f} s"
        f" (achieved {half['rate']:.0f}/s): p50 {half['p50_ms']:.2f} ms, p99"
        f" {half['p99_ms']:.2f} ms   target p99 < {TARGET_HALF_LOAD_P99_MS:.0f} ms:"
        f" {verdict(half['p99_ms'] < TARGET_HALF_LOAD_P99_MS)}"
    )
    print(f"  answers {half['statuses']}; generator lag p99 {half['lag_p99_ms']:.1f} ms")
    for name, p99 in half.get("reference_p99_ms", {}).items():
        print(
            f"  the same open loop against the {NAMES[name]}: p50"
            f" {half['reference_p50_ms'][name]:.2f} ms, p99 {p99:.2f} ms"
        )
    if half.get("shed"):
        print(f"  (the server shed {half['shed']} of them with 503: they waited past its limit)")
    over = report["overload"]
    recovery = over["recovery_s"]
    print()
    print(
        f"Overload: open loop at 2x capacity, {over['target_rate']:.0f} req/s for"
        f" {settings['overload_seconds']} s (offered {over['offered_rate']:.0f}/s,"
        f" {over['requests']} requests), then half capacity for {over['recovery_watched_s']:.0f} s"
    )
    print(
        f"  served {over['served']}, p99 {over['served_p99_ms']:.1f} ms   target < "
        f"{TARGET_SERVED_P99_MS:.0f} ms: {verdict(over['served_p99_ms'] < TARGET_SERVED_P99_MS)}"
    )
    print(
        f"  answered 503: {over['shed_503_share']:.1%} of the requests; 429: {over['answered_429']}"
    )
    print(
        f"  anything else (another status, lost connection, no answer): {over['other_outcomes']}"
        f" {over['other_detail'] or ''}  target 0: {verdict(over['other_outcomes'] == 0)}"
    )
    print(
        f"  server RSS {over['rss_before_mib']:.1f} MiB before,"
        f" {over['rss_after_mib']:.1f} MiB after"
    )
    recovered = recovery is not None and recovery <= TARGET_RECOVERY_S
    took = (
        f"not within {over['recovery_watched_s']:.0f} s"
        if recovery is None
        else f"{recovery:.1f} s"
    )
    print(
        f"  recovery after the drop to half: {took}"
        f" (the next 1 s of answers all 200, their p99 ≤ {over['recovery_level_ms']:.1f} ms)"
        f"   target ≤ {TARGET_RECOVERY_S:.0f} s: {verdict(recovered)}"
    )
    print(
        f"  generator: {over['most_connections']} keep-alive connections, lag p99"
        f" {over['generator_lag_p99_ms']:.1f} ms, {over['queued_in_generator']} requests waited"
        " for a connection"
    )
    print()
