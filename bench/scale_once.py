"""`fraud-worker --once` with its pass timed from inside: the same composition root
(`fraud.cli.build_worker`) and the same `Worker.run_alone()` (one pass, then the consumer
leaves the group), then one JSON line with the
pass's own seconds (process start and connection set-up excluded) and what it did."""

from __future__ import annotations

import asyncio
import json
import time

import uvloop

from activation.config import Settings
from activation.logs import configure_logging
from fraud.cli import build_worker


async def main() -> None:
    async with build_worker(Settings.from_env()) as worker:
        started = time.perf_counter()
        report = await worker.run_alone()
        seconds = time.perf_counter() - started
    sent = report.notifications.counts() if report.notifications is not None else {}
    print(
        json.dumps(
            {
                "seconds": seconds,
                "ingested": report.ingested,
                "steps": dict(report.cases.steps),
                "sent": {f"{channel}/{outcome}": n for (channel, outcome), n in sent.items()},
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    configure_logging()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
