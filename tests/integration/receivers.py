"""Real peers for the notification tests: an aiosmtpd SMTP server that records what it
receives, and an aiohttp webhook receiver on a real port that verifies the Standard Webhooks
signature (SPEC §7). Registered as fixtures by tests/integration/conftest.py."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from fraud.notify import verify

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Mailbox:
    """An aiosmtpd handler that keeps every accepted message and its recipients."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.recipients: list[list[str]] = []

    @property
    def message_ids(self) -> list[str]:
        return [str(message["Message-ID"]) for message in self.messages]

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 Message accepted"


@contextmanager
def smtp_sink(port: int) -> Iterator[Mailbox]:
    """An SMTP server on 127.0.0.1:`port` for as long as the block runs."""
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield mailbox
    finally:
        controller.stop()


@dataclass
class Smtp:
    url: str
    mailbox: Mailbox


@pytest.fixture
def smtp() -> Iterator[Smtp]:
    port = free_port()
    with smtp_sink(port) as mailbox:
        yield Smtp(f"smtp://127.0.0.1:{port}", mailbox)


@dataclass
class Receiver:
    url: str
    status: int = 200
    requests: list[tuple[dict[str, str], bytes, bool]] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [headers["webhook-id"] for headers, _, _ in self.requests]

    @property
    def bad_signatures(self) -> int:
        return sum(not signed for _, _, signed in self.requests)


@asynccontextmanager
async def webhook_sink(port: int = 0) -> AsyncIterator[Receiver]:
    """A webhook receiver at http://127.0.0.1:`port`/hook (0: a port the system picks) for as
    long as the block runs; it answers `Receiver.status`."""
    state = Receiver(url="")

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        headers = {name.lower(): value for name, value in request.headers.items()}
        state.requests.append((headers, body, verify(SECRET, request.headers, body)))
        return web.Response(status=state.status)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        state.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
        yield state
    finally:
        await runner.cleanup()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with webhook_sink() as state:
        yield state
