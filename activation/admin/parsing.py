"""Small typed readers for admin request fields; each failure is a 400 problem naming the field."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from enum import StrEnum
from typing import Any, TypeVar

import orjson
from aiohttp import web

from activation.web.problems import ProblemError, bad_field

Body = Mapping[str, Any]
E = TypeVar("E", bound=StrEnum)

MAX_TEXT = 500
FIRST_YEAR, LAST_YEAR = 1970, 2999  # keeps date arithmetic (terms of months) in range


def clean(field: str, value: str) -> str:
    """PostgreSQL text cannot hold NUL; refuse it here rather than fail in the database."""
    if "\x00" in value:
        raise bad_field(field, "must not contain NUL characters")
    return value


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object; an empty body reads as `{}` (every field then optional)."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProblemError(400, "body: not valid JSON", field="body") from None
    if not isinstance(body, dict):
        raise bad_field("body", "must be a JSON object")
    return body


def opt_text(body: Body, field: str, *, max_len: int = MAX_TEXT) -> str | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_field(field, "must be a string")
    value = clean(field, value.strip())
    if len(value) > max_len:
        raise bad_field(field, f"must be at most {max_len} characters")
    return value or None


def text(body: Body, field: str, *, max_len: int = MAX_TEXT) -> str:
    value = opt_text(body, field, max_len=max_len)
    if value is None:
        raise bad_field(field, "is required")
    return value


def opt_integer(
    body: Body, field: str, *, minimum: int | None = None, maximum: int | None = None
) -> int | None:
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_field(field, "must be a whole number")
    if minimum is not None and value < minimum:
        raise bad_field(field, f"must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise bad_field(field, f"must be at most {maximum}")
    if abs(value) > 2**31 - 1:
        raise bad_field(field, "is too large")
    return value


def integer(body: Body, field: str, *, minimum: int | None = None) -> int:
    value = opt_integer(body, field, minimum=minimum)
    if value is None:
        raise bad_field(field, "is required")
    return value


def boolean(body: Body, field: str, *, default: bool | None = None) -> bool:
    value = body.get(field, default)
    if value is None:
        raise bad_field(field, "is required")
    if not isinstance(value, bool):
        raise bad_field(field, "must be true or false")
    return value


def parse_date(field: str, value: object) -> date:
    if not isinstance(value, str):
        raise bad_field(field, "must be a date string YYYY-MM-DD")
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        raise bad_field(field, f"must be a date YYYY-MM-DD, got {value[:40]!r}") from None
    if not FIRST_YEAR <= parsed.year <= LAST_YEAR:
        raise bad_field(field, f"must be between {FIRST_YEAR} and {LAST_YEAR}")
    return parsed


def opt_day(body: Body, field: str) -> date | None:
    value = body.get(field)
    return None if value is None else parse_date(field, value)


def day(body: Body, field: str) -> date:
    value = opt_day(body, field)
    if value is None:
        raise bad_field(field, "is required")
    return value


def moment(body: Body, field: str) -> datetime:
    value = body.get(field)
    if not isinstance(value, str):
        raise bad_field(field, "must be an ISO-8601 date-time string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise bad_field(field, f"must be an ISO-8601 date-time, got {value[:40]!r}") from None
    if not FIRST_YEAR <= parsed.year <= LAST_YEAR:
        raise bad_field(field, f"must be between {FIRST_YEAR} and {LAST_YEAR}")
    return parsed


def choice(body: Body, field: str, enum: type[E]) -> E:
    value = text(body, field)
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
        raise bad_field(field, f"must be one of {allowed}") from None


def names(body: Body, field: str) -> list[str]:
    value = body.get(field)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise bad_field(field, "must be a list of strings")
    return [item.strip().lower() for item in value if item.strip()]


def counts(body: Body, field: str) -> dict[str, int]:
    value = body.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_field(field, "must be an object of name → whole number")
    for name, count in value.items():
        clean(field, name)  # stored as jsonb, which cannot hold NUL either
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count < 2**31:
            raise bad_field(field, f"{name[:40]!r} must be a whole number ≥ 0")
    return dict(value)


def query_text(request: web.Request, name: str, *, max_len: int = MAX_TEXT) -> str | None:
    value = request.query.get(name)
    if value is None or not value.strip():
        return None
    if len(value) > max_len:
        raise bad_field(name, f"must be at most {max_len} characters")
    return clean(name, value.strip())


def query_day(request: web.Request, name: str) -> date | None:
    value = request.query.get(name)
    return None if value is None else parse_date(name, value)


def whole_number(raw: str, max_digits: int = 18) -> int | None:
    """`raw` as a number when it is 1 to `max_digits` ASCII digits, else None. `str.isdigit()`
    alone also accepts '²' and other digits `int()` refuses (a 500), and `int()` refuses more
    than 4,300 digits."""
    if raw.isascii() and raw.isdigit() and len(raw) <= max_digits:
        return int(raw)
    return None


def query_limit(request: web.Request, *, default: int = 100, maximum: int = 1000) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return default
    limit = whole_number(raw)
    if limit is None or not 1 <= limit <= maximum:
        raise bad_field("limit", f"must be a whole number from 1 to {maximum}")
    return limit


def path_id(request: web.Request, what: str) -> int:
    """The `{id}` of the path; anything not an id cannot name an existing row (404)."""
    raw = request.match_info["id"]
    row_id = whole_number(raw)
    if row_id is None:
        raise ProblemError(404, f"no {what} {raw[:40]!r}")
    return row_id
