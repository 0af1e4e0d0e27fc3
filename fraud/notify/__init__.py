"""Notifications (SPEC §7): the PostgreSQL outbox and its two channels.

- `enqueue(conn, ...)` in the caller's transaction; `OutboxSender` (or `send_due(pool, senders,
  now)`) delivers, apart from the pass that decides.
- `SmtpSender` (customer e-mail from `templates`), `WebhookSender` (fraud team, Standard
  Webhooks signatures; `verify` for receivers and tests).
"""

from fraud.notify.email import SmtpSender, message_id
from fraud.notify.model import (
    Channel,
    Notification,
    Outcome,
    PermanentFailure,
    Sender,
    SendReport,
)
from fraud.notify.outbox import backlog, backoff, enqueue
from fraud.notify.sending import OutboxSender, send_due
from fraud.notify.templates import TEMPLATES, RenderedEmail, render
from fraud.notify.webhook import WebhookError, WebhookSender, sign, verify, webhook_id

__all__ = [
    "TEMPLATES",
    "Channel",
    "Notification",
    "OutboxSender",
    "Outcome",
    "PermanentFailure",
    "RenderedEmail",
    "SendReport",
    "Sender",
    "SmtpSender",
    "WebhookError",
    "WebhookSender",
    "backlog",
    "backoff",
    "enqueue",
    "message_id",
    "render",
    "send_due",
    "sign",
    "verify",
    "webhook_id",
]
