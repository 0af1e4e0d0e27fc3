"""Customer e-mail over real SMTP (the standard library's smtplib, run off the event loop).

`smtp_url`: ``smtp://host:port`` (plain; add ``?starttls=1`` to upgrade), ``smtps://host:port``
(implicit TLS); ``user:password@`` in either logs in. Default ports 25 and 465.
The Message-ID is derived from the dedupe key, so every retry of one message carries the same id.
"""

from __future__ import annotations

import asyncio
import hashlib
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime
from urllib.parse import parse_qs, unquote, urlsplit

import jinja2

from fraud.notify.model import Notification, PermanentFailure
from fraud.notify.templates import render

MESSAGE_ID_DOMAIN = "license-server"


def message_id(dedupe_key: str) -> str:
    digest = hashlib.sha256(dedupe_key.encode()).hexdigest()[:32]
    return f"<{digest}@{MESSAGE_ID_DOMAIN}>"


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    implicit_tls: bool
    starttls: bool
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> SmtpTarget:
        parts = urlsplit(url)
        if parts.scheme not in {"smtp", "smtps"} or not parts.hostname:
            raise ValueError(f"SMTP URL must be smtp://host:port or smtps://host:port, not {url!r}")
        implicit = parts.scheme == "smtps"
        flag = parse_qs(parts.query).get("starttls", ["0"])[-1].lower()
        return cls(
            host=parts.hostname,
            port=parts.port or (465 if implicit else 25),
            implicit_tls=implicit,
            starttls=flag in {"1", "true", "yes"},
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


class SmtpSender:
    def __init__(self, smtp_url: str, mail_from: str, *, timeout: float = 30.0) -> None:
        self._target = SmtpTarget.parse(smtp_url)
        self._mail_from = mail_from
        self._timeout = timeout

    def build(self, notification: Notification) -> EmailMessage:
        try:
            rendered = render(notification.template, notification.payload)
        except (KeyError, jinja2.TemplateError) as exc:
            raise PermanentFailure(f"template {notification.template!r}: {exc}") from exc
        message = EmailMessage()
        message["From"] = self._mail_from
        try:
            message["To"] = notification.recipient
        except ValueError as exc:  # a line break in the address: no retry will fix it
            raise PermanentFailure(f"recipient {notification.recipient[:80]!r}: {exc}") from exc
        message["Subject"] = rendered.subject
        message["Message-ID"] = message_id(notification.dedupe_key)
        message["Date"] = format_datetime(notification.created_at)
        message.set_content(rendered.text)
        return message

    async def send(self, notification: Notification) -> None:
        message = self.build(notification)
        await asyncio.to_thread(self._deliver, message)

    def _deliver(self, message: EmailMessage) -> None:
        target = self._target
        client: smtplib.SMTP
        if target.implicit_tls:
            client = smtplib.SMTP_SSL(
                target.host,
                target.port,
                timeout=self._timeout,
                context=ssl.create_default_context(),
            )
        else:
            client = smtplib.SMTP(target.host, target.port, timeout=self._timeout)
        with client:
            if target.starttls:
                client.starttls(context=ssl.create_default_context())
            if target.username is not None:
                client.login(target.username, target.password or "")
            try:
                client.send_message(message)
            except smtplib.SMTPRecipientsRefused as exc:
                if all(code >= 500 for code, _ in exc.recipients.values()):
                    raise PermanentFailure(f"recipient refused: {exc.recipients}") from exc
                raise
