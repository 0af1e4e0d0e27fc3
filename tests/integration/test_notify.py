"""The notification outbox (SPEC §7) against real parts: PostgreSQL (the `resources` fixture),
an aiosmtpd SMTP server in the test and an aiohttp webhook receiver on a real port that
verifies the Standard Webhooks signature."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import jinja2
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from activation.runtime import Resources
from fraud.notify import (
    TEMPLATES,
    Channel,
    Notification,
    Sender,
    SmtpSender,
    WebhookSender,
    backlog,
    enqueue,
    message_id,
    render,
    send_due,
    sign,
    verify,
    webhook_id,
)
from tests.integration.receivers import SECRET, Receiver, Smtp, free_port

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
GRACE_OVER = {
    "license_key": "ABCDE-FGHIJ-KLMNO-PQRST-UVWXY",
    "servers_active": 3,
    "servers_allowed": 1,
    "grace_ends_at": "2026-10-31T12:00:00+00:00",
    "disable_at": "2026-11-15T12:00:00+00:00",
}
ALERT = {"case_id": 7, "license_key": "ABCDE-FGHIJ-KLMNO-PQRST-UVWXY", "stage": "overdue"}
SAMPLES: dict[str, dict[str, Any]] = {
    "grace_over": GRACE_OVER,
    "reminder": {k: v for k, v in GRACE_OVER.items() if k != "grace_ends_at"},
    "disabled": {"license_key": "ABCDE-FGHIJ-KLMNO-PQRST-UVWXY"},
    "ms_reminder": {"license_key": "K1", "ms_covered_through": "2027-08-31", "days_left": 30},
    "ms_lapsed": {"license_key": "K1", "ms_covered_through": "2027-08-31"},
}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _enqueue(pool: asyncpg.Pool, key: str, channel: Channel, **fields: Any) -> bool:
    defaults: dict[str, Any] = (
        {"template": "grace_over", "recipient": "owner@example.com", "payload": GRACE_OVER}
        if channel is Channel.EMAIL
        else {"template": "case_overdue", "recipient": "fraud-team", "payload": ALERT}
    )
    defaults.update(fields)
    async with pool.acquire() as conn, conn.transaction():
        inserted: bool = await enqueue(
            conn, dedupe_key=key, channel=channel, now=fields.pop("now", NOW), **defaults
        )
        return inserted


async def _row(pool: asyncpg.Pool, key: str) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM notifications WHERE dedupe_key = $1", key)
    assert row is not None
    return row


def _senders(
    smtp_url: str | None = None,
    receiver: Receiver | None = None,
    http: aiohttp.ClientSession | None = None,
) -> dict[Channel, Sender]:
    senders: dict[Channel, Sender] = {}
    if smtp_url is not None:
        senders[Channel.EMAIL] = SmtpSender(smtp_url, "licensing@vendor.example")
    if receiver is not None and http is not None:
        senders[Channel.WEBHOOK] = WebhookSender(receiver.url, SECRET, http)
    return senders


async def test_enqueue_twice_with_one_dedupe_key_keeps_one_row(resources: Resources) -> None:
    pool = resources.pool
    assert await _enqueue(pool, "case:1:day30:email", Channel.EMAIL)
    assert not await _enqueue(pool, "case:1:day30:email", Channel.EMAIL, recipient="x@y.z")
    rows = await pool.fetch("SELECT * FROM notifications")
    assert len(rows) == 1
    row = rows[0]
    assert (row["status"], row["attempts"], row["recipient"]) == ("pending", 0, "owner@example.com")
    assert row["next_attempt_at"] == NOW and row["created_at"] == NOW
    assert row["case_id"] is None and row["license_key"] is None


async def test_enqueue_rolls_back_with_the_callers_transaction(resources: Resources) -> None:
    pool = resources.pool
    with pytest.raises(RuntimeError):
        async with pool.acquire() as conn, conn.transaction():
            await enqueue(
                conn,
                dedupe_key="case:2:day30:email",
                channel=Channel.EMAIL,
                template="grace_over",
                recipient="owner@example.com",
                payload=GRACE_OVER,
                now=NOW,
            )
            raise RuntimeError("the step failed")
    assert await pool.fetchval("SELECT count(*) FROM notifications") == 0


async def test_email_goes_out_over_smtp_once(resources: Resources, smtp: Smtp) -> None:
    pool = resources.pool
    key = "case:1:day30:email"
    await _enqueue(pool, key, Channel.EMAIL)
    senders = _senders(smtp.url)

    report = await send_due(pool, senders, NOW)

    assert report.sent[Channel.EMAIL] == 1 and report.total == 1
    assert len(smtp.mailbox.messages) == 1
    message = smtp.mailbox.messages[0]
    assert message["To"] == "owner@example.com"
    assert smtp.mailbox.recipients == [["owner@example.com"]]
    assert message["From"] == "licensing@vendor.example"
    # a folded header ("Subject:\r\n Action…") is valid RFC 5322; Python keeps the fold's space
    assert message["Subject"].strip() == render("grace_over", GRACE_OVER).subject
    assert "ABCDE-FGHIJ-KLMNO-PQRST-UVWXY" in message["Subject"]
    assert message["Message-ID"] == message_id(key)
    text = message.get_content()
    assert "3 servers" in text and "15 November 2026, 12:00 UTC" in text
    row = await _row(pool, key)
    assert (row["status"], row["attempts"], row["sent_at"]) == ("sent", 1, NOW)

    again = await send_due(pool, senders, NOW + timedelta(days=1))
    assert again.total == 0
    assert len(smtp.mailbox.messages) == 1


async def test_webhook_is_signed_and_verified_by_the_receiver(
    resources: Resources, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    pool = resources.pool
    key = "case:7:day30:webhook"
    await _enqueue(pool, key, Channel.WEBHOOK, case_id=None)

    report = await send_due(pool, _senders(receiver=receiver, http=http), NOW)

    assert report.sent[Channel.WEBHOOK] == 1
    assert len(receiver.requests) == 1
    headers, body, verified = receiver.requests[0]
    assert verified
    assert headers["webhook-id"] == webhook_id(key)
    assert headers["content-type"] == "application/json"
    assert orjson.loads(body) == {
        "type": "case_overdue",
        "timestamp": NOW.isoformat(),
        "data": ALERT,
    }
    assert not verify(SECRET, headers, body + b" ")
    assert not verify("whsec_" + "QUJD" * 8, headers, body)
    assert (await _row(pool, key))["status"] == "sent"


def test_verify_accepts_plain_secrets_any_listed_signature_and_rejects_stale_timestamps() -> None:
    body = b'{"a":1}'
    good = sign("plain secret", "msg_1", 1_800_000_000, body)
    headers = {
        "Webhook-Id": "msg_1",
        "Webhook-Timestamp": "1800000000",
        "Webhook-Signature": f"v1,bm90IGl0 {good}",
    }
    assert verify("plain secret", headers, body, now=1_800_000_100)
    assert not verify("plain secret", headers, body, now=1_800_000_000 + 301)
    assert verify("plain secret", headers, body, now=0, tolerance=None)
    assert not verify("other secret", headers, body, now=1_800_000_000)
    assert not verify("plain secret", {}, body)
    forged = headers | {"Webhook-Signature": "v1,é", "Webhook-Timestamp": "1800000000"}
    assert not verify("plain secret", forged, body, now=1_800_000_000)  # no TypeError
    assert not verify("plain secret", headers | {"Webhook-Timestamp": "²"}, body)


async def test_failing_webhook_retries_with_backoff_while_email_still_goes_out(
    resources: Resources, smtp: Smtp, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    pool = resources.pool
    receiver.status = 500
    await _enqueue(pool, "case:3:day30:webhook", Channel.WEBHOOK)
    await _enqueue(pool, "case:3:day30:email", Channel.EMAIL)
    senders = _senders(smtp.url, receiver, http)

    first = await send_due(pool, senders, NOW)

    assert first.sent[Channel.EMAIL] == 1 and first.retried[Channel.WEBHOOK] == 1
    assert len(smtp.mailbox.messages) == 1
    row = await _row(pool, "case:3:day30:webhook")
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert row["next_attempt_at"] == NOW + timedelta(seconds=30)
    assert "500" in row["last_error"]

    early = await send_due(pool, senders, NOW + timedelta(seconds=29))
    assert early.total == 0 and len(receiver.requests) == 1

    second_at = NOW + timedelta(seconds=30)
    second = await send_due(pool, senders, second_at)
    assert second.retried[Channel.WEBHOOK] == 1
    row = await _row(pool, "case:3:day30:webhook")
    assert row["attempts"] == 2
    assert row["next_attempt_at"] == second_at + timedelta(seconds=60)

    receiver.status = 204
    third = await send_due(pool, senders, second_at + timedelta(seconds=60))
    assert third.sent[Channel.WEBHOOK] == 1
    row = await _row(pool, "case:3:day30:webhook")
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 3, None)
    assert receiver.ids == [webhook_id("case:3:day30:webhook")] * 3
    assert all(verified for _, _, verified in receiver.requests)
    assert len(smtp.mailbox.messages) == 1


async def test_a_message_is_dead_after_max_attempts(
    resources: Resources, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    pool = resources.pool
    receiver.status = 503
    key = "case:4:day44:webhook"
    await _enqueue(pool, key, Channel.WEBHOOK)
    senders = _senders(receiver=receiver, http=http)
    now = NOW
    outcomes = []
    for _ in range(3):
        report = await send_due(pool, senders, now, max_attempts=3)
        outcomes.append((report.retried[Channel.WEBHOOK], report.dead[Channel.WEBHOOK]))
        now = (await _row(pool, key))["next_attempt_at"]

    assert outcomes == [(1, 0), (1, 0), (0, 1)]
    row = await _row(pool, key)
    assert (row["status"], row["attempts"], row["sent_at"]) == ("dead", 3, None)
    assert "503" in row["last_error"]
    assert (await send_due(pool, senders, now + timedelta(days=1), max_attempts=3)).total == 0
    assert receiver.ids == [webhook_id(key)] * 3


async def test_smtp_server_down_means_retry_later_not_an_exception(
    resources: Resources, smtp: Smtp
) -> None:
    pool = resources.pool
    key = "ms:K1:2027-08-31:30:email"
    await _enqueue(pool, key, Channel.EMAIL, template="ms_reminder", payload=SAMPLES["ms_reminder"])
    down = _senders(f"smtp://127.0.0.1:{free_port()}")

    report = await send_due(pool, down, NOW)

    assert report.retried[Channel.EMAIL] == 1
    row = await _row(pool, key)
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert row["next_attempt_at"] == NOW + timedelta(seconds=30)
    assert row["last_error"]

    back = await send_due(pool, _senders(smtp.url), NOW + timedelta(seconds=30))
    assert back.sent[Channel.EMAIL] == 1
    assert [m["Message-ID"] for m in smtp.mailbox.messages] == [message_id(key)]


async def test_a_channel_without_a_sender_stays_pending_and_blocks_nothing(
    resources: Resources, smtp: Smtp
) -> None:
    pool = resources.pool
    for n in range(3):
        await _enqueue(pool, f"case:{n}:day30:webhook", Channel.WEBHOOK)
    await _enqueue(pool, "case:9:day30:email", Channel.EMAIL)

    report = await send_due(pool, _senders(smtp.url), NOW, batch=1)

    assert report.sent[Channel.EMAIL] == 1 and report.total == 1
    assert await backlog(pool, NOW) == {Channel.EMAIL: 0, Channel.WEBHOOK: 3}
    statuses = await pool.fetch(
        "SELECT status, attempts FROM notifications WHERE channel = 'webhook'"
    )
    assert {(r["status"], r["attempts"]) for r in statuses} == {("pending", 0)}


async def test_a_bad_template_fails_loudly_and_goes_dead_at_once(
    resources: Resources, smtp: Smtp
) -> None:
    with pytest.raises(jinja2.UndefinedError):
        render("reminder", {"license_key": "K1"})
    with pytest.raises(KeyError):
        render("no_such_template", {})
    pool = resources.pool
    await _enqueue(pool, "case:5:day37:email", Channel.EMAIL, template="reminder", payload={})

    report = await send_due(pool, _senders(smtp.url), NOW)

    assert report.dead[Channel.EMAIL] == 1
    row = await _row(pool, "case:5:day37:email")
    assert (row["status"], row["attempts"]) == ("dead", 1)
    assert "PermanentFailure" in row["last_error"]
    assert smtp.mailbox.messages == []


async def test_a_recipient_with_a_line_break_goes_dead_at_once(
    resources: Resources, smtp: Smtp
) -> None:
    """The admin API refuses such addresses; one stored before that must not be retried."""
    pool = resources.pool
    recipient = "owner@example.com\r\nBcc: someone@else.example"
    await _enqueue(pool, "case:6:grace:email", Channel.EMAIL, recipient=recipient)

    report = await send_due(pool, _senders(smtp.url), NOW)

    assert report.dead[Channel.EMAIL] == 1
    row = await _row(pool, "case:6:grace:email")
    assert (row["status"], row["attempts"]) == ("dead", 1)
    assert "PermanentFailure" in row["last_error"]
    assert smtp.mailbox.messages == []


def test_every_template_renders_its_documented_fields() -> None:
    assert set(SAMPLES) == TEMPLATES
    for name, payload in SAMPLES.items():
        extras = {"customer_name": "Acme <Ltd>", "case_id": 3, "step": name, "days_left": 0}
        rendered = render(name, {**extras, **payload})
        assert rendered.subject and "\n" not in rendered.subject
        assert rendered.text.startswith("Hello Acme <Ltd>,")
        for field_name, value in payload.items():
            with pytest.raises(jinja2.UndefinedError):
                render(name, {k: v for k, v in payload.items() if k != field_name})
            if field_name == "license_key":
                assert str(value) in rendered.text
    lapsed = render("ms_lapsed", {**SAMPLES["ms_lapsed"], "product": "smartermail"})
    assert "K1 (smartermail) was covered through 31 August 2027" in lapsed.text
    assert "80%" in render("ms_lapsed", SAMPLES["ms_lapsed"]).text
    assert "50%" in render("ms_reminder", SAMPLES["ms_reminder"]).text


async def test_two_workers_at_once_never_send_one_message_twice(
    resources: Resources, smtp: Smtp
) -> None:
    pool = resources.pool
    keys = [f"case:{n}:day30:email" for n in range(30)]
    for key in keys:
        await _enqueue(pool, key, Channel.EMAIL)
    senders = _senders(smtp.url)

    reports = await asyncio.gather(
        *(send_due(pool, senders, NOW, batch=10, concurrency=4) for _ in range(4))
    )

    assert sum(r.sent[Channel.EMAIL] for r in reports) == 30
    assert sorted(m["Message-ID"] for m in smtp.mailbox.messages) == sorted(
        message_id(k) for k in keys
    )
    assert await pool.fetchval("SELECT count(*) FROM notifications WHERE status = 'sent'") == 30


class _Stuck:
    def __init__(self) -> None:
        self.entered = asyncio.Event()

    async def send(self, notification: Notification) -> None:
        self.entered.set()
        await asyncio.Event().wait()


async def test_a_worker_dying_mid_send_leaves_the_row_for_after_the_lease(
    resources: Resources, smtp: Smtp
) -> None:
    """The lease is wall-clock time: the row is claimed again once it ran out, counted as a
    re-send, with the same Message-ID."""
    pool = resources.pool
    key = "case:6:day30:email"
    await _enqueue(pool, key, Channel.EMAIL)
    stuck = _Stuck()
    lease = timedelta(seconds=6)  # the shortest the sender takes with a 1 s send timeout
    worker = asyncio.create_task(
        send_due(pool, {Channel.EMAIL: stuck}, NOW, lease=lease, send_timeout=1)
    )
    await asyncio.wait_for(stuck.entered.wait(), 5)
    worker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await worker
    row = await _row(pool, key)
    assert (row["status"], row["attempts"], row["next_attempt_at"]) == ("pending", 0, NOW)

    senders = _senders(smtp.url)
    assert (await send_due(pool, senders, NOW + timedelta(days=1))).total == 0
    await pool.execute("UPDATE notifications SET lease_until = now() WHERE dedupe_key = $1", key)
    again = await send_due(pool, senders, NOW)
    assert (again.sent[Channel.EMAIL], again.resent[Channel.EMAIL]) == (1, 1)
    assert [m["Message-ID"] for m in smtp.mailbox.messages] == [message_id(key)]
    assert (await _row(pool, key))["resends"] == 1


class _FailsWhenReleased:
    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def send(self, notification: Notification) -> None:
        self.entered.set()
        await self.release.wait()
        raise ConnectionError("gave up late")


async def test_a_worker_past_its_lease_cannot_reschedule_a_row_another_worker_sends(
    resources: Resources,
) -> None:
    pool = resources.pool
    key = "case:8:day30:webhook"
    await _enqueue(pool, key, Channel.WEBHOOK)
    lease = timedelta(minutes=5)
    slow, stuck = _FailsWhenReleased(), _Stuck()
    first = asyncio.create_task(send_due(pool, {Channel.WEBHOOK: slow}, NOW, lease=lease))
    await asyncio.wait_for(slow.entered.wait(), 5)
    await pool.execute("UPDATE notifications SET lease_until = now() WHERE dedupe_key = $1", key)
    second = asyncio.create_task(send_due(pool, {Channel.WEBHOOK: stuck}, NOW, lease=lease))
    await asyncio.wait_for(stuck.entered.wait(), 5)

    slow.release.set()
    late = await first

    assert late.total == 0
    row = await _row(pool, key)
    assert (row["attempts"], row["next_attempt_at"], row["resends"]) == (0, NOW, 1)
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second


async def test_a_webhook_redirect_is_a_failed_delivery_not_followed(
    resources: Resources, http: aiohttp.ClientSession
) -> None:
    """A receiver answering 302 does not get the signed alert sent on to where it points: the
    delivery failed and is retried later, at the configured URL."""
    arrived: list[str] = []

    async def moved(request: web.Request) -> web.Response:
        arrived.append(request.path)
        raise web.HTTPFound("/elsewhere")

    async def elsewhere(request: web.Request) -> web.Response:
        arrived.append(request.path)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", moved)
    app.router.add_route("*", "/elsewhere", elsewhere)
    async with TestServer(app, host="127.0.0.1") as server:
        pool = resources.pool
        key = "case:9:day30:webhook"
        await _enqueue(pool, key, Channel.WEBHOOK)
        sender = WebhookSender(str(server.make_url("/hook")), SECRET, http)

        report = await send_due(pool, {Channel.WEBHOOK: sender}, NOW)

        row = await _row(pool, key)
        assert (report.retried[Channel.WEBHOOK], arrived) == (1, ["/hook"]), arrived
        assert (row["status"], row["attempts"]) == ("pending", 1)
        assert "302" in row["last_error"]
