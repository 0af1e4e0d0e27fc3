"""Answers to activations: the pure decision plus its JSON, with a memo for the steady state.

Almost every phone-home repeats the previous day's question: same license document, same
build, same add-ons, the key within its limit and no case open. For those the decision and the
static part of the answer (valid, code, detail, license, add-ons) depend only on

- the cached license document (bytes, exactly as Redis returned them),
- the request's product, version and add-ons,
- the day, the server counts, and the release catalog's generation,

so they are memoized on exactly that key, the static part as its JSON bytes: an answer is
those bytes followed by the JSON of the per-request part, the same bytes `orjson.dumps` gives
for the whole answer. In that state the per-request part needs nothing from the decision but
`valid`: the server counts are the script's, and no grace or disable date exists (decide()
sets them only for keys over their limit or with a case).

Memo entries hold only strings, booleans and bytes, which the garbage collector stops
tracking at its first look: with more licenses than the memo holds, entries come and go all
the time, and entries made of objects (decisions, parsed licenses) would make every collection
scan them. Anything involving a case, a key over its limit or time within a day goes through
`decide()` every time.

The memo is bounded (MEMO_LIMIT entries) and drops its least recently used entry when full,
so with more licenses phoning home than it holds the most active ones keep their entries
(clearing it when full would drop them too); a hit costs one `move_to_end` more.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime, timedelta
from typing import Any

import orjson

from activation.api.parsing import ActivationBody
from activation.api.rendering import render_static, render_timed
from activation.licensing.decision import decide
from activation.licensing.model import Release
from activation.store.redis_store import Recorded

MEMO_LIMIT = 50_000


class Answerer:
    def __init__(self, grace: timedelta, valid_for: timedelta) -> None:
        self._grace = grace
        self._valid_for = valid_for
        # key -> (code, valid, static JSON bytes)
        self._memo: OrderedDict[tuple[Any, ...], tuple[str, bool, bytes]] = OrderedDict()

    def answer(
        self,
        body: ActivationBody,
        recorded: Recorded | None,
        releases: tuple[int, tuple[Release, ...] | Any],
        now: datetime,
    ) -> tuple[str, bytes]:
        """(decision code, the answer's JSON body). `releases` is (catalog generation, the
        releases of the requested product: a license of another product is PRODUCT_MISMATCH
        whatever they are)."""
        key: tuple[Any, ...] | None = None
        if recorded is not None:
            installations = recorded.installations
            if (
                installations.over_limit_since is None
                and installations.case_stage is None
                and installations.grace_ends_at is None
                and installations.disable_at is None
            ):
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
                memo = self._memo
                cached = memo.get(key)
                if cached is not None:
                    memo.move_to_end(key)
                    code, valid, static = cached
                    active, allowed = installations.servers_active, installations.servers_allowed
                    return code, static + self._timed(valid, active, allowed, None, None, body, now)
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
                self._memo.popitem(last=False)
            self._memo[key] = (decision.code.value, decision.valid, static)
        timed = self._timed(
            decision.valid,
            decision.servers_active,
            decision.servers_allowed,
            decision.grace_ends_at,
            decision.disable_at,
            body,
            now,
        )
        return decision.code.value, static + timed

    def _timed(
        self,
        valid: bool,
        servers_active: int,
        servers_allowed: int,
        grace_ends_at: datetime | None,
        disable_at: datetime | None,
        body: ActivationBody,
        now: datetime,
    ) -> bytes:
        """The per-request part's JSON, without its opening brace: the rest of the object the
        static part began."""
        timed = render_timed(
            valid,
            body.fingerprint,
            servers_active,
            servers_allowed,
            grace_ends_at,
            disable_at,
            body.nonce,
            now,
            self._valid_for,
        )
        return orjson.dumps(timed)[1:]
