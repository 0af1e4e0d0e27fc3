"""Bytes no well-behaved client sends, on the wire (SPEC §9 Bad input): header values and
bodies that are not UTF-8, percent-escapes of invalid UTF-8, unknown charsets, broken
multipart. Each gets its 4xx or its normal answer, never a 5xx."""

from __future__ import annotations

import orjson
import pytest

from activation.api import parsing as api_parsing
from activation.runtime import Resources
from fraud.cli import health_app
from fraud.escalation import DEFAULT_LADDER
from fraud.worker import Worker
from metrics import WorkerMetrics
from tests.integration.helpers import activation_body, raw_exchange

AUTH = b"Authorization: Bearer TOKEN"  # replaced by the bootstrap token
FORM = b"Content-Type: application/x-www-form-urlencoded"


def request(method: bytes, target: bytes, *headers: bytes, body: bytes = b"") -> bytes:
    lines = [b"%s %s HTTP/1.1" % (method, target), b"Host: x", b"Connection: close", *headers]
    if body:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


# (what, the admin port (else the public one), the request, the status it must get)
CASES = [
    (
        "token not UTF-8",
        True,
        request(b"GET", b"/admin/v1/audit", b"Authorization: Bearer \xff\xfe"),
        401,
    ),
    ("scheme not UTF-8", True, request(b"GET", b"/admin/v1/audit", b"Authorization: \xff"), 401),
    (
        "session cookie not UTF-8",
        True,
        request(b"GET", b"/console/", b"Cookie: console_session=\xff\xfe"),
        303,
    ),
    ("cookie name not UTF-8", True, request(b"GET", b"/console/", b"Cookie: \xff=\xff"), 303),
    ("key escape not UTF-8", True, request(b"GET", b"/admin/v1/licenses/%FF", AUTH), 404),
    ("id escape not UTF-8", True, request(b"GET", b"/admin/v1/customers/%FF", AUTH), 404),
    ("query escape not UTF-8", True, request(b"GET", b"/admin/v1/cases?q=%FF", AUTH), 200),
    ("audit target not UTF-8", True, request(b"GET", b"/admin/v1/audit?target=%FF", AUTH), 200),
    ("raw query byte", True, request(b"GET", b"/admin/v1/cases?q=\xff", AUTH), 400),
    ("product not UTF-8", True, request(b"GET", b"/admin/v1/releases?product=%FF", AUTH), 200),
    (
        "JSON body not UTF-8",
        True,
        request(
            b"POST",
            b"/admin/v1/customers",
            AUTH,
            b"Content-Type: application/json",
            body=b'"\xff"}',
        ),
        400,
    ),
    ("login form escape", True, request(b"POST", b"/console/login", FORM, body=b"token=%FF"), 403),
    (
        "form escape not UTF-8",
        True,
        request(b"POST", b"/console/logout", FORM, body=b"csrf=%FF"),
        403,
    ),
    (
        "form bytes not UTF-8",
        True,
        request(b"POST", b"/console/logout", FORM, body=b"csrf=\xff\xfe"),
        400,
    ),
    (
        "unknown form charset",
        True,
        request(b"POST", b"/console/logout", FORM + b"; charset=latin-9000", body=b"csrf=x"),
        400,
    ),
    (
        "broken multipart",
        True,
        request(
            b"POST",
            b"/console/logout",
            b"Content-Type: multipart/form-data; boundary=zz",
            body=b"--zz\r\nxx\r\n",
        ),
        415,
    ),
    ("path byte not UTF-8", False, request(b"GET", b"/v1/\xff"), 400),
    ("expectation not UTF-8", False, request(b"POST", b"/v1/activations", b"Expect: \xff"), 417),
    (
        "admin expectation",
        True,
        request(b"POST", b"/admin/v1/customers", AUTH, b"Expect: \xff"),
        417,
    ),
    ("path escape not UTF-8", False, request(b"GET", b"/v1/%FF"), 404),
    (
        "charset not UTF-8",
        False,
        request(
            b"POST", b"/v1/activations", b"Content-Type: application/json; charset=\xff", body=b"{}"
        ),
        400,
    ),
    (
        "JSON string not UTF-8",
        False,
        request(b"POST", b"/v1/activations", b"Content-Type: application/json", body=b'"\xff"'),
        400,
    ),
]


@pytest.mark.parametrize(("what", "admin", "raw", "status"), CASES, ids=[c[0] for c in CASES])
async def test_bytes_no_client_should_send_get_a_4xx(
    resources: Resources,
    admin_headers: dict[str, str],
    what: str,
    admin: bool,
    raw: bytes,
    status: int,
) -> None:
    token = admin_headers["Authorization"].removeprefix("Bearer ").encode()
    answer = await raw_exchange(resources, raw.replace(b"TOKEN", token), admin=admin)
    assert int(answer.split(b" ", 2)[1]) == status, answer[:400]


async def test_admin_routes_still_answer_100_continue(
    resources: Resources, admin_headers: dict[str, str]
) -> None:
    """Every admin route has the project's expect handler (web/expect.py): 100, then the answer."""
    body = b'{"name": "Initech", "email": "it@initech.example"}'
    raw = request(
        b"POST",
        b"/admin/v1/customers",
        b"Authorization: " + admin_headers["Authorization"].encode(),
        b"Content-Type: application/json",
        b"Expect: 100-continue",
        body=body,
    )
    answer = await raw_exchange(resources, raw, admin=True)
    assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\n"), answer


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (request(b"GET", b"/healthz"), 200),
        (request(b"GET", b"/metrics"), 200),
        (request(b"GET", b"/healthz", b"Expect: \xff"), 417),
        (request(b"BREW", b"/healthz"), 400),
        (request(b"GET", b"/%FF"), 404),
        (request(b"POST", b"/healthz"), 405),
    ],
    ids=["health", "metrics", "expectation not UTF-8", "unknown method", "escape", "method"],
)
async def test_the_worker_health_port_answers_every_request_without_a_5xx(
    resources: Resources, raw: bytes, status: int
) -> None:
    worker = Worker(resources, DEFAULT_LADDER, {}, WorkerMetrics())
    await worker.run_once()  # a pass just now: healthy
    answer = await raw_exchange(resources, raw, app=health_app(worker))
    assert int(answer.split(b" ", 2)[1]) == status, answer[:400]


@pytest.mark.parametrize(
    ("path", "split_at"),
    [("/v1/activations", 40), ("/v1/activations", 1), ("/admin/v1/customers", 30)],
)
async def test_a_body_in_several_segments_is_read_whole(
    resources: Resources, admin_headers: dict[str, str], path: str, split_at: int
) -> None:
    """A body that arrives in more than one TCP segment (any body over one MSS on a real
    network, 1,448 bytes; a slow or fragmenting client even below that) is read to its end,
    not cut at the first segment."""
    admin = path.startswith("/admin")
    body = orjson.dumps(
        {"name": "Segmented", "email": "s@example.com", "phone": "+1 555 0100"}
        if admin
        else activation_body("ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ", "segmented-server")
    )
    head = _json_post(path, body, admin_headers)[: -len(body)]
    answer = await raw_exchange(resources, [head + body[:split_at], body[split_at:]], admin=admin)
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line in (b"HTTP/1.1 200 OK", b"HTTP/1.1 201 Created"), answer[:400]


def _json_post(path: str, body: bytes, admin_headers: dict[str, str] | None = None) -> bytes:
    """A POST of the JSON `body` to `path`, with the admin token on an admin path."""
    token = []
    if path.startswith("/admin") and admin_headers is not None:
        token = [f"Authorization: {admin_headers['Authorization']}".encode()]
    return request(b"POST", path.encode(), b"Content-Type: application/json", *token, body=body)


async def test_a_body_that_stops_arriving_is_408(
    resources: Resources, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slowloris: headers and part of the body, then nothing; the connection is answered 408
    and closed after the body timeout instead of being held."""
    monkeypatch.setattr(api_parsing, "BODY_TIMEOUT_SECONDS", 0.3)
    body = orjson.dumps(activation_body("ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ"))
    answer = await raw_exchange(resources, _json_post("/v1/activations", body)[:-20])
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:300]
    assert b"application/problem+json" in answer


async def test_a_chunked_body_over_the_limit_in_parts_is_413(resources: Resources) -> None:
    """No Content-Length to refuse it up front: the parts are counted as they come."""
    chunk = b"x" * 3000
    encoded = b"%x\r\n%s\r\n" % (len(chunk), chunk)
    head = b"\r\n".join(
        [
            b"POST /v1/activations HTTP/1.1",
            b"Host: x",
            b"Connection: close",
            b"Content-Type: application/json",
            b"Transfer-Encoding: chunked",
        ]
    )
    answer = await raw_exchange(
        resources, [head + b"\r\n\r\n" + encoded, encoded, encoded, encoded + b"0\r\n\r\n"]
    )
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:300]


@pytest.mark.parametrize("admin", [False, True], ids=["public", "admin"])
@pytest.mark.parametrize("sent", [0, 20], ids=["after the headers", "mid-body"])
async def test_a_client_gone_before_its_body_is_no_outage(
    resources: Resources,
    caplog: pytest.LogCaptureFixture,
    admin_headers: dict[str, str],
    sent: int,
    admin: bool,
) -> None:
    """A client that closes its side before the body is complete: nobody is left to answer, but
    it must not count as a dependency outage (the lost connection is an OSError, which the
    error mapping would take for PostgreSQL's) nor be logged as a failure."""
    body = orjson.dumps(activation_body("ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ"))
    path = "/admin/v1/customers" if admin else "/v1/activations"
    head = _json_post(path, body, admin_headers)[: -len(body)]
    outages = resources.metrics.dependency_errors.labels("postgresql")._value.get()
    await raw_exchange(resources, head + body[:sent], admin=admin, half_close=True)
    assert resources.metrics.dependency_errors.labels("postgresql")._value.get() == outages
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text
