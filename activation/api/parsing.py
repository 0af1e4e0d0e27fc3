"""Parsing of the public API's request bodies: strict types, bounded sizes, fields named.

Every text field is checked as the API means it, before anything reaches Redis:

- `license_key`, `fingerprint`, `product`, each of `addons`, `version` and `nonce` are ASCII
  (patterns compiled with `re.ASCII`: `[0-9]`, never Unicode's other digits, so "١٧.1.7400" is
  not a version);
- `hostname` is what the server calls itself, shown to the fraud team: 1 to 253 letters,
  marks, digits, punctuation or symbols of any script (an internationalised name may come as
  Unicode or as punycode), and nothing else: no spaces, control or format characters (a
  bidirectional override could disguise it in the console), private-use, unassigned or
  surrogate code points;
- a string holding a lone surrogate (the JSON escape "\ud800" with no partner: not a
  character, and not encodable as UTF-8) or a NUL fails its field's check like any other
  wrong character: 400 naming the field. orjson refuses such JSON outright; the standard
  library's parser reads it again so that the answer can name the field.

Unknown extra fields are ignored (newer product builds may send more); the 8 KiB body limit
bounds them.
"""

from __future__ import annotations

import asyncio
import json
import re
import unicodedata
from typing import Any, NamedTuple

import orjson
from aiohttp import StreamReader, web
from aiohttp.web_protocol import RequestPayloadError

from activation.licensing.model import Version
from activation.web.problems import ProblemError, bad_field

MAX_BODY_BYTES = 8 * 1024
BODY_TIMEOUT_SECONDS = 5.0

# Matched with fullmatch: no anchors (`$` would also match before a final newline).
_KEY_RE = re.compile(r"[A-Za-z0-9]{5}(?:-[A-Za-z0-9]{5}){4}", re.ASCII)
_FINGERPRINT_RE = re.compile(r"[A-Za-z0-9._:+/=-]{1,128}", re.ASCII)
_PRODUCT_RE = re.compile(r"[a-z0-9_-]{1,64}", re.ASCII)
_ADDON_RE = re.compile(r"[a-z0-9_-]{1,64}", re.ASCII)
_VERSION_TEXT_RE = re.compile(r"[0-9]{1,6}\.[0-9]{1,6}\.[0-9]{1,9}", re.ASCII)
_NONCE_RE = re.compile(r"[\x21-\x7e]{1,128}", re.ASCII)  # visible ASCII
_HOSTNAME_ASCII_RE = re.compile(r"[A-Za-z0-9._-]{1,253}", re.ASCII)  # the usual case
MAX_HOSTNAME = 253
# Unicode general categories a host name may use: Letters, Marks, Numbers, Punctuation,
# Symbols. Not Z (separators), nor C (controls, format, surrogates, private use, unassigned).
_HOSTNAME_CATEGORIES = frozenset("LMNPS")
MAX_ADDONS = 32
_VERSIONS: dict[str, Version] = {}
_VERSIONS_LIMIT = 4096


class ActivationBody(NamedTuple):
    """A parsed activation request. Named tuples here and for the other per-request records
    (`ActivationRequest`, `Recorded`): as immutable as a frozen dataclass, and cheaper to
    build, which counts for records made on every request."""

    license_key: str
    fingerprint: str
    hostname: str
    product: str
    version: Version
    version_text: str
    addons: tuple[str, ...]
    nonce: str | None


class DeactivationBody(NamedTuple):
    license_key: str
    fingerprint: str


async def read_json_object(request: web.BaseRequest) -> dict[str, Any]:
    """415 unless JSON; 413 over 8 KiB; 400 unless the body is one JSON object."""
    # The exact header most clients send is accepted without aiohttp's full parse of it; any
    # other spelling, parameters included, gets that parse.
    if (
        request.headers.get("Content-Type") != "application/json"
        and request.content_type != "application/json"
    ):
        raise ProblemError(415, "send the body as application/json")
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise ProblemError(413, f"the body may be at most {MAX_BODY_BYTES} bytes")
    content = request.content
    try:
        raw = await content.read(MAX_BODY_BYTES + 1)
        if not content.at_eof():  # the body arrives in more than one piece
            raw = await _rest_of_body(content, raw)
    except (ConnectionError, RequestPayloadError):
        # The client is gone (or broke its chunked encoding): a client's doing, not a lost
        # dependency, which is what an OSError reaching web/problems.py would be taken for.
        raise ProblemError(400, "the body ended before it was complete") from None
    if len(raw) > MAX_BODY_BYTES:
        raise ProblemError(413, f"the body may be at most {MAX_BODY_BYTES} bytes")
    return json_object(raw)


def json_object(raw: bytes) -> dict[str, Any]:
    """400 unless `raw` is one JSON object."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = _lenient_json(raw)
    if not isinstance(data, dict):
        raise ProblemError(400, "the body must be a JSON object")
    return data


def _lenient_json(raw: bytes) -> Any:
    """What the standard library's parser reads from a body orjson refused: JSON with a lone
    surrogate escape, which orjson rejects as a whole, parses here, and the field's own check
    then refuses it by name. Anything the standard library refuses too is not JSON."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than it recurses
        raise ProblemError(400, "the body is not valid JSON") from None


async def _rest_of_body(content: StreamReader, first: bytes) -> bytes:
    """`first` and what follows of the body, up to one byte past the limit. `read(n)` returns
    what has arrived so far: a body in several TCP segments (over one MSS on a real network,
    or from a client that writes it in parts) comes in several reads. The wait is bounded, so
    a client that stops sending mid-body (slowloris) gets 408 instead of holding the
    connection."""
    parts, size = [first], len(first)
    try:
        async with asyncio.timeout(BODY_TIMEOUT_SECONDS):
            while size <= MAX_BODY_BYTES and not content.at_eof():
                part = await content.read(MAX_BODY_BYTES + 1 - size)
                parts.append(part)
                size += len(part)
    except TimeoutError:
        # Nothing more is read from this request: no lingering read of the rest (aiohttp
        # would spend another 10 s on it); the 408 closes the connection (web/problems.py).
        content.feed_eof()
        raise ProblemError(408, "the body did not arrive in time") from None
    return b"".join(parts)


def parse_activation(data: dict[str, Any]) -> ActivationBody:
    version_text = _matching(data, "version", _VERSION_TEXT_RE, "MAJOR.MINOR.BUILD in digits 0-9")
    return ActivationBody(
        _license_key(data),
        _fingerprint(data),
        _hostname(data),
        _matching(data, "product", _PRODUCT_RE, "1 to 64 of a-z 0-9 - _"),
        _version(version_text),
        version_text,
        _addons(data),
        None if data.get("nonce") is None else _matching(data, "nonce", _NONCE_RE, _NONCE),
    )


_NONCE = "1 to 128 visible ASCII characters (no spaces)"


def parse_deactivation(data: dict[str, Any]) -> DeactivationBody:
    return DeactivationBody(license_key=_license_key(data), fingerprint=_fingerprint(data))


def _license_key(data: dict[str, Any]) -> str:
    key = _matching(data, "license_key", _KEY_RE, "five groups of five letters A-Z or digits 0-9")
    return key.upper()


def _fingerprint(data: dict[str, Any]) -> str:
    return _matching(data, "fingerprint", _FINGERPRINT_RE, "1 to 128 of A-Z a-z 0-9 . _ : + / = -")


def _version(text: str) -> Version:
    """Parsed once per distinct version: a fleet runs a handful of builds."""
    version = _VERSIONS.get(text)
    if version is None:
        version = Version.parse(text)
        if len(_VERSIONS) >= _VERSIONS_LIMIT:
            _VERSIONS.clear()
        _VERSIONS[text] = version
    return version


def _hostname(data: dict[str, Any]) -> str:
    """The reported host name ("" when absent): see the module's docstring for what it may
    hold."""
    value = data.get("hostname")
    if value is None:
        return ""
    if type(value) is str and (
        _HOSTNAME_ASCII_RE.fullmatch(value)
        or (
            0 < len(value) <= MAX_HOSTNAME
            and all(unicodedata.category(c)[0] in _HOSTNAME_CATEGORIES for c in value)
        )
    ):
        return value
    if not isinstance(value, str):
        raise bad_field("hostname", "must be a string")
    if not value or len(value) > MAX_HOSTNAME:
        raise bad_field("hostname", f"must be 1 to {MAX_HOSTNAME} characters")
    raise bad_field(
        "hostname",
        "must be letters, digits, marks, punctuation or symbols: no spaces, control or format "
        "characters, lone surrogates, private-use or unassigned code points",
    )


def _matching(data: dict[str, Any], field: str, pattern: re.Pattern[str], what: str) -> str:
    """The value of `field` when `pattern` matches all of it (the pattern bounds length and
    characters), else 400 naming the field."""
    value = data.get(field)
    if type(value) is str and pattern.fullmatch(value):
        return value
    if value is None:
        raise bad_field(field, "is required")
    if not isinstance(value, str):
        raise bad_field(field, "must be a string")
    raise bad_field(field, f"must be {what}")


def _addons(data: dict[str, Any]) -> tuple[str, ...]:
    value = data.get("addons")
    if value is None:
        return ()
    if not isinstance(value, list):
        raise bad_field("addons", "must be a list of strings")
    if len(value) > MAX_ADDONS:
        raise bad_field("addons", f"may name at most {MAX_ADDONS} add-ons")
    for name in value:
        if not isinstance(name, str) or not _ADDON_RE.fullmatch(name):
            raise bad_field("addons", "each add-on must be 1 to 64 of a-z 0-9 - _")
    return tuple(value)
