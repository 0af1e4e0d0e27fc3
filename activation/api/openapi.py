"""The OpenAPI 3.1 document of the public API (SPEC §5) and the admin API (SPEC §6, §10).

Both apps serve the same document at `GET /openapi.json`: the public paths are answered on the
public port, `/admin/v1/...` on the admin port. Request constraints mirror `api/parsing.py` and
`admin/parsing.py`; answers mirror `api/rendering.py` and the admin handlers, so an answer that
does not validate is a bug in one or the other (the schemathesis test checks both ways).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from aiohttp import web

from activation.licensing.model import (
    KNOWN_ADDONS,
    MAX_SERVERS,
    MAX_TRIAL_DAYS,
    AddonDenial,
    CaseStage,
    Code,
    Edition,
    LicenseKind,
    LicenseStatus,
    MsStatus,
    TeamAction,
)

Schema = dict[str, Any]

EXAMPLE_KEY = "ABCDE-FGHIJ-KLMNO-PQRST-UVWXY"  # SPEC §5's example key
KEY_PATTERN = r"^[A-Za-z0-9]{5}(-[A-Za-z0-9]{5}){4}$"
VERSION_PATTERN = r"^[0-9]{1,6}\.[0-9]{1,6}\.[0-9]{1,9}$"
NAME_PATTERN = r"^[a-z0-9_-]{1,64}$"
NONCE_PATTERN = r"^[!-~]{1,128}$"  # visible ASCII
# What a pattern can say of the host name rule (api/parsing.py): no C0/C1 control or space.
HOSTNAME_PATTERN = r"^[^\x00-\x20\x7f-\x9f]{1,253}$"
INT32 = 2**31 - 1
JSON, PROBLEM = "application/json", "application/problem+json"

TYPES: dict[str, Schema] = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "bool": {"type": "boolean"},
    "num": {"type": "number"},
    "day": {"type": "string", "format": "date"},
    "moment": {"type": "string", "format": "date-time"},
    "any": {},
}

# One bare address (activation/admin/customers.py, is_mail_address): no whitespace, no display
# name, no list, no quoting.
MAIL_ADDRESS_PATTERN = r'^[^\s@<>,;:"()\[\]\\]+@[^\s@<>,;:"()\[\]\\]+$'


def _enum(values: type[StrEnum] | list[str]) -> Schema:
    return {"type": "string", "enum": [str(value) for value in values]}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _type(name: str) -> Schema:
    """`int`, `day`, … from TYPES; a capitalised name is a component; `[T]` a list; `T?` or null."""
    if name.endswith("?"):
        return _nullable(_type(name[:-1]))
    if name.startswith("["):
        return {"type": "array", "items": _type(name[1:-1])}
    return _ref(name) if name[0].isupper() else TYPES[name]


def _answer(spec: str, **fields: Schema) -> Schema:
    """An answer object: every field of `"id:int phone:str?"` and of `fields` is always present
    (answers may carry more fields than these)."""
    properties = {name: _type(kind) for name, _, kind in (f.partition(":") for f in spec.split())}
    properties |= fields
    return {"type": "object", "required": list(properties), "properties": properties}


def _request(required: dict[str, Schema], optional: dict[str, Schema] | None = None) -> Schema:
    properties = required | (optional or {})
    return {"type": "object", "required": list(required), "properties": properties}


def _text(max_length: int, **extra: Any) -> Schema:
    return {"type": "string", "minLength": 1, "maxLength": max_length} | extra


def _int(minimum: int) -> Schema:
    return {"type": "integer", "minimum": minimum, "maximum": INT32}


def _all(*schemas: Schema) -> Schema:
    return {"allOf": list(schemas)}


COUNTS: Schema = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}
LICENSE_FIELDS = {
    "kind": _enum(LicenseKind),
    "edition": _enum(Edition),
    "ms_status": _enum(MsStatus),
    "limits": COUNTS,
}
SCHEMAS: dict[str, Schema] = {
    "Problem": _answer("type:str title:str detail:str", status=_int(400) | {"maximum": 599}),
    "Activation": _answer(
        "valid:bool detail:str license:LicenseBlock? installation:Installed nonce:str?"
        " issued_at:moment valid_until:moment? addons:AddonVerdict",
        code=_enum(Code),
    ),
    "LicenseBlock": _answer(
        "product:str ms_covered_through:day? legacy:bool max_version:str?", **LICENSE_FIELDS
    ),
    "Installed": _answer(
        "fingerprint:str servers_active:int servers_allowed:int grace_ends_at:moment?"
        " disable_at:moment?"
    ),
    "AddonVerdict": _answer(
        "granted:[str]",
        denied={"type": "array", "items": _answer("name:str", reason=_enum(AddonDenial))},
    ),
    "Deactivation": _answer(
        "license_key:str fingerprint:str servers_active:int servers_allowed:int issued_at:moment",
        deactivated={"const": True},
    ),
    "SigningKey": _answer("public_key:str pem:str", algorithm={"const": "ed25519"}),
    "SigningKeys": _answer(
        "keys:[PublishedKey]",
    ),
    "PublishedKey": _answer(
        "id:str public_key:str pem:str current:bool", algorithm={"const": "ed25519"}
    ),
    "OfflineFile": _answer("body:str signature:str key_id:str file:str"),
    "OfflineFileRequest": _request(
        {
            "fingerprint": {"type": "string", "pattern": r"^[A-Za-z0-9._:+/=-]{1,128}$"},
            "product": {"type": "string", "pattern": NAME_PATTERN, "example": "smartermail"},
            "version": _text(32, pattern=VERSION_PATTERN, example="16.3.6989"),
            "days": {"type": "integer", "minimum": 1, "maximum": 400},
        },
        {
            "hostname": _nullable(_text(253, pattern=HOSTNAME_PATTERN)),
            "addons": _nullable(
                {
                    "type": "array",
                    "maxItems": 32,
                    "items": {"type": "string", "pattern": NAME_PATTERN},
                }
            ),
            "confirm_over_limit": TYPES["bool"],
        },
    ),
    "Customer": _answer("id:int name:str email:str phone:str? created_at:moment"),
    "License": _answer(
        "key:str customer_id:int product:str purchased_on:day ms_covered_through:day?"
        " lease_ends_on:day? trial_days:int failover:bool max_servers:int"
        " exception_max_servers:int? major_version:int? addons:[str] auto_renew:bool"
        " disabled_reason:str? disabled_at:moment? created_at:moment updated_at:moment",
        status=_enum(LicenseStatus),
        case=_nullable({"type": "object"}),
        **LICENSE_FIELDS,
    ),
    "LicenseView": _all(
        _ref("License"), _answer("installations:[Installation] ms_transactions:[MsTransaction]")
    ),
    "Installation": _answer(
        "fingerprint:str hostname:str version:str ip:str first_seen_at:moment? last_seen_at:moment"
    ),
    "MsTransaction": _answer(
        "id:int on_date:day price_ratio:num? covered_through_before:day?"
        " covered_through_after:day actor:str created_at:moment",
        kind=_enum(["purchase", "renewal", "reinstatement"]),
    ),
    "MsQuote": _answer(
        "price_ratio:num? covered_through_after:day? first_allowed_on:day? on:day",
        kind=_enum(["renewal", "reinstatement", "too_early"]),
    ),
    "Release": _answer("id:int product:str version:str build:int released_on:day"),
    "Token": _answer(
        "id:int name:str created_at:moment created_by:str revoked_at:moment?",
        role=_enum(["viewer", "reviewer", "admin"]),
    ),
    "AuditEntry": _answer("id:int at:moment actor:str action:str target:str before:any after:any"),
    "Clock": _answer("now:moment"),
    "ActivationRequest": _request(
        {
            "license_key": {"type": "string", "pattern": KEY_PATTERN, "example": EXAMPLE_KEY},
            "fingerprint": {"type": "string", "pattern": r"^[A-Za-z0-9._:+/=-]{1,128}$"},
            "product": {"type": "string", "pattern": NAME_PATTERN, "example": "smartermail"},
            "version": _text(32, pattern=VERSION_PATTERN, example="16.3.6989"),
        },
        {
            "hostname": _nullable(
                _text(
                    253,
                    pattern=HOSTNAME_PATTERN,
                    description="Letters, marks, digits, punctuation or symbols of any script;"
                    " no spaces, control or format characters, lone surrogates, private-use or"
                    " unassigned code points.",
                )
            ),
            "addons": _nullable(
                {
                    "type": "array",
                    "maxItems": 32,
                    "items": {"type": "string", "pattern": NAME_PATTERN},
                }
            ),
            "nonce": _nullable(_text(128, pattern=NONCE_PATTERN)),
        },
    ),
    "LicenseInput": _request(
        {
            "customer_id": _int(1),
            "product": _text(100),
            "kind": _enum(LicenseKind),
            "edition": _enum(Edition),
            "purchased_on": TYPES["day"],
        },
        {
            "key": {"type": "string", "pattern": KEY_PATTERN},
            "failover": TYPES["bool"],
            "auto_renew": TYPES["bool"],
            "max_servers": _int(1) | {"maximum": MAX_SERVERS},
            "trial_days": _int(1) | {"maximum": MAX_TRIAL_DAYS},
            "major_version": _int(0),
            "addons": {"type": "array", "items": _enum(sorted(KNOWN_ADDONS))},
            "limits": COUNTS,
            "ms_covered_through": TYPES["day"],
            "lease_ends_on": TYPES["day"],
        },
    ),
}
SCHEMAS["CaseItem"] = _answer(
    "id:int license_key:str on_hold:bool opened_at:moment grace_ends_at:moment?"
    " disable_at:moment? servers:[any]",
    stage=_enum(CaseStage),
    severity=_enum(["normal", "high"]),
)
SCHEMAS["CaseDetail"] = _all(_ref("CaseItem"), _answer("timeline:[any] notifications:[any]"))
SCHEMAS["DeactivationRequest"] = _request(
    {
        name: SCHEMAS["ActivationRequest"]["properties"][name]
        for name in ("license_key", "fingerprint")
    }
)


def _responses(answers: dict[int, Schema], problems: tuple[int, ...]) -> Schema:
    """Answers by status (a component name, or a whole response object), then problem answers."""
    responses = {str(status): answer for status, answer in answers.items()}
    for status in problems:
        retry = status in (429, 503)
        responses[str(status)] = _response(PROBLEM, _ref("Problem"), retry_after=retry)
    return responses


def _response(
    media_type: str, schema: Schema, *, retry_after: bool = False, signed: bool = False
) -> Schema:
    headers = {}
    if retry_after:
        headers["Retry-After"] = {"type": "string", "pattern": "^[0-9]+$"}
    if signed:
        headers["X-Signature"] = {"type": "string", "pattern": "^ed25519=[A-Za-z0-9+/]+=*$"}
        headers["X-Signature-Key-Id"] = {"type": "string", "pattern": "^[0-9a-f]{16}$"}
    response: Schema = {"description": media_type, "content": {media_type: {"schema": schema}}}
    if headers:
        response["headers"] = {name: {"required": True, "schema": s} for name, s in headers.items()}
    return response


def _ok(schema: Schema | str) -> Schema:
    return _response(JSON, _ref(schema) if isinstance(schema, str) else schema)


def _op(
    summary: str,
    answers: dict[int, Schema],
    *problems: int,
    body: Schema | str | None = None,
    params: list[Schema] | None = None,
    admin: bool = True,
) -> Schema:
    """One operation; admin ones take a bearer token (401 without, 403 below the route's role,
    429 after too many wrong ones from the client's address)."""
    if admin:
        problems = (*problems, 401, 403, 429, 503)
    if body is not None:
        problems = (*problems, 413)
    operation: Schema = {"summary": summary, "responses": _responses(answers, problems)}
    if body is not None:
        schema = _ref(body) if isinstance(body, str) else body
        operation["requestBody"] = {"required": True, "content": {JSON: {"schema": schema}}}
    if params:
        operation["parameters"] = params
    if admin:
        operation["security"] = [{"bearer": []}]
    return operation


def _path(name: str, example: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": TYPES["str"],
        "example": example,
    }


def _query(name: str, schema: Schema) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema}


KEY = [_path("key", EXAMPLE_KEY)]
LICENSE = {200: _ok("LicenseView")}


def _public_paths() -> dict[str, Schema]:
    body_errors = (400, 408, 413, 415, 429, 503)
    signed = {"signed": True}
    readiness = _answer("redis:bool postgresql:bool")
    return {
        "/v1/activations": {"post": _op(
            "activate a server, or its daily phone-home",
            {200: _response(JSON, _ref("Activation"), **signed)}, *body_errors,
            body="ActivationRequest", admin=False,
        )},
        "/v1/deactivations": {"post": _op(
            "a server releases its key", {200: _response(JSON, _ref("Deactivation"), **signed)},
            *body_errors, 404, body="DeactivationRequest", admin=False,
        )},
        "/v1/signing-key": {"get": _op("the public key", {200: _ok("SigningKey")}, admin=False)},
        "/v1/signing-keys": {"get": _op(
            "every published signing key, the current one first", {200: _ok("SigningKeys")},
            admin=False,
        )},
        "/healthz": {"get": _op("liveness", {200: _ok(_answer("status:str"))}, admin=False)},
        "/readyz": {"get": _op(
            "readiness: Redis and PostgreSQL answer",
            {200: _ok(readiness), 503: _response(JSON, readiness, retry_after=True)}, admin=False,
        )},
        "/metrics": {"get": _op(
            "Prometheus metrics", {200: {"description": "text", "content": {"text/plain": {}}}},
            admin=False,
        )},
        "/openapi.json": {"get": _op("this document", {200: _ok({"type": "object"})}, admin=False)},
    }  # fmt: skip


def _admin_paths() -> dict[str, Schema]:
    v1, key = "/admin/v1", "/admin/v1/licenses/{key}"
    ids = [_path("id", "1")]
    renewed = _answer("license:LicenseView ms_covered_through:day?")
    return {
        f"{v1}/customers": {"post": _op(
            "create a customer", {201: _ok("Customer")}, 400,
            body=_request({"name": _text(500), "email": _text(254, pattern=MAIL_ADDRESS_PATTERN)},
                          {"phone": _nullable({"type": "string", "maxLength": 50})}),
        )},
        f"{v1}/customers/{{id}}": {"get": _op(
            "a customer with its licenses",
            {200: _ok(_all(_ref("Customer"), _answer("licenses:[License]")))}, 404, params=ids,
        )},
        f"{v1}/licenses": {"post": _op(
            "create a license (a given `key` imports one)", {201: _ok("LicenseView")},
            400, 409, 422, body="LicenseInput",
        )},
        f"{v1}/licenses/import": {"post": _op(
            "bulk import ({licenses: [...]} or text/csv, at most 100,000 rows); failed rows are"
            " reported, not fatal",
            {200: _ok(_answer("imported:int", failed={"type": "array", "items": _answer(
                "row:int key:any detail:str")}))},
            400, body=_request({"licenses": {"type": "array", "items": _ref("LicenseInput"),
                                              "maxItems": 100_000}}),
        )},
        key: {"get": _op("a license with its servers and M&S", LICENSE, 404, params=KEY)},
        f"{key}/disable": {"post": _op(
            "disable a license (R17)", LICENSE, 400, 404,
            body=_request({"reason": _text(500)}), params=KEY,
        )},
        f"{key}/enable": {"post": _op("enable a license", LICENSE, 404, params=KEY)},
        f"{key}/addons": {"post": _op(
            "add an add-on (R8)", {201: _ok("LicenseView")}, 400, 404, 409, 422,
            body=_request({"name": _text(500)}), params=KEY,
        )},
        f"{key}/addons/{{name}}": {"delete": _op(
            "remove an add-on", LICENSE, 404, params=[*KEY, _path("name", "eas")],
        )},
        f"{key}/offline-files": {"post": _op(
            "a signed license file for an air-gapped server; 409 for a disabled key or, without"
            " confirm_over_limit, a server beyond the key's allowed servers",
            {201: _ok("OfflineFile")}, 400, 404, 409, 429,
            body="OfflineFileRequest", params=KEY,
        )},
        f"{key}/ms-quote": {"get": _op(
            "the price and coverage of M&S bought on a day (R3/R4)", {200: _ok("MsQuote")},
            400, 404, 422, params=[*KEY, _query("on", TYPES["day"])],
        )},
        f"{key}/ms-renewals": {"post": _op(
            "record a renewal or reinstatement; 409 names the first allowed day",
            {201: _ok(_all(_ref("MsQuote"), renewed))},
            400, 404, 409, 422, body=_request({}, {"on": _nullable(TYPES["day"])}), params=KEY,
        )},
        f"{key}/auto-renew": {"put": _op(
            "switch auto-renewal; 409 within 15 days of the last covered day (R5)", LICENSE,
            400, 404, 409, 422, body=_request({"enabled": TYPES["bool"]}), params=KEY,
        )},
        f"{v1}/releases": {
            "post": _op(
                "publish a release (R7)", {201: _ok("Release")}, 400, 409,
                body=_request({"product": _text(100), "released_on": TYPES["day"],
                               "version": _text(40, pattern=VERSION_PATTERN)}),
            ),
            "get": _op(
                "the releases, of one product or all", {200: _ok(_answer("items:[Release]"))}, 400,
                params=[_query("product", {"type": "string", "maxLength": 100})],
            ),
        },
        f"{v1}/tokens": {
            "post": _op(
                "issue a token (the secret is shown once)",
                {201: _ok(_all(_ref("Token"), _answer("token:str")))}, 400,
                body=_request({"name": _text(100), "role": _enum(["viewer", "reviewer", "admin"])}),
            ),
            "get": _op("the tokens", {200: _ok(_answer("items:[Token]"))}),
        },
        f"{v1}/tokens/{{id}}": {"delete": _op("revoke a token", {200: _ok("Token")}, 404,
                                              params=ids)},
        f"{v1}/audit": {"get": _op(
            "the audit log, newest first", {200: _ok(_answer("items:[AuditEntry]"))}, 400,
            params=[_query("target", {"type": "string", "maxLength": 500}),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000})],
        )},
        f"{v1}/cases": {"get": _op(
            "the review queue: leaks first, then the next deadline", {200: _ok(_answer(
                "items:[CaseItem]"))}, 400,
            params=[_query("status", _enum(["open", "resolved", "all"])),
                    _query("stage", _enum(CaseStage)),
                    _query("severity", _enum(["normal", "high"])),
                    _query("q", {"type": "string", "maxLength": 200}),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
                    _query("offset", {"type": "integer", "minimum": 0, "maximum": INT32})],
        )},
        f"{v1}/cases/{{id}}": {"get": _op(
            "a case with servers, timeline and notifications", {200: _ok("CaseDetail")}, 404,
            params=ids,
        )},
        f"{v1}/cases/{{id}}/actions": {"post": _op(
            "a fraud-team action (R15)", {200: _ok("CaseDetail")}, 400, 404, 409, 422,
            body=_request({"action": _enum(TeamAction)}, {
                "note": _nullable({"type": "string", "maxLength": 2000}),
                "days": _nullable({"type": "integer", "minimum": 1, "maximum": 365}),
                "max_servers": _nullable({"type": "integer", "minimum": 1, "maximum": 100})}),
            params=ids,
        )},
        f"{v1}/test-clock": {
            "get": _op("the deployment's time", {200: _ok("Clock")}, 404),
            "post": _op(
                "move the test clock (404 unless TEST_CLOCK=1)", {200: _ok("Clock")}, 400, 404,
                body={"oneOf": [_request({"now": TYPES["moment"]}), _request({"advance_seconds": {
                    "type": "number", "minimum": -3_153_600_000, "maximum": 3_153_600_000}})]},
            ),
        },
    }  # fmt: skip


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "License activation server",
            "version": "1",
            "description": "The public API (public port) and /admin/v1 (admin port).",
        },
        "paths": _public_paths() | _admin_paths(),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


async def openapi_handler(request: web.BaseRequest) -> web.StreamResponse:
    return web.json_response(openapi_document())
