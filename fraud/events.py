"""An activation event as the worker reads it from a shard stream: the one type the ingest, its
SQL, the dead-letter replay and case opening all share."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(slots=True)  # not frozen: a frozen __init__ costs more, paid once per event
class Event:
    stream: str
    entry_id: bytes
    event_id: str
    op: str
    license_key: str
    fingerprint: str
    hostname: str
    version: str
    ip: str
    at: datetime
    servers_active: int
    servers_allowed: int
    recent_servers: int


def parse_entry(stream: str, entry_id: bytes, fields: dict[bytes, bytes]) -> Event:
    # Positional and without helpers: this runs once per event on the ingest hot path.
    return Event(
        stream,
        entry_id,
        fields[b"id"].decode(),
        fields[b"op"].decode(),
        fields[b"key"].decode(),
        fields[b"fp"].decode(),
        fields[b"host"].decode(),
        fields[b"ver"].decode(),
        fields[b"ip"].decode(),
        datetime.fromtimestamp(float(fields[b"at"]), UTC),
        int(fields[b"active"]),
        int(fields[b"allowed"]),
        int(fields.get(b"recent", b"0")),
    )
