"""`ActivationClient.check()`: phone home, verify, retry, fall back; `verify_file()`: offline.

The decision is a `Verdict` (printed as JSON by the CLI), with the CLI's exit code:

- 0: `valid` is true (VALID, GRACE or OVERDUE), from the server, the stored answer, or a file;
- 1: a trusted answer says no (DISABLED, EXPIRED, ...), or the file is for another server or
  past its `valid_until`;
- 2: nothing trusted could be had: the server unreachable or refusing beyond `max_wait` with
  no stored answer still valid, an answer that failed verification, an unreadable file.
  `valid` is then false too: a product must not run on exit 2.

Outages: every verified answer is stored (state.py). When the server cannot be reached (or
keeps answering 429/5xx until `max_wait` is spent, or sends an answer that fails
verification), the stored answer decides while `valid_until` is ahead of the clock; a stored
refusal (no `valid_until`) keeps refusing. Time comes from the `Clock` given, so tests run a
product's week in a second; the CLI uses the real one.
"""

from __future__ import annotations

import http.client
import json
import random
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from activation_client import licensefile
from activation_client.backoff import Backoff, retry_after_seconds
from activation_client.state import AnswerStore, SignedAnswer
from activation_client.verify import (
    TOLERANCE,
    PinnedKeys,
    Untrusted,
    answer_of,
    check_offline,
    check_online,
    moment,
    verify_signature,
)

RETRIED = frozenset({408, 429, 500, 502, 503, 504})
MAX_ANSWER_BYTES = 64 * 1024


@dataclass(frozen=True)
class Verdict:
    decided: bool
    valid: bool
    source: str  # "server", "stored", "file" or "none"
    detail: str
    answer: Mapping[str, Any] | None = None
    key_id: str | None = None
    attempts: int = 0
    problem: str | None = None  # why the server's answer was not used, when it was not

    @property
    def exit_code(self) -> int:
        if not self.decided:
            return 2
        return 0 if self.valid else 1

    def to_json(self) -> dict[str, Any]:
        answer = self.answer or {}
        return {
            "valid": self.valid,
            "decided": self.decided,
            "code": answer.get("code"),
            "detail": self.detail,
            "source": self.source,
            "key_id": self.key_id,
            "issued_at": answer.get("issued_at"),
            "valid_until": answer.get("valid_until"),
            "attempts": self.attempts,
            "problem": self.problem,
            "answer": self.answer,
        }


class Clock(Protocol):
    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes


class Transport(Protocol):
    def post(self, url: str, body: bytes, timeout: float) -> Reply:
        """The server's reply; raises OSError when there is none."""
        ...


class UrllibTransport:
    def post(self, url: str, body: bytes, timeout: float) -> Reply:
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return Reply(
                    response.status, dict(response.headers), response.read(MAX_ANSWER_BYTES)
                )
        except urllib.error.HTTPError as error:
            with error:
                return Reply(error.code, dict(error.headers), error.read(MAX_ANSWER_BYTES))
        except http.client.HTTPException as error:  # a reply that is not HTTP: no reply
            raise OSError(f"not an HTTP answer: {error!r}") from error


@dataclass
class ActivationClient:
    server: str
    license_key: str
    fingerprint: str
    product: str
    version: str
    public_keys: PinnedKeys
    state_dir: Path | None = None
    hostname: str | None = None
    addons: Sequence[str] = ()
    max_wait: float = 30.0
    tolerance: timedelta = TOLERANCE
    backoff: Backoff = field(default_factory=Backoff)
    clock: Clock = field(default_factory=SystemClock)
    rng: random.Random = field(default_factory=random.SystemRandom)
    transport: Transport = field(default_factory=UrllibTransport)

    @property
    def answer_store(self) -> AnswerStore | None:
        if self.state_dir is None:
            return None
        return AnswerStore(self.state_dir, self.server, self.license_key, self.fingerprint)

    def check(self) -> Verdict:
        """Phone home (retrying within `max_wait`), verify, store; else the stored answer."""
        url = self.server.rstrip("/") + "/v1/activations"
        deadline = self.clock.monotonic() + self.max_wait
        attempts = 0
        while True:
            nonce = secrets.token_hex(16)  # fresh per request: a replay cannot echo it
            attempts += 1
            retry_after: float | None = None
            try:
                timeout = max(1.0, min(10.0, deadline - self.clock.monotonic()))
                reply = self.transport.post(url, self._request(nonce), timeout)
            except OSError as error:
                problem = f"the server cannot be reached: {error}"
            else:
                if reply.status == 200:
                    try:
                        return self._accept(reply, nonce, attempts)
                    except Untrusted as error:
                        return self._fallback(str(error), attempts)
                problem = f"the server answered {reply.status}{_problem_detail(reply.body)}"
                if reply.status not in RETRIED:
                    return self._fallback(problem, attempts)
                retry_after = retry_after_seconds(
                    _header(reply.headers, "Retry-After"), self.clock.now()
                )
            delay = self.backoff.delay(attempts - 1, retry_after, self.rng)
            if self.clock.monotonic() + delay > deadline:
                return self._fallback(problem, attempts)
            self.clock.sleep(delay)

    def _request(self, nonce: str) -> bytes:
        body: dict[str, Any] = {
            "license_key": self.license_key,
            "fingerprint": self.fingerprint,
            "product": self.product,
            "version": self.version,
            "nonce": nonce,
        }
        if self.hostname:
            body["hostname"] = self.hostname
        if self.addons:
            body["addons"] = list(self.addons)
        return json.dumps(body).encode()

    def _accept(self, reply: Reply, nonce: str, attempts: int) -> Verdict:
        signature = _header(reply.headers, "X-Signature") or ""
        signed = SignedAnswer(reply.body, signature, _header(reply.headers, "X-Signature-Key-Id"))
        used = verify_signature(self.public_keys, signed.body, signed.signature, signed.key_id)
        answer = answer_of(signed.body, self.fingerprint)
        check_online(answer, nonce, self.clock.now(), self.tolerance)
        store = self.answer_store
        if store is not None:
            store.save(signed)
        valid = answer.get("valid") is True
        return Verdict(True, valid, "server", str(answer.get("detail", "")), answer, used, attempts)

    def _fallback(self, problem: str, attempts: int) -> Verdict:
        """The stored answer decides while it is valid; otherwise nothing is decided."""
        store = self.answer_store
        stored = None if store is None else store.load()
        if stored is None:
            return Verdict(False, False, "none", problem, None, None, attempts, problem)
        try:
            used = verify_signature(self.public_keys, stored.body, stored.signature, stored.key_id)
            answer = answer_of(stored.body, self.fingerprint)
        except Untrusted as error:
            detail = f"{problem}; the stored answer is not usable: {error}"
            return Verdict(False, False, "none", detail, None, None, attempts, problem)
        if answer.get("valid") is not True:
            detail = "the last verified answer refused this server"
            return Verdict(True, False, "stored", detail, answer, used, attempts, problem)
        until = moment(answer.get("valid_until"))
        if until is None or self.clock.now() >= until:
            detail = f"{problem}; the last verified answer expired at {answer.get('valid_until')}"
            return Verdict(False, False, "none", detail, answer, used, attempts, problem)
        detail = f"offline: the last verified answer holds until {answer.get('valid_until')}"
        return Verdict(True, True, "stored", detail, answer, used, attempts, problem)


def verify_file(
    text: str,
    public_keys: PinnedKeys,
    fingerprint: str | None,
    now: datetime,
    tolerance: timedelta = TOLERANCE,
) -> Verdict:
    """The decision an offline license file carries, checked with the pinned keys alone."""
    try:
        parsed = licensefile.parse(text)
        used = verify_signature(public_keys, parsed.body, parsed.signature, parsed.key_id)
        answer = answer_of(parsed.body, None)
        check_offline(answer, now, tolerance)
    except (licensefile.LicenseFileError, Untrusted) as error:
        return Verdict(False, False, "none", str(error), problem=str(error))
    installation = answer.get("installation")
    named = installation.get("fingerprint") if isinstance(installation, dict) else None
    if fingerprint is not None and named != fingerprint:
        detail = f"the file is for server {str(named)[:64]!r}, not {fingerprint!r}"
        return Verdict(True, False, "file", detail, answer, used)
    until = moment(answer.get("valid_until"))
    if answer.get("valid") is not True or until is None:
        return Verdict(True, False, "file", str(answer.get("detail", "")), answer, used)
    if now >= until:
        detail = f"the file expired at {answer.get('valid_until')}"
        return Verdict(True, False, "file", detail, answer, used)
    return Verdict(True, True, "file", str(answer.get("detail", "")), answer, used)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def _problem_detail(body: bytes) -> str:
    try:
        detail = json.loads(body).get("detail")
    except (ValueError, AttributeError):
        return ""
    return f": {str(detail)[:200]}" if detail else ""
