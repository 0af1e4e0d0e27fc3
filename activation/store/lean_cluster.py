"""The hot call on Redis Cluster: one lean connection per master, chosen by the script's slot.

Why: on a cluster redis-py ran the activation script too, at ≈ 100 µs of Python per call
against ≈ 5 µs for the lean connection (lean_redis.py), so a cluster deployment served
activations at a fraction of a single node's rate. Every key of one activation shares one
hash slot (store/keys.py), so a call goes to exactly one master, over that master's
`LeanScriptClient` (pipelined, reconnecting, NOSCRIPT-reloading, bounded in-flight).

Topology:
- the slot map comes from `CLUSTER SLOTS`, asked of the seed node or any master known so far,
  at the first call and again in the background after a redirect or a lost node;
- `MOVED` (the slot has moved for good): the map is corrected for that slot at once, the call
  is sent to the new master, and the whole map is refreshed in the background;
- `ASK` (the slot is being imported by another master): that one call is sent there, after
  `ASKING`, and the map stays as it is;
- `TRYAGAIN` (the script's keys are split between the two masters of a slot mid-migration):
  the call is retried every 50 ms for up to 0.5 s, then answered 503 like any refusal;
- at most `MAX_REDIRECTS` redirects per call, then 503 (a cluster still settling).
Unreachable masters and refusals (CLUSTERDOWN, OOM, ...) raise `LeanConnectionError` like the
single-node client: 503 with Retry-After, and a background refresh of the map.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlsplit

import hiredis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from activation.store.lean_redis import LeanConnectionError, LeanRefusedError, LeanScriptClient

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
TRY_AGAIN_EVERY_S = 0.05
TRY_AGAIN_FOR_S = 0.5

Address = tuple[str, int]


class LeanClusterScriptClient:
    def __init__(
        self,
        url: str,
        script: str,
        *,
        timeout: float = 2.0,
        max_in_flight: int = 10_000,
    ) -> None:
        """`url`: `redis+cluster://[user:password@]host:port` (the seed node)."""
        parts = urlsplit(url)
        if parts.hostname is None:
            raise ValueError(f"{url}: no host")
        self._seed: Address = (parts.hostname, parts.port or 6379)
        credentials = ""
        if parts.password is not None:
            credentials = (
                f"{quote(parts.username or '', safe='')}:{quote(parts.password, safe='')}@"
            )
        self._credentials = credentials
        self._script = script
        self._timeout = timeout
        self._max_in_flight = max_in_flight
        self._slots: list[Address | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
        self._nodes: dict[Address, LeanScriptClient] = {}
        self._refreshing: asyncio.Lock | None = None
        self._background: asyncio.Task[None] | None = None
        # What the client did besides plain calls (tests and the curious read them).
        self.moved = 0
        self.asked = 0
        self.tried_again = 0
        self.refreshes = 0

    async def evalsha(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        slot = key_slot(keys[0].encode())
        node = self._slots[slot]
        if node is None:
            await self._refresh()
            node = self._slots[slot]
            if node is None:
                raise LeanRefusedError("CLUSTERDOWN", f"no master serves slot {slot}")
        asking = False
        retries_left = round(TRY_AGAIN_FOR_S / TRY_AGAIN_EVERY_S)
        redirects = 0
        while True:
            client = self._client(node)
            try:
                if asking:
                    return await client.evalsha_asking(keys, args)
                return await client.evalsha(keys, args)
            except hiredis.ReplyError as error:
                kind, _, where = str(error).partition(" ")
                if kind not in ("MOVED", "ASK") or redirects >= MAX_REDIRECTS:
                    raise
                redirects += 1
                node = _address(where, node)
                asking = kind == "ASK"
                if asking:
                    self.asked += 1
                else:
                    self.moved += 1
                    self._slots[slot] = node
                    self._refresh_soon()
            except LeanRefusedError as error:
                if error.code != "TRYAGAIN" or retries_left == 0:
                    self._refresh_soon()
                    raise
                retries_left -= 1
                self.tried_again += 1
                await asyncio.sleep(TRY_AGAIN_EVERY_S)
            except LeanConnectionError:
                self._refresh_soon()  # the master may have failed over
                raise

    def _client(self, node: Address) -> LeanScriptClient:
        client = self._nodes.get(node)
        if client is None:
            host, port = node
            client = LeanScriptClient(
                f"redis://{self._credentials}{host}:{port}/0",
                self._script,
                timeout=self._timeout,
                max_in_flight=self._max_in_flight,
            )
            self._nodes[node] = client
        return client

    async def _refresh(self) -> None:
        """Reload the slot map from the first node that answers `CLUSTER SLOTS`."""
        if self._refreshing is None:
            self._refreshing = asyncio.Lock()
        seen = self.refreshes
        async with self._refreshing:
            if self.refreshes != seen:
                return  # another caller refreshed while this one waited
            errors: list[str] = []
            candidates = dict.fromkeys([self._seed, *(n for n in self._slots if n is not None)])
            for candidate in candidates:
                try:
                    reply = await asyncio.wait_for(
                        self._client(candidate).call("CLUSTER", "SLOTS"), self._timeout
                    )
                except (OSError, TimeoutError, hiredis.ReplyError) as error:
                    errors.append(f"{candidate[0]}:{candidate[1]}: {error}")
                    continue
                self._slots = _slot_map(reply, candidate)
                self.refreshes += 1
                await self._close_unused()
                return
            raise LeanConnectionError(
                "no cluster node answered CLUSTER SLOTS: " + "; ".join(errors)
            )

    def _refresh_soon(self) -> None:
        if self._background is None or self._background.done():
            self._background = asyncio.create_task(self._refresh_quietly())

    async def _refresh_quietly(self) -> None:
        try:
            await self._refresh()
        except LeanConnectionError as error:
            log.warning("Redis Cluster slot map not refreshed: %s", error)

    async def _close_unused(self) -> None:
        serving = set(self._slots)
        for node in [node for node in self._nodes if node not in serving]:
            if node != self._seed:
                await self._nodes.pop(node).aclose()

    async def aclose(self) -> None:
        if self._background is not None:
            self._background.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._background
        for client in self._nodes.values():
            await client.aclose()
        self._nodes.clear()


def _address(where: str, asked: Address) -> Address:
    """The node of a MOVED/ASK reply's "3999 127.0.0.1:6381" (an empty host: the node asked)."""
    endpoint = where.split(" ", 1)[1]
    host, _, port = endpoint.rpartition(":")
    return (host or asked[0], int(port))


def _slot_map(reply: list[Any], asked: Address) -> list[Address | None]:
    """Slot → master from a CLUSTER SLOTS reply: [[first, last, [host, port, id, ...], replicas
    ...], ...]."""
    slots: list[Address | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
    for first, last, master, *_ in reply:
        host = master[0].decode() if master[0] else ""
        node = (host if host and host != "?" else asked[0], int(master[1]))
        slots[int(first) : int(last) + 1] = [node] * (int(last) - int(first) + 1)
    return slots
