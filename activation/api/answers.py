"""Answers to activations: the pure decision plus its JSON, with a memo for the steady state.

Almost every phone-home repeats the previous day's question: same license document, same
build, same add-ons, the key within its limit and no case open. For those the decision and the
static part of the answer (valid, code, detail, license, add-ons) depend only on

- the cached license document (bytes, exactly as Redis returned them),
- the request's product, version and add-ons,
- the day, the server counts, and the release catalog's generation,

so they are memoized on exactly that key. Anything involving a case, a key over its limit or
time within a day goes through `decide()` every time. The memo is bounded and simply cleared
when full.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from activation.api.parsing import ActivationBody
from activation.api.rendering import render_static, render_timed
from activation.licensing.decision import decide
from activation.licensing.model import Decision, Release
from activation.store.redis_store import Recorded

MEMO_LIMIT = 50_000


class Answerer:
    def __init__(self, grace: timedelta, valid_for: timedelta) -> None:
        self._grace = grace
        self._valid_for = valid_for
        self._memo: dict[tuple[Any, ...], tuple[Decision, dict[str, Any]]] = {}

    def answer(
        self,
        body: ActivationBody,
        recorded: Recorded | None,
        releases: tuple[int, tuple[Release, ...] | Any],
        now: datetime,
    ) -> tuple[Decision, dict[str, Any]]:
        """(decision, JSON payload). `releases` is (catalog generation, the product's releases)."""
        steady = recorded is not None and (
            recorded.installations.over_limit_since is None
            and recorded.installations.case_stage is None
        )
        key: tuple[Any, ...] | None = None
        if steady and recorded is not None:
            installations = recorded.installations
            key = (
                recorded.doc,
                body.product,
                body.version_text,
                body.addons,
                now.toordinal(),
                installations.servers_active,
                installations.servers_allowed,
                releases[0],
            )
            cached = self._memo.get(key)
            if cached is not None:
                return cached[0], self._payload(cached[0], cached[1], body, now)
        license = recorded.license if recorded else None
        decision = decide(
            license,
            product=body.product,
            version=body.version,
            requested_addons=body.addons,
            installations=recorded.installations if recorded else None,
            releases=releases[1],
            now=now,
            grace=self._grace,
        )
        static = render_static(decision, license)
        if key is not None:
            if len(self._memo) >= MEMO_LIMIT:
                self._memo.clear()
            self._memo[key] = (decision, static)
        return decision, self._payload(decision, static, body, now)

    def _payload(
        self, decision: Decision, static: dict[str, Any], body: ActivationBody, now: datetime
    ) -> dict[str, Any]:
        payload = dict(static)
        payload.update(render_timed(decision, body.fingerprint, body.nonce, now, self._valid_for))
        return payload
