"""Redis key layout, designed for Redis Cluster from the start.

- Every key of one license carries the hash tag of the license's *shard* (`{s07}`), and so does
  that shard's event stream: the activation script touches one hash slot only.
- `STREAM_SHARDS` fixes how many shards (and streams) exist; it must not change while data is
  live (a license would move to another stream). 16 spreads evenly enough over 3–8 masters.
- Per-client-address counters are global on a single Redis. On a cluster they carry the
  license's tag too, so an address's limit is counted per shard there (a client spreading
  requests over N shards gets up to N times the limit); written down here because it is the
  one place the layout trades exactness for one round trip.
"""

from __future__ import annotations

import zlib
from typing import NamedTuple

from activation.client_address import limit_key


class LicenseKeys(NamedTuple):
    """One license's keys (built per activation: a named tuple, not a frozen dataclass)."""

    license: str
    installations: str
    details: str
    stream: str
    key_counter: str
    tag: str


class KeyLayout:
    def __init__(self, prefix: str, shards: int, cluster: bool) -> None:
        self.prefix = prefix
        self.shards = shards
        self.cluster = cluster
        self._tags = [f"{prefix}:{{s{n:02d}}}" for n in range(shards)]

    def shard_of(self, license_key: str) -> int:
        return zlib.crc32(license_key.encode()) % self.shards

    def tag_of(self, license_key: str) -> str:
        """The hash-tagged prefix of every key of this license (and of its shard's stream)."""
        return self._tags[self.shard_of(license_key)]

    def for_license(self, license_key: str, minute: int) -> LicenseKeys:
        tag = self.tag_of(license_key)
        return LicenseKeys(
            license=f"{tag}:lic:{license_key}",
            installations=f"{tag}:inst:{license_key}",
            details=f"{tag}:info:{license_key}",
            stream=f"{tag}:events",
            key_counter=f"{tag}:rl:key:{license_key}:{minute}",
            tag=tag,
        )

    def client_counters(self, tag: str, ip: str, minute: int) -> tuple[str, str]:
        """(all requests, unknown-key answers) of one client address in this minute; an IPv6
        client is counted per /64 (activation/client_address.py)."""
        base = tag if self.cluster else self.prefix
        client = limit_key(ip)
        return f"{base}:rl:ip:{client}:{minute}", f"{base}:rl:nf:{client}:{minute}"

    def streams(self) -> list[str]:
        return [f"{tag}:events" for tag in self._tags]

    @property
    def clock(self) -> str:
        return f"{self.prefix}:test-clock"

    @property
    def license_pattern(self) -> str:
        return f"{self.prefix}:{{s*}}:lic:*"
