"""Answers to activations: the pure decision plus its JSON, with a memo for the steady state.

Almost every phone-home repeats the previous day's question: same license document, same
build, same add-ons, the key within its limit and no case open. For those the decision and the
static part of the answer (valid, code, detail, license, add-ons) depend only on

- the cached license document (bytes, exactly as Redis returned them),
- the request's product, version and add-ons,
- the day, the server counts, and the release catalog's generation,

so they are memoized on exactly that key, the static part as its JSON bytes: an answer is
those bytes followed by the JSON of the per-request part, the same bytes `orjson.dumps` gives
for the whole answer. Bytes also keep the memo out of the garbage collector's way (a bytes
object is not tracked; the dicts and lists it replaces were). Anything involving a case, a key
over its limit or time within a day goes through `decide()` every time. The memo is bounded
and simply cleared when full.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import orjson

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
        self._memo: dict[tuple[Any, ...], tuple[Decision, bytes]] = {}

    def answer(
        self,
        body: ActivationBody,
        recorded: Recorded | None,
        releases: tuple[int, tuple[Release, ...] | Any],
        now: datetime,
    ) -> tuple[Decision, bytes]:
        """(decision, the answer's JSON body). `releases` is (catalog generation, the product's
        releases)."""
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
                return cached[0], cached[1] + self._timed(cached[0], body, now)
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
        static = orjson.dumps(render_static(decision, license))[:-1] + b","  # open: more follows
        if key is not None:
            if len(self._memo) >= MEMO_LIMIT:
                self._memo.clear()
            self._memo[key] = (decision, static)
        return decision, static + self._timed(decision, body, now)

    def _timed(self, decision: Decision, body: ActivationBody, now: datetime) -> bytes:
        timed = render_timed(decision, body.fingerprint, body.nonce, now, self._valid_for)
        return orjson.dumps(timed)[1:]  # the rest of the object begun by the static part
