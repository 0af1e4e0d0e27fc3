"""The answer bytes (SPEC §5): memoized static JSON + per-request JSON is exactly the JSON of
the whole answer, for memo hits and misses, steady keys and keys over their limit (R13)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pytest

from activation.api import answers
from activation.api.answers import Answerer
from activation.api.parsing import ActivationBody
from activation.api.rendering import render_activation
from activation.licensing.decision import decide
from activation.licensing.model import (
    Edition,
    InstallationState,
    License,
    LicenseKind,
    Release,
    Version,
)
from activation.store.redis_store import Recorded

NOW = datetime(2019, 3, 1, 12, 0, 7, tzinfo=UTC)
GRACE = timedelta(days=30)
VALID_FOR = timedelta(days=7)
LICENSE = License(
    key="AAAAA-BBBBB-CCCCC-DDDDD-EEEEE",
    product="smartermail",
    kind=LicenseKind.PERPETUAL,
    edition=Edition.ENTERPRISE,
    purchased_on=date(2018, 9, 1),
    ms_covered_through=date(2019, 8, 31),
    addons=frozenset({"eas"}),
)
RELEASES = (Release("smartermail", Version.parse("16.3.6989"), date(2018, 12, 3)),)
STEADY = InstallationState(servers_active=1, servers_allowed=1)
OVER = InstallationState(
    servers_active=2, servers_allowed=1, over_limit_since=NOW - timedelta(days=3)
)


def body(
    fingerprint: str, nonce: str | None, addons: tuple[str, ...] = ("eas", "mapi")
) -> ActivationBody:
    return ActivationBody(
        license_key=LICENSE.key,
        fingerprint=fingerprint,
        hostname="mail.example.com",
        product="smartermail",
        version=Version.parse("16.3.6989"),
        version_text="16.3.6989",
        addons=addons,
        nonce=nonce,
    )


def expected(request: ActivationBody, state: InstallationState | None, now: datetime) -> bytes:
    license = LICENSE if state is not None else None
    decision = decide(
        license,
        product=request.product,
        version=request.version,
        requested_addons=request.addons,
        installations=state,
        releases=RELEASES,
        now=now,
        grace=GRACE,
    )
    whole = render_activation(
        decision,
        license,
        fingerprint=request.fingerprint,
        nonce=request.nonce,
        now=now,
        valid_for=VALID_FOR,
    )
    return orjson.dumps(whole)


@pytest.mark.parametrize(
    ("name", "state"),
    [("steady key, memoized", STEADY), ("key over its limit (R13)", OVER), ("unknown key", None)],
)
def test_answer_bytes_equal_the_whole_answer_json(
    name: str, state: InstallationState | None
) -> None:
    answerer = Answerer(GRACE, VALID_FOR)
    recorded = None
    if state is not None:
        recorded = Recorded(doc=LICENSE.to_json(), installations=state, seen_recently=1)
    requests = [body("server-a", "c0ffee42"), body("server-b", None), body("server-a", "n2")]
    for n, request in enumerate(requests):  # the second and third hit the memo when steady
        now = NOW + timedelta(seconds=n)
        code, answer = answerer.answer(request, recorded, (1, RELEASES), now)
        assert answer == expected(request, state, now), name
        assert orjson.loads(answer)["code"] == code


def test_memo_is_keyed_on_what_the_static_part_depends_on() -> None:
    answerer = Answerer(GRACE, VALID_FOR)
    recorded = Recorded(doc=LICENSE.to_json(), installations=STEADY, seen_recently=1)
    _, with_eas = answerer.answer(body("a", None), recorded, (1, RELEASES), NOW)
    _, without = answerer.answer(body("a", None, ()), recorded, (1, RELEASES), NOW)
    assert orjson.loads(with_eas)["addons"]["granted"] == ["eas"]
    assert orjson.loads(without)["addons"] == {"granted": [], "denied": []}
    _, next_day = answerer.answer(body("a", None), recorded, (1, ()), NOW + timedelta(days=1))
    assert orjson.loads(next_day)["issued_at"] == "2019-03-02T12:00:07Z"


def test_full_memo_drops_the_least_recently_used_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A key in steady use keeps its memo entry when others come and go (answers.py)."""
    monkeypatch.setattr(answers, "MEMO_LIMIT", 2)
    decided: list[tuple[str, ...]] = []
    real_decide = answers.decide

    def counting_decide(*args: Any, **kwargs: Any) -> Any:
        decided.append(kwargs["requested_addons"])
        return real_decide(*args, **kwargs)

    monkeypatch.setattr(answers, "decide", counting_decide)
    answerer = Answerer(GRACE, VALID_FOR)
    recorded = Recorded(doc=LICENSE.to_json(), installations=STEADY, seen_recently=1)
    a, b, c = ("eas",), (), ("mapi",)  # three memo keys of one license
    for addons in (a, b, a, c, a, b):
        _, answer = answerer.answer(body("x", None, addons), recorded, (1, RELEASES), NOW)
        assert answer == expected(body("x", None, addons), STEADY, NOW)
    # a, b decided; a remembered; c decided, b (least recently used) dropped; a remembered;
    # b decided again. Clearing the full memo would have decided a a second time.
    assert decided == [a, b, c, b]
