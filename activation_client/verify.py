"""Checks of one signed answer, pure: the caller passes the bytes, the pinned keys and `now`.

The order (each check only runs on what the previous one vouched for):

1. the signature: `ed25519=<base64>` over the exact body bytes, by a pinned key; the key id
   (`X-Signature-Key-Id`, a license file's `Key-Id`) picks the key, and a key id that names no
   pinned key is refused (an answer without one is tried against every pinned key);
2. the body is a JSON object and names this server (`installation.fingerprint`);
3. online answers: the nonce is the one this request sent (an answer recorded earlier and
   replayed carries its own), and `issued_at` is within TOLERANCE of the local clock (5
   minutes: NTP-synchronised servers are within a second; a machine whose clock is off by
   more should be fixed before it is trusted with `valid_until`);
4. offline files: `"offline": true`, and `issued_at` not after `now` + TOLERANCE.

What the answer then says (`valid`, `code`, `valid_until`) is the product's decision.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

TOLERANCE = timedelta(minutes=5)


class Untrusted(Exception):
    """The answer cannot be trusted (forged, tampered, replayed, stale, another server's)."""


def key_id(raw_public_key: bytes) -> str:
    """A key's id as the server computes it: SHA-256 of the raw key, first 8 bytes, hex."""
    return hashlib.sha256(raw_public_key).digest()[:8].hex()


@dataclass(frozen=True, slots=True)
class PinnedKeys:
    """The public keys a product build trusts, by id."""

    by_id: Mapping[str, Ed25519PublicKey]

    @classmethod
    def from_base64(cls, keys: Iterable[str]) -> PinnedKeys:
        """From base64 raw 32-byte keys (`public_key` of `GET /v1/signing-keys`)."""
        pinned: dict[str, Ed25519PublicKey] = {}
        for text in keys:
            try:
                raw = base64.b64decode(text, validate=True)
                pinned[key_id(raw)] = Ed25519PublicKey.from_public_bytes(raw)
            except (binascii.Error, ValueError):
                raise ValueError(f"not a base64 Ed25519 public key: {text[:60]!r}") from None
        if not pinned:
            raise ValueError("at least one public key must be pinned")
        return cls(pinned)


def verify_signature(keys: PinnedKeys, body: bytes, signature: str, signed_by: str | None) -> str:
    """The id of the pinned key whose signature `signature` is over `body`; raises Untrusted."""
    scheme, _, encoded = signature.strip().partition("=")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if scheme != "ed25519" or len(raw) != 64:
        raise Untrusted("the signature is not ed25519=<base64 of 64 bytes>")
    if signed_by is not None and signed_by not in keys.by_id:
        raise Untrusted(f"signed with key {signed_by[:32]}, which this product does not pin")
    candidates = [signed_by] if signed_by is not None else list(keys.by_id)
    for candidate in candidates:
        try:
            keys.by_id[candidate].verify(raw, body)
        except InvalidSignature:
            continue
        return candidate
    raise Untrusted("the signature does not verify: the answer was altered or forged")


def answer_of(body: bytes, fingerprint: str | None) -> dict[str, Any]:
    """The signed body as a JSON object, checked to name `fingerprint` (when given)."""
    try:
        answer = json.loads(body)
    except ValueError:
        raise Untrusted("the signed body is not JSON") from None
    if not isinstance(answer, dict):
        raise Untrusted("the signed body is not a JSON object")
    if fingerprint is not None:
        installation = answer.get("installation")
        named = installation.get("fingerprint") if isinstance(installation, dict) else None
        if named != fingerprint:
            raise Untrusted(f"the answer is for server {str(named)[:64]!r}, not this one")
    return answer


def check_online(
    answer: Mapping[str, Any], nonce: str, now: datetime, tolerance: timedelta = TOLERANCE
) -> None:
    """An online answer is the answer to this request: its nonce, issued about now."""
    if answer.get("nonce") != nonce:
        raise Untrusted("the answer does not echo this request's nonce (a replayed answer?)")
    issued = moment(answer.get("issued_at"))
    if issued is None or abs(issued - now) > tolerance:
        raise Untrusted(
            f"issued_at {answer.get('issued_at')} is not within {tolerance} of the local clock"
        )


def check_offline(
    answer: Mapping[str, Any], now: datetime, tolerance: timedelta = TOLERANCE
) -> None:
    """An offline file says so, and was not issued in the future."""
    if answer.get("offline") is not True:
        raise Untrusted("this is not an offline license file")
    issued = moment(answer.get("issued_at"))
    if issued is None or issued > now + tolerance:
        raise Untrusted(f"issued_at {answer.get('issued_at')} is in the future")


def moment(value: object) -> datetime | None:
    """An ISO-8601 UTC time of the answer (`...Z`), or None."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None
