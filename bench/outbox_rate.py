"""How fast the outbox sends e-mail: N due rows in a throwaway database, sent once with
`send_due` (what `fraud-worker --once` does after its pass) to a local aiosmtpd sink (its own
process, `python -m aiosmtpd` with the Sink handler) that accepts everything; prints messages
per second.

    .venv/bin/python bench/outbox_rate.py [--messages 2000] [--concurrency 8]

Needs PostgreSQL at BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime

import asyncpg

from activation.store.migrate import migrate
from fraud.notify import Channel, SmtpSender, enqueue, send_due


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def measure(admin_url: str, port: int, messages: int, concurrency: int) -> None:
    name = f"outbox_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        await asyncio.sleep(1.0)  # the sink's start
        pool = await asyncpg.create_pool(url, min_size=2, max_size=concurrency + 2)
        async with pool.acquire() as connection:
            await migrate(connection)
        now = datetime.now(UTC)
        async with pool.acquire() as connection, connection.transaction():
            for n in range(messages):
                await enqueue(
                    connection,
                    dedupe_key=f"case:{n}:disable:email",
                    channel=Channel.EMAIL,
                    template="disabled",
                    recipient=f"customer{n}@example.com",
                    payload={"license_key": f"KEY-{n}"},
                    now=now,
                )
        sender = SmtpSender(f"smtp://127.0.0.1:{port}", "licensing@bench.example")
        started, cpu = time.perf_counter(), time.process_time()
        report = await send_due(pool, {Channel.EMAIL: sender}, now, concurrency=concurrency)
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu
        await pool.close()
        print(
            f"sent {report.sent[Channel.EMAIL]} of {messages} e-mails "
            f"in {seconds:.2f} s: "
            f"{report.sent[Channel.EMAIL] / seconds:.0f} messages/s "
            f"(concurrency {concurrency}, connections reused); sender CPU {cpu:.2f} s"
        )
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    url = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    port = free_port()
    sink = subprocess.Popen(
        [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}",
         "-c", "aiosmtpd.handlers.Sink"]
    )  # fmt: skip
    try:
        asyncio.run(measure(url, port, args.messages, args.concurrency))
    finally:
        sink.terminate()
        _, _, usage = os.wait4(sink.pid, 0)
        print(f"sink CPU {usage.ru_utime + usage.ru_stime:.2f} s")


if __name__ == "__main__":
    main()
