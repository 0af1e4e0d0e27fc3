"""Customer e-mail over real SMTP (aiosmtplib: asyncio, so a timeout or a stop cancels a send
outright, and no thread is left waiting on a server that never answers).

`smtp_url`: ``smtp://host:port`` (plain; add ``?starttls=1`` to upgrade), ``smtps://host:port``
(implicit TLS); ``user:password@`` in either logs in. Default ports 25 and 465.
The Message-ID is derived from the dedupe key, so every retry of one message carries the same id.

Connections are reused: a send takes an idle connection (or opens one), and puts it back once
the server accepted the message; one that failed, or sat idle longer than `IDLE_SECONDS`
(servers drop idle clients), is closed. The caller bounds how many sends run at once, which
bounds the connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import hashlib
import ssl
import time
from dataclasses import dataclass
from email.header import Header
from email.mime.text import MIMEText
from email.utils import format_datetime
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib
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


IDLE_SECONDS = 20.0
SMTP_POLICY = email.policy.compat32.clone(linesep="\r\n")


def _header(value: str) -> str:
    """A header value as ASCII: non-ASCII text as RFC 2047 encoded words."""
    return value if value.isascii() else Header(value, "utf-8").encode()


class SmtpSender:
    def __init__(self, smtp_url: str, mail_from: str, *, timeout: float = 30.0) -> None:
        self._target = SmtpTarget.parse(smtp_url)
        self._mail_from = mail_from
        self._timeout = timeout
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []

    def build(self, notification: Notification) -> MIMEText:
        """The message, built with the standard library's compat32 classes: the default policy's
        header objects re-parse every header, which costs more than the rest of a send."""
        try:
            rendered = render(notification.template, notification.payload)
        except (KeyError, jinja2.TemplateError) as exc:
            raise PermanentFailure(f"template {notification.template!r}: {exc}") from exc
        recipient = notification.recipient
        if "\r" in recipient or "\n" in recipient:  # no retry will fix it
            raise PermanentFailure(f"recipient {recipient[:80]!r}: a line break in the address")
        message = MIMEText(rendered.text, "plain", "utf-8")
        message["From"] = self._mail_from
        message["To"] = _header(recipient)
        message["Subject"] = _header(rendered.subject)
        message["Message-ID"] = message_id(notification.dedupe_key)
        message["Date"] = format_datetime(notification.created_at)
        return message

    async def send(self, notification: Notification) -> None:
        message = self.build(notification)
        content = message.as_bytes(policy=SMTP_POLICY)
        client = await self._connection()
        try:
            await client.sendmail(self._mail_from, [notification.recipient], content)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            self._put_back(client)  # the session itself is fine
            if all(refused.code >= 500 for refused in exc.recipients):
                raise PermanentFailure(f"recipient refused: {exc.recipients}") from exc
            raise
        except BaseException:  # failed or cancelled mid-dialogue: the session is unusable
            client.close()
            raise
        self._put_back(client)

    async def close(self) -> None:
        """Say goodbye on every idle connection."""
        idle, self._idle = self._idle, []
        for client, _ in idle:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await asyncio.wait_for(client.quit(), 2.0)
            client.close()

    async def _connection(self) -> aiosmtplib.SMTP:
        while self._idle:
            client, since = self._idle.pop()
            if client.is_connected and time.monotonic() - since < IDLE_SECONDS:
                return client
            client.close()
        target = self._target
        tls = target.implicit_tls or target.starttls
        client = aiosmtplib.SMTP(
            hostname=target.host,
            port=target.port,
            timeout=self._timeout,
            use_tls=target.implicit_tls,
            start_tls=target.starttls,
            tls_context=ssl.create_default_context() if tls else None,
        )
        try:
            await client.connect()
            if target.username is not None:
                await client.login(target.username, target.password or "")
        except BaseException:
            client.close()
            raise
        return client

    def _put_back(self, client: aiosmtplib.SMTP) -> None:
        if client.is_connected:
            self._idle.append((client, time.monotonic()))
        else:
            client.close()
