"""The notices' receivers for `bench/scale.py`: an SMTP sink (aiosmtpd) and a webhook receiver
(aiohttp), both in the benchmark's process, counting what arrives per day of the walk and
every Message-ID / webhook-id seen twice."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller


@dataclass
class Arrivals:
    """Notices by day of the walk (the day the benchmark was on when they arrived)."""

    day: int = 0
    emails: Counter[int] = field(default_factory=Counter)
    webhooks: Counter[int] = field(default_factory=Counter)
    webhook_types: Counter[str] = field(default_factory=Counter)
    message_ids: set[str] = field(default_factory=set)
    webhook_ids: set[str] = field(default_factory=set)
    duplicates: int = 0

    def email(self, message_id: str) -> None:
        if message_id in self.message_ids:
            self.duplicates += 1
        self.message_ids.add(message_id)
        self.emails[self.day] += 1

    def webhook(self, webhook_id: str, kind: str) -> None:
        if webhook_id in self.webhook_ids:
            self.duplicates += 1
        self.webhook_ids.add(webhook_id)
        self.webhooks[self.day] += 1
        self.webhook_types[kind] += 1

    def total(self) -> int:
        return sum(self.emails.values()) + sum(self.webhooks.values())


class _SmtpHandler:
    def __init__(self, arrivals: Arrivals) -> None:
        self.arrivals = arrivals

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content)
        self.arrivals.email(str(message.get("Message-ID", "")))
        return "250 OK"


@asynccontextmanager
async def smtp_sink(arrivals: Arrivals, port: int) -> AsyncIterator[str]:
    """An SMTP server on 127.0.0.1:`port`; yields its SMTP_URL."""
    controller = Controller(_SmtpHandler(arrivals), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield f"smtp://127.0.0.1:{port}"
    finally:
        controller.stop()


@asynccontextmanager
async def webhook_receiver(arrivals: Arrivals, port: int) -> AsyncIterator[str]:
    """An HTTP receiver of the team webhook on 127.0.0.1:`port`; yields its URL."""

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            kind = str(json.loads(body).get("type", "?"))
        except ValueError:
            kind = "?"
        arrivals.webhook(request.headers.get("webhook-id", ""), kind)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        await runner.cleanup()
