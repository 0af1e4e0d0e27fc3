"""The whole system in one process, wired like production for the end-to-end tests
(test_fraud_lifecycle.py, test_metrics.py): the public and admin apps on test servers and a
fraud worker sending through a real SMTP server and a real webhook receiver."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from aiohttp.test_utils import RawTestServer, TestClient, TestServer

from activation.config import Settings
from activation.runtime import Resources, open_resources, public_api
from fraud.admin_app import create_admin_app
from fraud.escalation import DEFAULT_LADDER
from fraud.notify import Channel, Sender, SmtpSender, WebhookSender
from fraud.worker import Worker
from metrics import WorkerMetrics
from tests.conftest import _clean
from tests.integration.helpers import Client
from tests.integration.receivers import SECRET, Receiver, Smtp


@dataclasses.dataclass
class Wired:
    resources: Resources
    public: Client
    admin: Client
    worker: Worker


@asynccontextmanager
async def wired(
    settings: Settings, smtp: Smtp, receiver: Receiver, metrics: WorkerMetrics
) -> AsyncIterator[Wired]:
    """`settings` with SMTP and the webhook pointed at `smtp` and `receiver`, on an emptied
    database; the Redis prefix is dropped afterwards (by `settings`)."""
    configured = dataclasses.replace(
        settings,
        smtp_url=smtp.url,
        fraud_webhook_url=receiver.url,
        fraud_webhook_secret=SECRET,
        mail_from="licensing@vendor.example",
    )
    await _clean(configured)
    async with (
        open_resources(configured) as resources,
        aiohttp.ClientSession() as session,
        TestClient(RawTestServer(public_api(resources).handle)) as public,
        TestClient(TestServer(create_admin_app(resources))) as admin,
    ):
        senders: dict[Channel, Sender] = {
            Channel.EMAIL: SmtpSender(smtp.url, configured.mail_from),
            Channel.WEBHOOK: WebhookSender(receiver.url, SECRET, session),
        }
        worker = Worker(resources, DEFAULT_LADDER, senders, metrics)
        yield Wired(resources, public, admin, worker)
