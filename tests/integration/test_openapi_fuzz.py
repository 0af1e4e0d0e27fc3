"""Fuzz the running server from its own OpenAPI document (`GET /openapi.json`) with schemathesis.

One real `activation-server` process (both ports) is started for the module on the test
database and a Redis prefix of its own, seeded through the admin API with SPEC §5's example key
(the document's examples name it, so the explicit examples reach a real license). Every
operation then gets a bounded, reproducible set of generated requests, valid and invalid, and
every answer must be no 5xx and conform to the document: documented status code, content type,
headers and body schema.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from activation.api.openapi import EXAMPLE_KEY, openapi_document
from tests.conftest import BOOTSTRAP_TOKEN
from tests.integration.servers import Server, call, server_env, serving

AUTH = {"Authorization": f"Bearer {BOOTSTRAP_TOKEN}"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def _seed(server: Server) -> None:
    """Customer 1 holding the example key, a release, a server using it, and token 1."""
    admin = f"{server.admin}/admin/v1"
    customer = {"name": "Acme", "email": "ops@acme.example", "phone": "+1 555 0100"}
    assert call("POST", f"{admin}/customers", customer)[0] == 201
    license = {
        "customer_id": 1, "product": "smartermail", "kind": "perpetual",
        "edition": "enterprise", "purchased_on": "2026-01-15", "key": EXAMPLE_KEY,
        "addons": ["eas"], "limits": {"mailboxes": 250},
    }  # fmt: skip
    assert call("POST", f"{admin}/licenses", license)[0] == 201
    release = {"product": "smartermail", "version": "16.3.6989", "released_on": "2026-01-10"}
    assert call("POST", f"{admin}/releases", release)[0] == 201
    assert call("POST", f"{admin}/tokens", {"name": "fuzz", "role": "viewer"})[0] == 201
    activation = {
        "license_key": EXAMPLE_KEY, "fingerprint": "server-a", "product": "smartermail",
        "version": "16.3.6989", "hostname": "mail1.example.com",
    }  # fmt: skip
    status, answer = call("POST", f"{server.public}/v1/activations", activation)
    assert status == 200 and json.loads(answer)["code"] == "VALID", answer


@pytest.fixture(scope="module")
def server(
    database_url: str, server_urls: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A real `activation-server` on two free ports; stopped (SIGTERM, then kill) after."""
    workdir = tmp_path_factory.mktemp("fuzz-server")  # no stray .env is read from here
    prefix = f"fuzz{secrets.token_hex(4)}"
    env = server_env(database_url, server_urls[1], prefix, workdir)
    with serving(env, workdir) as urls:
        _seed(urls)
        yield urls


# Built from the dict the server serves (`test_both_ports_serve_the_document` checks that), so
# pytest can collect one test per operation before the server runs.
# POST /admin/v1/test-clock is left out: it moves the deployment's time.
schema = schemathesis.openapi.from_dict(openapi_document()).exclude(
    method="POST", path="/admin/v1/test-clock"
)
# Every request carries the bootstrap admin token: requests without one all end in the same 401,
# so generating the Authorization header would only spend the examples (test_admin_auth covers it).
schema.config.update(headers=AUTH)
schema.config.generation.update(with_security_parameters=False)


# `make test` runs 25 examples per operation; FUZZ_EXAMPLES=1000 .venv/bin/pytest
# tests/integration/test_openapi_fuzz.py explores further.
@settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "25")),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@schema.parametrize()
def test_fuzz_the_running_server(case: schemathesis.Case[Any], server: Server) -> None:
    base_url = server.admin if case.path.startswith("/admin/") else server.public
    case.call_and_validate(base_url=base_url, checks=CHECKS, timeout=10)


def test_both_ports_serve_the_document(server: Server) -> None:
    for url in (server.public, server.admin):
        status, document = call("GET", f"{url}/openapi.json")
        assert status == 200
        assert json.loads(document) == openapi_document()
