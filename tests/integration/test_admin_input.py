"""Hostile values in every path parameter, query parameter and JSON body field of the admin API
(SPEC §6, §9 Bad input): each gets an answer or a 4xx problem, never a 5xx. The OpenAPI fuzz
(test_openapi_fuzz.py) explores the document's types; this table tries the values that break
naive handlers (NUL, digits `int()` refuses, 5,000 digits, huge numbers, wrong JSON types)."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any
from urllib.parse import quote

import pytest

from activation.api.openapi import openapi_document
from activation.runtime import Resources
from fraud.escalation import DEFAULT_LADDER
from fraud.worker import Worker
from metrics import WorkerMetrics
from tests.integration.helpers import (
    HOSTILE_VALUES,
    WRONG_TYPES,
    Client,
    activate,
    create_license,
    create_release,
    set_clock,
)

Headers = dict[str, str]


def valid_bodies(key: str, customer_id: int) -> dict[tuple[str, str], dict[str, Any]]:
    license = {
        "customer_id": customer_id, "product": "smartermail", "kind": "perpetual",
        "edition": "enterprise", "purchased_on": "2026-09-01", "addons": ["eas"],
        "limits": {"mailboxes": 250}, "key": "ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ-ZZZZ9", "max_servers": 2,
        "failover": False, "major_version": 16, "auto_renew": True, "trial_days": 30,
        "ms_covered_through": "2027-08-31", "lease_ends_on": None,
    }  # fmt: skip
    return {
        ("post", "/admin/v1/customers"): {"name": "Globex", "email": "it@globex.example"},
        ("post", "/admin/v1/licenses"): license,
        ("post", "/admin/v1/licenses/import"): {"licenses": [license]},
        ("post", "/admin/v1/licenses/{key}/disable"): {"reason": "resale"},
        ("post", "/admin/v1/licenses/{key}/addons"): {"name": "archiving"},
        ("post", "/admin/v1/licenses/{key}/ms-renewals"): {"on": "2026-12-01"},
        ("put", "/admin/v1/licenses/{key}/auto-renew"): {"enabled": True},
        ("post", "/admin/v1/releases"): {
            "product": "smartermail",
            "version": "17.0.7001",
            "released_on": "2026-10-01",
        },
        ("post", "/admin/v1/tokens"): {"name": "ops", "role": "viewer"},
        ("post", "/admin/v1/cases/{id}/actions"): {
            "action": "extend",
            "days": 3,
            "note": "ok",
            "max_servers": None,
        },
        ("post", "/admin/v1/test-clock"): {"now": "2026-11-23T12:00:00Z"},
    }


# Every admin route gets hostile input, the test clock's POST too (served with TEST_CLOCK only).
@pytest.mark.moves_clock
async def test_no_admin_input_yields_a_server_error(
    admin_client: Client, public_client: Client, admin_headers: Headers, resources: Resources
) -> None:
    await set_clock(admin_client, admin_headers, "2026-11-23T12:00:00Z")
    key: str = (await create_license(admin_client, admin_headers, purchased_on="2026-09-01"))["key"]
    await create_release(admin_client, admin_headers, "16.3.6989", "2026-01-10")
    for server in ("server-a", "server-b"):  # an open case, so case routes reach their logic
        await activate(public_client, key, server)
    await Worker(resources, DEFAULT_LADDER, {}, WorkerMetrics()).run_once()
    case_id = await resources.pool.fetchval("SELECT id FROM fraud_cases")
    customer_id = await resources.pool.fetchval("SELECT customer_id FROM licenses")
    token = await admin_client.post(
        "/admin/v1/tokens", json={"name": "spare", "role": "viewer"}, headers=admin_headers
    )
    ids = {"customers": customer_id, "cases": case_id, "tokens": (await token.json())["id"]}
    bodies = valid_bodies(key, customer_id)
    failures: list[tuple[str, str, str, str, int]] = []
    statuses: Counter[int] = Counter()

    def valid_path(template: str) -> dict[str, str]:
        collection = template.split("/")[3]  # /admin/v1/<collection>/...
        return {"key": key, "id": str(ids.get(collection, 1)), "name": "eas"}

    async def send(method: str, template: str, path: dict[str, str], **request: Any) -> None:
        url = re.sub(r"\{(\w+)\}", lambda m: quote(path[m[1]], safe=""), template)
        request.setdefault("headers", admin_headers)
        response = await admin_client.request(method, url, **request)
        statuses[response.status] += 1
        if response.status >= 500:
            what = request.get("params") or request.get("json") or request.get("data")
            failures.append((method, template, str(path)[:60], str(what)[:60], response.status))

    for template, operations in openapi_document()["paths"].items():
        if not template.startswith("/admin/"):
            continue
        for method, operation in operations.items():
            parameters = operation.get("parameters", [])
            body = bodies.get((method, template))
            for parameter in parameters:
                for value in HOSTILE_VALUES:
                    if parameter["in"] == "path":
                        path = {**valid_path(template), parameter["name"]: value}
                        await send(method, template, path, json=body)
                    else:
                        params = {parameter["name"]: value}
                        await send(method, template, valid_path(template), params=params, json=body)
            for field, valid in (body or {}).items():
                for value in (*HOSTILE_VALUES, *WRONG_TYPES):
                    # the value itself, and inside the field's list or object
                    variants = [value]
                    if isinstance(valid, list):
                        variants.append([value])
                    if isinstance(valid, dict) and isinstance(value, str):
                        variants += [{value: 1}, {"mailboxes": value}]
                    for variant in variants:
                        fields = {**(body or {}), field: variant}
                        await send(method, template, valid_path(template), json=fields)
            if body is not None:
                for wrong in (*WRONG_TYPES, {**body, "unknown": "x"}):
                    await send(method, template, valid_path(template), json=wrong)
    # The CSV import: each cell and each header name, one at a time.
    header = ["key", "customer_id", "product", "kind", "edition", "purchased_on", "failover"]
    header += ["max_servers", "major_version", "trial_days", "auto_renew", "addons", "limits"]
    row = ["ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ-ZZZZ8", str(customer_id), "smartermail", "perpetual"]
    row += ["enterprise", "2026-09-01", "no", "2", "16", "30", "yes", "eas;mapi", "mailboxes=9"]
    csv_headers = admin_headers | {"Content-Type": "text/csv"}
    for column in range(len(header)):
        for value in HOSTILE_VALUES:
            cell = '"' + value.replace('"', '""') + '"'
            for names, cells in (
                (header, [*row[:column], cell, *row[column + 1 :]]),
                ([*header[:column], cell, *header[column + 1 :]], row),
            ):
                text = ",".join(names) + "\n" + ",".join(cells) + "\n"
                template = "/admin/v1/licenses/import"
                await send("post", template, {}, data=text.encode(), headers=csv_headers)
    assert failures == [], "\n".join(map(repr, failures))
    # Every route was reached, and the values were refused by the handlers, not only accepted.
    assert sum(statuses.values()) > 2000 and statuses[400] > 1000, statuses
