"""Fraud-team webhook signed the Standard Webhooks way (SPEC §7).

Body: ``{"type": <template>, "timestamp": <created_at ISO-8601>, "data": <payload>}`` as JSON.
Headers: ``webhook-id`` (``msg_`` + a hash of the dedupe key: the same on every retry, so the
receiver drops duplicates), ``webhook-timestamp`` (unix seconds at send time) and
``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``.
Key: a secret starting ``whsec_`` is base64-decoded after the prefix (as the Standard Webhooks
spec says); any other secret is used as its UTF-8 bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping

import aiohttp
import orjson

from fraud.notify.model import Notification

DEFAULT_TIMEOUT = 10.0
TOLERANCE_SECONDS = 300


def webhook_id(dedupe_key: str) -> str:
    return "msg_" + hashlib.sha256(dedupe_key.encode()).hexdigest()[:32]


def signing_key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        return base64.b64decode(secret.removeprefix("whsec_"))
    return secret.encode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for one message."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    tolerance: int | None = TOLERANCE_SECONDS,
) -> bool:
    """True when one of the space-separated `v1,` signatures matches and the timestamp is
    within `tolerance` seconds of `now` (default: the system clock; `tolerance=None` skips
    the replay check). Header names are matched case-insensitively."""
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id = lowered.get("webhook-id")
    raw_timestamp = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not msg_id or not raw_timestamp or not signatures:
        return False
    try:
        timestamp = int(raw_timestamp)
    except ValueError:
        return False
    if tolerance is not None:
        current = time.time() if now is None else now
        if abs(current - timestamp) > tolerance:
            return False
    expected = sign(secret, msg_id, timestamp, body)
    # compare_digest refuses non-ASCII str (TypeError): such a candidate is simply not ours
    return any(
        candidate.isascii() and hmac.compare_digest(expected, candidate)
        for candidate in signatures.split()
    )


def body_of(notification: Notification) -> bytes:
    envelope = {
        "type": notification.template,
        "timestamp": notification.created_at.isoformat(),
        "data": notification.payload,
    }
    return orjson.dumps(envelope, option=orjson.OPT_SORT_KEYS)


class WebhookSender:
    def __init__(
        self,
        url: str,
        secret: str,
        session: aiohttp.ClientSession,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        signing_key(secret)  # a malformed whsec_ secret fails at start-up, not per message
        self._url = url
        self._secret = secret
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def send(self, notification: Notification) -> None:
        """Raises on a non-2xx answer, a connection error or the timeout. A redirect is a
        failed delivery too (retried later): the signed alert goes to the configured URL only,
        never where a receiver's answer points."""
        body = body_of(notification)
        msg_id = webhook_id(notification.dedupe_key)
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self._secret, msg_id, timestamp, body),
        }
        async with self._session.post(
            self._url, data=body, headers=headers, timeout=self._timeout, allow_redirects=False
        ) as response:
            if not 200 <= response.status < 300:
                detail = (await response.text(errors="replace"))[:200]
                raise WebhookError(f"HTTP {response.status} from webhook: {detail}")


class WebhookError(Exception):
    pass
