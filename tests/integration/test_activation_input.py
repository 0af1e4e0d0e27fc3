"""Bad input of every class gets a 4xx problem JSON and stores nothing (SPEC §5, §9)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import aiohttp
import orjson
import pytest

from activation.runtime import Resources
from tests.integration.helpers import (
    HOSTILE_VALUES,
    WRONG_TYPES,
    Client,
    activation_body,
    create_license,
    raw_exchange,
)

GOOD_KEY = "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE"


def _body(**changes: Any) -> bytes:
    body = activation_body(GOOD_KEY)
    for field, value in changes.items():
        if value is _MISSING:
            body.pop(field)
        else:
            body[field] = value
    return orjson.dumps(body)


_MISSING = object()

BAD_BODIES: list[tuple[str, bytes, str, int, str | None]] = [
    ("malformed JSON", b'{"license_key": ', "application/json", 400, None),
    ("not an object", b"[1, 2, 3]", "application/json", 400, None),
    ("empty body", b"", "application/json", 400, None),
    ("wrong content type", _body(), "text/plain", 415, None),
    ("form encoded", b"license_key=x", "application/x-www-form-urlencoded", 415, None),
    ("missing key", _body(license_key=_MISSING), "application/json", 400, "license_key"),
    ("key of wrong type", _body(license_key=12345), "application/json", 400, "license_key"),
    ("malformed key", _body(license_key="ABC"), "application/json", 400, "license_key"),
    ("missing fingerprint", _body(fingerprint=_MISSING), "application/json", 400, "fingerprint"),
    ("fingerprint too long", _body(fingerprint="f" * 129), "application/json", 400, "fingerprint"),
    ("fingerprint with spaces", _body(fingerprint="a b"), "application/json", 400, "fingerprint"),
    ("missing product", _body(product=_MISSING), "application/json", 400, "product"),
    ("product is a list", _body(product=["x"]), "application/json", 400, "product"),
    ("missing version", _body(version=_MISSING), "application/json", 400, "version"),
    ("malformed version", _body(version="16.3"), "application/json", 400, "version"),
    ("version is a number", _body(version=16.3), "application/json", 400, "version"),
    ("hostname with a tab", _body(hostname="a\tb"), "application/json", 400, "hostname"),
    ("hostname too long", _body(hostname="h" * 254), "application/json", 400, "hostname"),
    ("addons not a list", _body(addons="eas"), "application/json", 400, "addons"),
    ("addon of wrong type", _body(addons=[1]), "application/json", 400, "addons"),
    ("addon with a newline", _body(addons=["eas\n"]), "application/json", 400, "addons"),
    ("version with a newline", _body(version="16.3.6989\n"), "application/json", 400, "version"),
    (
        "key with a newline",
        _body(license_key=GOOD_KEY + "\n"),
        "application/json",
        400,
        "license_key",
    ),
    ("too many addons", _body(addons=["a"] * 33), "application/json", 400, "addons"),
    ("nonce is an object", _body(nonce={"a": 1}), "application/json", 400, "nonce"),
    ("nonce with a space", _body(nonce="c0ffee 42"), "application/json", 400, "nonce"),
    ("version in other digits", _body(version="١٧.1.7400"), "application/json", 400, "version"),
    ("hostname with a space", _body(hostname="mail 1"), "application/json", 400, "hostname"),
    ("hostname bidi override", _body(hostname="\u202eliam"), "application/json", 400, "hostname"),
    ("body over 8 KiB", _body(padding="x" * 9000), "application/json", 413, None),
]


@pytest.mark.parametrize(
    ("case", "raw", "content_type", "status", "field"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES]
)
async def test_bad_activation_input_is_a_problem_and_stores_nothing(
    public_client: Client,
    admin_client: Client,
    admin_headers: dict[str, str],
    resources: Resources,
    case: str,
    raw: bytes,
    content_type: str,
    status: int,
    field: str | None,
) -> None:
    await create_license(admin_client, admin_headers, key=GOOD_KEY)
    response = await public_client.post(
        "/v1/activations", data=raw, headers={"Content-Type": content_type}
    )
    assert response.status == status, await response.text()
    assert response.content_type == "application/problem+json"
    problem = await response.json(content_type=None)
    assert problem["status"] == status
    assert problem["detail"]
    if field is not None:
        assert problem["field"] == field
    assert await resources.store.installations(GOOD_KEY) == []
    streams = resources.layout.streams()
    assert sum([await resources.redis.xlen(stream) for stream in streams]) == 0


async def test_chunked_oversized_body_is_413(public_client: Client) -> None:
    async def chunks() -> Any:
        for _ in range(20):
            yield b"x" * 1024

    response = await public_client.post(
        "/v1/activations", data=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status == 413
    assert response.content_type == "application/problem+json"


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        ("GET", "/v1/activations", 405, "POST"),
        ("POST", "/v1/nothing-here", 404, None),
        ("PUT", "/healthz", 405, "GET,HEAD"),
        ("DELETE", "/v1/signing-key", 405, "GET,HEAD"),
        ("GET", "/", 404, None),
    ],
)
async def test_unknown_routes_and_methods_are_problems(
    public_client: Client, method: str, path: str, status: int, allow: str | None
) -> None:
    response = await public_client.request(method, path)
    assert response.status == status
    assert response.content_type == "application/problem+json"
    assert response.headers.get("Allow") == allow


async def test_expect_100_continue_is_answered(public_client: Client) -> None:
    response = await public_client.post(
        "/v1/activations",
        json=activation_body(GOOD_KEY),
        expect100=True,
        timeout=aiohttp.ClientTimeout(total=5),  # without the 100 the client would wait
    )
    assert response.status == 200
    response = await public_client.post(
        "/v1/activations", json=activation_body(GOOD_KEY), headers={"Expect": "something-else"}
    )
    assert response.status == 417
    assert response.content_type == "application/problem+json"


async def test_bad_deactivation_input_is_a_problem(public_client: Client) -> None:
    response = await public_client.post("/v1/deactivations", json={"license_key": GOOD_KEY})
    assert response.status == 400
    assert (await response.json(content_type=None))["field"] == "fingerprint"
    response = await public_client.post(
        "/v1/deactivations", json={"license_key": GOOD_KEY, "fingerprint": "server-a"}
    )
    assert response.status == 404


async def test_no_field_value_yields_a_server_error(
    public_client: Client, admin_client: Client, admin_headers: dict[str, str]
) -> None:
    """Every field of both public bodies, given each hostile value or a value of every other
    JSON type, gets an answer or a 4xx problem (SPEC §9 Bad input)."""
    await create_license(admin_client, admin_headers, key=GOOD_KEY)
    statuses: Counter[int] = Counter()
    failures = []
    for path, valid in (
        ("/v1/activations", activation_body(GOOD_KEY)),
        ("/v1/deactivations", {"license_key": GOOD_KEY, "fingerprint": "server-a"}),
    ):
        for field in (*valid, "unknown"):
            for value in (*HOSTILE_VALUES, *WRONG_TYPES):
                response = await public_client.post(path, json={**valid, field: value})
                statuses[response.status] += 1
                if response.status >= 500:
                    failures.append((path, field, str(value)[:20], response.status))
    assert failures == []
    assert statuses[400] > 150 and statuses[200] > 10, statuses


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/json;",
    ],
)
async def test_every_spelling_of_json_is_accepted(
    public_client: Client, admin_client: Client, admin_headers: dict[str, str], content_type: str
) -> None:
    """The exact header takes a fast path (parsing.py); every other spelling the full parse."""
    await create_license(admin_client, admin_headers, key=GOOD_KEY)
    response = await public_client.post(
        "/v1/activations", data=_body(), headers={"Content-Type": content_type}
    )
    assert response.status == 200, await response.text()
    assert (await response.json())["code"] == "VALID"


@pytest.mark.parametrize("content_type", ["application/jsonx", "text/json", "application/json5"])
async def test_near_spellings_of_json_are_415(public_client: Client, content_type: str) -> None:
    response = await public_client.post(
        "/v1/activations", data=_body(), headers={"Content-Type": content_type}
    )
    assert response.status == 415


@pytest.mark.parametrize(
    "raw",
    [
        b"BREW /v1/activations HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /v1/activations HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        b"POST /v1/activations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GARBAGE\r\n\r\n",
    ],
    ids=["unknown method", "malformed header", "bad chunk", "no request line"],
)
@pytest.mark.parametrize("admin", [False, True], ids=["public", "admin"])
async def test_unparseable_http_is_a_problem_and_closes(
    resources: Resources, raw: bytes, admin: bool
) -> None:
    answer = await raw_exchange(resources, raw, admin=admin)
    head, _, body = answer.partition(b"\r\n\r\n")  # read() returned: the server closed
    assert head.split(b" ", 2)[1] == b"400", answer
    assert b"Content-Type: application/problem+json" in head
    problem = orjson.loads(body)
    assert problem["status"] == 400
    assert problem["detail"] and "\n" not in problem["detail"]


async def test_admin_app_behind_the_problem_runner_still_routes_and_authenticates(
    resources: Resources, admin_headers: dict[str, str]
) -> None:
    """The runner swaps only the server class: routing, middlewares and auth are the app's."""
    request = b"GET /admin/v1/audit HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\n"
    refused = await raw_exchange(resources, request % b"", admin=True)
    head, _, body = refused.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == b"401", refused
    assert orjson.loads(body)["status"] == 401
    token = b"Authorization: %s\r\n" % admin_headers["Authorization"].encode()
    allowed = await raw_exchange(resources, request % token, admin=True)
    assert allowed.split(b" ", 2)[1] == b"200", allowed
