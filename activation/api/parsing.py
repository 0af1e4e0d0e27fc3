"""Parsing of the public API's request bodies: strict types, bounded sizes, fields named.

Unknown extra fields are ignored (newer product builds may send more); the 8 KiB body limit
bounds them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from activation.api.problems import ProblemError, bad_field
from activation.licensing.model import Version

MAX_BODY_BYTES = 8 * 1024

_KEY_RE = re.compile(r"^[A-Za-z0-9]{5}(?:-[A-Za-z0-9]{5}){4}$")
_FINGERPRINT_RE = re.compile(r"^[A-Za-z0-9._:+/=-]{1,128}$")
_PRODUCT_RE = re.compile(r"^[a-z0-9_-]{1,64}$")
_ADDON_RE = re.compile(r"^[a-z0-9_-]{1,64}$")
_PRINTABLE_RE = re.compile(r"^[^\x00-\x1f\x7f]*$")
MAX_ADDONS = 32


@dataclass(frozen=True, slots=True)
class ActivationBody:
    license_key: str
    fingerprint: str
    hostname: str
    product: str
    version: Version
    version_text: str
    addons: tuple[str, ...]
    nonce: str | None


@dataclass(frozen=True, slots=True)
class DeactivationBody:
    license_key: str
    fingerprint: str


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """415 unless JSON; 413 over 8 KiB; 400 unless the body is one JSON object."""
    if request.content_type != "application/json":
        raise ProblemError(415, "send the body as application/json")
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise ProblemError(413, f"the body may be at most {MAX_BODY_BYTES} bytes")
    raw = await request.content.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise ProblemError(413, f"the body may be at most {MAX_BODY_BYTES} bytes")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProblemError(400, "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ProblemError(400, "the body must be a JSON object")
    return data


def parse_activation(data: dict[str, Any]) -> ActivationBody:
    version_text = _text(data, "version", maximum=32)
    try:
        version = Version.parse(version_text)
    except ValueError:
        raise bad_field("version", "must look like MAJOR.MINOR.BUILD") from None
    return ActivationBody(
        license_key=_license_key(data),
        fingerprint=_fingerprint(data),
        hostname=_optional_text(data, "hostname", maximum=253) or "",
        product=_matching(data, "product", _PRODUCT_RE, "lower-case letters, digits, - or _"),
        version=version,
        version_text=version_text,
        addons=_addons(data),
        nonce=_optional_text(data, "nonce", maximum=128),
    )


def parse_deactivation(data: dict[str, Any]) -> DeactivationBody:
    return DeactivationBody(license_key=_license_key(data), fingerprint=_fingerprint(data))


def _license_key(data: dict[str, Any]) -> str:
    return _matching(data, "license_key", _KEY_RE, "five groups of five letters or digits").upper()


def _fingerprint(data: dict[str, Any]) -> str:
    return _matching(data, "fingerprint", _FINGERPRINT_RE, "1 to 128 of A-Z a-z 0-9 . _ : + / = -")


def _text(data: dict[str, Any], field: str, *, maximum: int) -> str:
    value = data.get(field)
    if value is None:
        raise bad_field(field, "is required")
    if not isinstance(value, str):
        raise bad_field(field, "must be a string")
    if not value or len(value) > maximum:
        raise bad_field(field, f"must be 1 to {maximum} characters")
    if not _PRINTABLE_RE.match(value):
        raise bad_field(field, "must not contain control characters")
    return value


def _optional_text(data: dict[str, Any], field: str, *, maximum: int) -> str | None:
    if data.get(field) is None:
        return None
    return _text(data, field, maximum=maximum)


def _matching(data: dict[str, Any], field: str, pattern: re.Pattern[str], what: str) -> str:
    value = _text(data, field, maximum=128)
    if not pattern.match(value):
        raise bad_field(field, f"must be {what}")
    return value


def _addons(data: dict[str, Any]) -> tuple[str, ...]:
    value = data.get("addons")
    if value is None:
        return ()
    if not isinstance(value, list):
        raise bad_field("addons", "must be a list of strings")
    if len(value) > MAX_ADDONS:
        raise bad_field("addons", f"may name at most {MAX_ADDONS} add-ons")
    for name in value:
        if not isinstance(name, str) or not _ADDON_RE.match(name):
            raise bad_field("addons", "each add-on must be lower-case letters, digits, - or _")
    return tuple(value)
