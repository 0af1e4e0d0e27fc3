"""The fraud side at scale, end to end: keys phoning home daily on the test clock, the worker
in cron mode (`fraud-worker --once` once a day) and in loop mode (`fraud-worker`).

    .venv/bin/python bench/scale.py [--keys 2000] [--days 12] [--modes cron,loop]
                                    [--concurrency 64]

The scenario: `--keys` licenses with one server each; a tenth of them on a second server
(open a case on day 0); a twentieth of those leak to seven servers (flagged at once, R16); a
tenth of them stop their first server early, so their case resolves by itself before grace
ends (R15); every other case climbs the whole ladder (R14). Every server phones home once a
day. With `--days 45` the ladder and windows are the product's defaults (30 grace days,
reminder day 37, disable day 44, 7-day active window); with fewer days they shrink in
proportion (day 44 becomes the last day). Each mode runs on a fresh database and Redis
prefix, with the real `activation-server`, an SMTP sink and a webhook receiver.

Each day: the clock at 01:00, every server phones home (a 1000-row page of the cases API is
read during it), the clock at 23:00, then the worker's pass. Cron: one pass in its own
process, as `fraud-worker --once` runs it, timed from inside (`scale_once.py`); loop: the
running `fraud-worker` until nothing is due, the seconds it spent in passes (all of that
day's, from its metrics) and how many.
Printed per day: activations and those not answered 200 (in brackets: while a cases page was
read; +N: refused with 503, then answered when called again after its Retry-After, as the
products' clients do), the cases page, the pass, e-mails
and webhooks that arrived against the ladder's expectation. At the end: what the rules did,
duplicate notices, Redis bytes of the streams against the licenses' own data, stream entries
and consumers left, and PostgreSQL bytes per phone-home.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale_sinks import Arrivals, smtp_sink, webhook_receiver
from scale_system import (
    System,
    free_port,
    outcome,
    pass_totals,
    postgres_usage,
    redis_usage,
    started,
)

START = datetime(2027, 3, 1, tzinfo=UTC)
KEY_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
RETRIES = 3
REFUSED = "refused, then called again"  # a tally kept beside the answers in `total`


@dataclass(frozen=True)
class Plan:
    keys: int
    days: int

    @property
    def unit(self) -> float:
        return 1.0 if self.days >= 45 else (self.days - 1) / 44

    @property
    def ladder(self) -> tuple[int, int, int]:
        return round(30 * self.unit), round(37 * self.unit), round(44 * self.unit)

    @property
    def window(self) -> int:
        return max(1, round(7 * self.unit))

    @property
    def last_call_of_stopping(self) -> int:
        return round(13 * self.unit)

    @property
    def second(self) -> int:
        return self.keys // 10

    @property
    def leaks(self) -> int:
        return self.second // 20

    @property
    def resolving(self) -> int:
        return self.second // 10

    @property
    def climbing(self) -> int:
        return self.second - self.resolving

    def servers(self, index: int, day: int) -> list[int]:
        """Which servers of key `index` phone home on `day`."""
        count = 7 if index < self.leaks else 2 if index < self.second else 1
        stops = self.leaks <= index < self.leaks + self.resolving
        first = 1 if stops and day > self.last_call_of_stopping else 0
        return list(range(first, count))

    def expected(self, day: int) -> tuple[int, int]:
        """(e-mails, webhooks) the ladder sends on `day`."""
        grace, reminder, disable = self.ladder
        emails = self.climbing * ((day == grace) + (day == reminder) + (day == disable))
        webhooks = self.climbing * ((day == grace) + (day == disable)) + self.leaks * (day == 0)
        return emails, webhooks

    def env(self) -> dict[str, str]:
        grace, reminder, disable = self.ladder
        return {
            "GRACE_DAYS": str(grace),
            "ACTIVE_WINDOW_DAYS": str(self.window),
            "ESCALATION_LADDER": f"{grace}:grace_over,{reminder}:reminder,{disable}:disable",
        }


@dataclass
class Day:
    answers: Counter[str] = field(default_factory=Counter)
    pages: list[str] = field(default_factory=list)
    paging_until: float = 0.0  # perf_counter() until which a cases page counts as being read
    near_page: int = 0  # activations not answered 200 while a cases page was read
    refused: int = 0  # 503s called again after their Retry-After
    pass_seconds: float = 0.0
    passes: int = 0


def license_keys(count: int) -> list[str]:
    keys = []
    for n in range(count):
        digest = hashlib.sha256(f"scale-{n}".encode()).digest()
        chars = "".join(KEY_ALPHABET[b % 32] for b in digest[:25])
        keys.append("-".join(chars[i : i + 5] for i in range(0, 25, 5)))
    return keys


async def seed(session: aiohttp.ClientSession, system: System, keys: list[str]) -> None:
    await set_clock(session, system, START - timedelta(hours=1))
    async with session.post(
        f"{system.admin}/admin/v1/customers",
        json={"name": "Scale", "email": "owner@example.com", "phone": "+1 555 0100"},
        headers=system.headers,
    ) as response:
        customer = (await response.json())["id"]
    licenses = [
        {"key": key, "customer_id": customer, "product": "smartermail", "kind": "perpetual",
         "edition": "enterprise", "purchased_on": "2027-01-15", "max_servers": 1}
        for key in keys
    ]  # fmt: skip
    async with session.post(
        f"{system.admin}/admin/v1/licenses/import",
        json={"licenses": licenses},
        headers=system.headers,
    ) as response:
        imported = await response.json()
        assert response.status == 200 and imported["imported"] == len(keys), imported


async def set_clock(session: aiohttp.ClientSession, system: System, moment: datetime) -> None:
    async with session.post(
        f"{system.admin}/admin/v1/test-clock",
        json={"now": moment.isoformat()},
        headers=system.headers,
    ) as response:
        assert response.status == 200, await response.text()


def body(key: str, server: int) -> bytes:
    fingerprint = hashlib.sha256(f"{key}/{server}".encode()).hexdigest()
    return orjson.dumps(
        {"license_key": key, "fingerprint": fingerprint, "hostname": f"mx{server}.example.com",
         "product": "smartermail", "version": "16.3.6989", "nonce": "c0ffee42"}
    )  # fmt: skip


async def phone_homes(
    session: aiohttp.ClientSession, system: System, bodies: list[bytes], concurrency: int
) -> Day:
    """Every body once, `concurrency` at a time, while the cases API is read twice."""
    day, queue = Day(), iter(bodies)

    async def caller() -> None:
        for payload in queue:
            await call(payload)

    async def call(payload: bytes) -> None:
        """One phone-home; a 503 is called again after its Retry-After, as the products'
        clients do, up to RETRIES times (each refusal counted in `day.refused`)."""
        for attempt in range(RETRIES + 1):
            try:
                async with session.post(
                    f"{system.public}/v1/activations",
                    data=payload,
                    headers={"Content-Type": "application/json"},
                ) as response:
                    raw = await response.read()
                    ok = response.status == 200
                    if not ok and time.perf_counter() <= day.paging_until:
                        day.near_page += 1
                    if response.status == 503 and attempt < RETRIES:
                        day.refused += 1
                        await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                        continue
                    day.answers[orjson.loads(raw)["code"] if ok else f"!{response.status}"] += 1
            except aiohttp.ClientError as error:
                day.answers[f"!{type(error).__name__}"] += 1
            return

    async def pages() -> None:
        for _ in range(2):
            await asyncio.sleep(0.2)
            started_at = time.perf_counter()
            day.paging_until = float("inf")
            async with session.get(
                f"{system.admin}/admin/v1/cases",
                params={"limit": "1000", "status": "all"},
                headers=system.headers,
            ) as response:
                await response.read()
            day.paging_until = time.perf_counter() + 0.1  # answers of requests it held back
            day.pages.append(f"{response.status} {(time.perf_counter() - started_at) * 1000:.0f}ms")

    await asyncio.gather(pages(), *(caller() for _ in range(concurrency)))
    return day


async def clock_now(session: aiohttp.ClientSession, system: System) -> datetime:
    async with session.get(f"{system.admin}/admin/v1/test-clock", headers=system.headers) as got:
        return datetime.fromisoformat((await got.json())["now"].replace("Z", "+00:00"))


async def settled(system: System, now: datetime) -> bool:
    """Nothing left for a loop worker at `now` (the test clock's current time): streams read
    and acknowledged, no notice or step due."""
    with redis.Redis.from_url(system.redis_url) as client:
        for key in client.scan_iter(match=f"{system.prefix}:*:events", count=1000):
            for group in client.xinfo_groups(key):
                if int(group.get("pending") or 0) or int(group.get("lag") or 0):
                    return False
    conn = await asyncpg.connect(system.database_url)
    try:
        due = await conn.fetchval(
            """SELECT (SELECT count(*) FROM notifications WHERE status = 'pending'
                       AND next_attempt_at <= $1)
                    + (SELECT count(*) FROM fraud_cases WHERE status = 'open'
                       AND next_check_at <= $1)""",
            now,
        )
    finally:
        await conn.close()
    return int(due) == 0


async def walk(mode: str, plan: Plan, concurrency: int) -> None:
    arrivals = Arrivals()
    async with (
        smtp_sink(arrivals, free_port()) as smtp_url,
        webhook_receiver(arrivals, free_port()) as webhook_url,
        started(plan.env() | {"SMTP_URL": smtp_url, "FRAUD_WEBHOOK_URL": webhook_url}) as system,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency + 4)) as session,
    ):
        keys = license_keys(plan.keys)
        await seed(session, system, keys)
        baseline, _ = await system.run_once()  # nothing to do: mostly the process start
        print(
            f"\n== {mode} mode: {plan.keys:,} keys, {plan.days} days, ladder {plan.ladder}, "
            f"active window {plan.window} d; a cron pass with nothing to do: {baseline:.2f} s "
            "with its process start"
        )
        print("day  calls  not-200  cases page (2x)      pass s    e-mails (exp)  webhooks (exp)")
        print(
            "     (not-200 in the end; in brackets, any answered while a cases page was read;"
            " +N: refused with 503, then answered when called again after Retry-After)"
        )
        empty = await postgres_usage(system.database_url)
        total = Counter[str]()
        if mode == "loop":
            async with system.worker_loop() as metrics_url:
                await run_days(mode, plan, system, session, keys, arrivals, total, metrics_url,
                               concurrency)  # fmt: skip
        else:
            await run_days(mode, plan, system, session, keys, arrivals, total, None, concurrency)
        await report(plan, system, arrivals, total, empty)


async def run_days(
    mode: str, plan: Plan, system: System, session: aiohttp.ClientSession, keys: list[str],
    arrivals: Arrivals, total: Counter[str], metrics_url: str | None, concurrency: int,
) -> None:  # fmt: skip
    for number in range(plan.days):
        arrivals.day = number
        morning = START + timedelta(days=number, hours=1)
        await set_clock(session, system, morning)
        bodies = [body(key, s) for i, key in enumerate(keys) for s in plan.servers(i, number)]
        day = await phone_homes(session, system, bodies, concurrency)
        evening = START + timedelta(days=number, hours=23)
        await set_clock(session, system, evening)
        if metrics_url is None:
            _, done = await system.run_once()
            day.pass_seconds, day.passes = done["seconds"], 1
        else:
            before = await pass_totals(metrics_url)
            deadline = time.monotonic() + 120
            await asyncio.sleep(6)  # at least one periodic pass after the clock moved
            while time.monotonic() < deadline:
                if await settled(system, await clock_now(session, system)):
                    break
                await asyncio.sleep(0.5)
            after = await pass_totals(metrics_url)
            day.pass_seconds, day.passes = after[0] - before[0], after[1] - before[1]
        total.update(day.answers)
        emails, hooks = plan.expected(number)
        passes = f"{day.pass_seconds:6.2f}" + (f" in {day.passes}" if mode == "loop" else "")
        not_ok = f"{disturbed(day.answers)}" + (f" ({day.near_page})" if day.near_page else "")
        not_ok += f" +{day.refused}" if day.refused else ""
        total[REFUSED] += day.refused
        print(
            f"{number:>3}  {sum(day.answers.values()):>5}  {not_ok:>7}  "
            f"{' '.join(day.pages):<19}  {passes:<9}  {arrivals.emails[number]:>6} ({emails:>5})"
            f"  {arrivals.webhooks[number]:>6} ({hooks:>5})"
        )


def disturbed(answers: Counter[str]) -> int:
    """Activations not answered 200 (a status or a connection error)."""
    return sum(n for code, n in answers.items() if code.startswith("!"))


async def report(
    plan: Plan, system: System, arrivals: Arrivals, total: Counter[str], empty: dict[str, Any]
) -> None:
    await asyncio.sleep(1)  # the last notices of the last pass
    refused = total.pop(REFUSED, 0)
    calls = sum(total.values())
    emails = sum(plan.expected(d)[0] for d in range(plan.days))
    hooks = sum(plan.expected(d)[1] for d in range(plan.days))
    print(
        f"activations: {calls:,}, disturbed (not 200): {disturbed(total):,}; {dict(total)};"
        f" refused with 503 and answered when called again after Retry-After: {refused:,}"
    )
    print(
        f"notices: e-mails {sum(arrivals.emails.values()):,} of {emails:,} expected, webhooks "
        f"{sum(arrivals.webhooks.values()):,} of {hooks:,} ({dict(arrivals.webhook_types)}); "
        f"the same Message-ID or webhook-id twice: {arrivals.duplicates}"
    )
    done = await outcome(system.database_url)
    print(
        f"rules: cases {done['cases']}, leaks {done['leaks']}, steps {done['steps']}, "
        f"keys disabled {done['disabled']}, outbox {done['outbox']}"
    )
    print(
        f"  expected: {plan.second:,} cases, {plan.leaks} leaks, {plan.resolving} resolved by "
        f"themselves, {plan.climbing:,} keys disabled"
    )
    usage = redis_usage(system.redis_url, system.prefix)
    own, streams = usage["license_bytes"], usage["stream_bytes"]
    print(
        f"redis: licenses' own data {own / 2**20:,.1f} MiB ({own / plan.keys:,.0f} B per key), "
        f"streams {streams / 2**20:,.1f} MiB ({usage['entries']:,} entries, "
        f"{usage['consumers']} consumers): {(own + streams) / max(own, 1):.2f}x the licenses' data"
    )
    pg = await postgres_usage(system.database_url)
    grown = pg["database_bytes"] - empty["database_bytes"]
    print(
        f"postgresql: activation_events {pg['events']:,} rows, "
        f"{pg['event_bytes'] / 2**20:,.1f} MiB = {pg['event_bytes'] / max(pg['events'], 1):,.0f} "
        f"B per event; installations {pg['installations']:,} rows, "
        f"{pg['installation_bytes'] / 2**20:,.2f} MiB = "
        f"{pg['installation_bytes'] / max(pg['installations'], 1):,.0f} B each "
        f"({pg['installation_dead']:,} dead tuples); the database grew "
        f"{grown / 2**20:,.1f} MiB = {grown / max(calls, 1):,.0f} B per phone-home"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=2000)
    parser.add_argument("--days", type=int, default=12)
    parser.add_argument("--modes", default="cron,loop")
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress in a log
    if args.days < 8 or args.keys < 200:
        parser.error("--days must be at least 8 and --keys at least 200")
    plan = Plan(args.keys, args.days)
    for mode in args.modes.split(","):
        if mode not in ("cron", "loop"):
            parser.error(f"unknown mode {mode!r}")
        asyncio.run(walk(mode, plan, args.concurrency))


if __name__ == "__main__":
    main()
