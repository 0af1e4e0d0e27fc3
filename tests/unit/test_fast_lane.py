"""Which requests the fast lane takes (activation/api/fastlane.py): exactly one well-formed
activation request, whole; everything else is aiohttp's (None) or waits for more bytes."""

from __future__ import annotations

import pytest

from activation.api import fastlane
from activation.api.fastlane import INCOMPLETE, MAX_HEAD_BYTES, lane_body

BODY = b'{"license_key":"AAAAA-BBBBB-CCCCC-DDDDD-EEEEE"}'
LINE = b"POST /v1/activations HTTP/1.1\r\n"


def request(*fields: bytes, line: bytes = LINE, body: bytes = BODY, length: bool = True) -> bytes:
    head = [b"Host: x", b"Content-Type: application/json", *fields]
    if length:
        head.append(b"Content-Length: %d" % len(body))
    return line + b"".join(field + b"\r\n" for field in head) + b"\r\n" + body


TAKEN = [
    ("plain", request()),
    ("keep-alive asked", request(b"Connection: keep-alive")),
    ("keep-alive any case, spaces", request(b"connection:   Keep-Alive  ")),
    ("user agent and accept", request(b"User-Agent: mail/16.3", b"Accept: */*")),
    ("header names in any case", request(b"CONTENT-LENGTH-X: 1")),
    ("empty header value", request(b"X-Empty:")),
]


@pytest.mark.parametrize(("what", "raw"), TAKEN, ids=[case[0] for case in TAKEN])
def test_the_lane_takes_one_whole_well_formed_activation(what: str, raw: bytes) -> None:
    assert lane_body(raw) == BODY


def test_the_lane_takes_an_exact_lower_case_content_type_field_name() -> None:
    raw = LINE + b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        len(BODY),
        BODY,
    )
    assert lane_body(raw) == BODY


NOT_TAKEN = [
    ("another path", request(line=b"POST /v1/deactivations HTTP/1.1\r\n")),
    ("a query string", request(line=b"POST /v1/activations?x=1 HTTP/1.1\r\n")),
    ("another method", request(line=b"PUT /v1/activations HTTP/1.1\r\n")),
    ("HTTP/1.0", request(line=b"POST /v1/activations HTTP/1.0\r\n")),
    ("no Content-Length", request(length=False)),
    ("two Content-Lengths", request(b"Content-Length: 47")),
    ("Content-Length not digits", request(b"Content-Length: +47", length=False)),
    ("Content-Length too long a number", request(b"Content-Length: 000047", length=False)),
    ("body over 8 KiB", request(body=b" " * 8193)),
    ("Content-Type with a charset", request(b"Content-Type: application/json; charset=utf-8")),
    ("two Content-Types", request(b"Content-Type: application/json")),
    ("chunked", request(b"Transfer-Encoding: chunked")),
    ("Expect", request(b"Expect: 100-continue")),
    ("gzip body", request(b"Content-Encoding: gzip")),
    ("Upgrade", request(b"Upgrade: websocket")),
    ("Connection: close", request(b"Connection: close")),
    ("Connection: upgrade", request(b"Connection: Upgrade")),
    ("TE", request(b"TE: trailers")),
    ("Trailer", request(b"Trailer: X-Sum")),
    ("space before the colon", request(b"X-Odd : 1")),
    ("obs-fold", request(b"X-Folded: a\r\n  b")),
    ("byte above 0x7e", request(b"X-Name: caf\xc3\xa9")),
    ("control byte", request(b"X-Name: a\x01b")),
    ("bare LF", request(b"X-Name: a\nb")),
    ("no header fields", LINE + b"\r\n" + BODY),
    ("body still arriving", request()[:-1]),
    ("a second request after it", request() + request()),
    ("head too long", request(b"X-Big: " + b"a" * MAX_HEAD_BYTES)),
]


@pytest.mark.parametrize(("what", "raw"), NOT_TAKEN, ids=[case[0] for case in NOT_TAKEN])
def test_everything_else_is_left_to_aiohttp(what: str, raw: bytes) -> None:
    assert lane_body(raw) is None


WAITING = [
    ("first bytes of the request line", b"PO"),
    ("the request line", LINE),
    ("part of the head", request()[:60]),
]


@pytest.mark.parametrize(("what", "raw"), WAITING, ids=[case[0] for case in WAITING])
def test_a_head_still_arriving_waits_for_more(what: str, raw: bytes) -> None:
    assert lane_body(raw) is INCOMPLETE


def test_a_head_that_never_ends_is_left_to_aiohttp() -> None:
    assert lane_body(LINE + b"X-Big: " + b"a" * MAX_HEAD_BYTES) is None
    assert lane_body(b"GET / HTTP/1.1\r\n") is None


def test_remembered_heads_answer_as_the_first_look_did() -> None:
    """Heads are remembered (fastlane._HEADS): every case above answers the same when its
    head is known, and a known head still needs exactly its Content-Length of body."""
    fastlane._HEADS.clear()
    for _, raw in [*TAKEN, *NOT_TAKEN]:
        first = lane_body(raw)
        assert lane_body(raw) == first
    for _, raw in TAKEN:
        assert lane_body(raw + b"x") is None  # more than Content-Length: pipelined
    assert fastlane._HEADS


def test_the_memory_of_heads_is_bounded() -> None:
    fastlane._HEADS.clear()
    for n in range(fastlane._HEAD_MEMO_LIMIT + 10):
        assert lane_body(request(b"X-Request: %d" % n)) == BODY
    assert len(fastlane._HEADS) <= fastlane._HEAD_MEMO_LIMIT
    assert lane_body(request(b"X-Long: " + b"a" * 600)) == BODY
    assert all(len(head) <= fastlane._HEAD_MEMO_BYTES for head in fastlane._HEADS)
