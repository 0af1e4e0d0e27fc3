"""No request, however hostile, disturbs the answers to other clients (SPEC §5, §9 "Bad input").

Hostile values go into every text field of the public API's bodies — digits of other scripts
("١٧.1.7400"), astral characters, a lone surrogate as the JSON escape "\\ud800" (and as the
invalid UTF-8 bytes it would encode to), NUL, bidi overrides, 8 KiB of multi-byte text — while
200 normal activations run concurrently on the same process and its one Redis connection. Every
normal activation answers 200 with its own decision; every hostile request 4xx (or a 200
decision when the value is acceptable, e.g. a Unicode host name), never 5xx.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import orjson

from tests.integration.helpers import Client, activation_body, create_customer, create_license

NORMAL = 200
ROUNDS = 3  # the hostile set is sent this many times, interleaved with the normal ones

HOSTILE_TEXTS = (
    "١٧.1.7400",  # Arabic-Indic digits: \d matches them, RESP lengths in characters break
    "17.1.７４００",  # fullwidth digits
    "\U0001f600\U00010348",  # astral characters (4 UTF-8 bytes each)
    "\ud800",  # a lone high surrogate (sent as the JSON escape)
    "x\udfffy",  # a lone low surrogate amid text
    "a\x00b",  # NUL
    "\x00",
    "\u202eevil",  # a bidi override
    "é" * 4096,  # 8 KiB of two-byte text (the body goes over 8 KiB: 413)
    "\U0001f600" * 1500,  # 6 KiB of four-byte text (under the body limit)
    "日本語" * 300,  # ≈ 2.7 KiB of three-byte text
)
ACTIVATION_FIELDS = ("license_key", "fingerprint", "hostname", "product", "version", "nonce")
DEACTIVATION_FIELDS = ("license_key", "fingerprint")


def _encodings(body: dict[str, Any]) -> list[bytes]:
    """The body as a product might send it: ASCII JSON with \\u escapes (a lone surrogate
    stays an escape), and raw UTF-8 (a lone surrogate becomes invalid UTF-8 bytes)."""
    escaped = json.dumps(body).encode()
    raw = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return [escaped, raw]


def _hostile_requests(key: str) -> list[tuple[str, str, bytes]]:
    """(path, what, body) for every hostile value in every field of both bodies."""
    requests: list[tuple[str, str, bytes]] = []
    for text in HOSTILE_TEXTS:
        label = ascii(text[:12])
        for field in ACTIVATION_FIELDS:
            body = activation_body(key, "hostile-server")
            body[field] = text
            requests += [("/v1/activations", f"{field}={label}", raw) for raw in _encodings(body)]
        for addons in ([text], ["eas", text], text):
            body = activation_body(key, "hostile-server", addons=addons)
            requests += [("/v1/activations", f"addons={label}", raw) for raw in _encodings(body)]
        for field in DEACTIVATION_FIELDS:
            body = {"license_key": key, "fingerprint": "hostile-server", field: text}
            requests += [("/v1/deactivations", f"{field}={label}", raw) for raw in _encodings(body)]
    return requests


async def _post(public: Client, path: str, raw: bytes) -> tuple[int, bytes]:
    response = await public.post(path, data=raw, headers={"Content-Type": "application/json"})
    return response.status, await response.read()


async def test_hostile_values_in_every_field_never_disturb_concurrent_activations(
    public_client: Client, admin_client: Client, admin_headers: dict[str, str]
) -> None:
    customer = await create_customer(admin_client, admin_headers)
    keys = [
        str((await create_license(admin_client, admin_headers, customer_id=customer))["key"])
        for _ in range(NORMAL + 1)
    ]
    hostile_key, normal_keys = keys[0], keys[1:]
    hostile = _hostile_requests(hostile_key) * ROUNDS

    async def normal(number: int) -> tuple[int, dict[str, Any] | bytes]:
        body = activation_body(normal_keys[number], f"server-{number}", nonce=f"nonce-{number}")
        status, raw = await _post(public_client, "/v1/activations", orjson.dumps(body))
        return status, orjson.loads(raw) if status == 200 else raw

    async def attack(path: str, raw: bytes) -> int:
        status, _ = await _post(public_client, path, raw)
        return status

    # Interleaved: a hostile request is in flight beside the normal ones all along.
    stride = max(1, len(hostile) // NORMAL)
    jobs: list[Any] = []
    for number in range(NORMAL):
        jobs.append(normal(number))
        jobs += [
            attack(path, raw) for path, _, raw in hostile[number * stride : (number + 1) * stride]
        ]
    jobs += [attack(path, raw) for path, _, raw in hostile[NORMAL * stride :]]
    results = await asyncio.gather(*jobs)

    normal_results = [result for result in results if isinstance(result, tuple)]
    hostile_statuses = [result for result in results if isinstance(result, int)]
    assert len(normal_results) == NORMAL and len(hostile_statuses) == len(hostile)
    wrong = [
        (number, status, answer if status != 200 else answer["code"])  # type: ignore[index]
        for number, (status, answer) in enumerate(normal_results)
        if status != 200
        or not isinstance(answer, dict)
        or answer["code"] != "VALID"
        or answer["installation"]["fingerprint"] != f"server-{number}"
        or answer["nonce"] != f"nonce-{number}"
        or answer["license"]["product"] != "smartermail"
    ]
    statuses = Counter(status for status, _ in normal_results)
    assert not wrong, (
        f"{len(wrong)} of {NORMAL} normal activations disturbed (statuses {dict(statuses)}; "
        f"hostile statuses {dict(Counter(hostile_statuses))}); first: {wrong[:3]}"
    )
    failing = Counter(
        (what, status)
        for (_, what, _), status in zip(hostile, hostile_statuses, strict=True)
        if status >= 500 or status < 200 or 300 <= status < 400
    )
    assert not failing, (
        f"{sum(failing.values())} of {len(hostile)} hostile requests answered 5xx/other: "
        f"{dict(failing)}"
    )


async def test_lone_surrogates_and_nul_are_400_naming_the_field(public_client: Client) -> None:
    """Each field refuses a lone surrogate (as the JSON escape) and NUL by name."""
    fields = (*ACTIVATION_FIELDS, "addons")
    for text in ("\ud800", "x\udfffy", "a\x00b"):
        for field in fields:
            body = activation_body("AAAAA-BBBBB-CCCCC-DDDDD-EEEEE")
            body[field] = [text] if field == "addons" else text
            status, raw = await _post(public_client, "/v1/activations", json.dumps(body).encode())
            assert status == 400, (field, ascii(text), raw)
            assert orjson.loads(raw)["field"] == field, (field, ascii(text), raw)


async def test_an_internationalised_hostname_is_accepted_and_kept_exactly(
    public_client: Client, admin_client: Client, admin_headers: dict[str, str], resources: Any
) -> None:
    """Host names may be Unicode (or punycode): letters and marks of any script."""
    key = str((await create_license(admin_client, admin_headers))["key"])
    for hostname in ("почта.пример.рф", "xn--80a1acny.xn--e1afmkfd.xn--p1ai", "メール1.例え.jp"):
        body = activation_body(key, "server-a", hostname=hostname)
        status, raw = await _post(public_client, "/v1/activations", orjson.dumps(body))
        assert status == 200, raw
        (row,) = await resources.store.installations(key)
        assert row["hostname"] == hostname
