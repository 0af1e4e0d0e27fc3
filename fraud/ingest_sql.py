"""The SQL of the ingest: one batch of events as column arrays (unnest), so a batch of
thousands of events is two statements in one transaction."""

from __future__ import annotations

from operator import attrgetter
from typing import Any

from fraud.events import Event

# A redelivered entry conflicts with its first copy on the table's one unique key: event_id,
# or (event_id, occurred_at) once the table is partitioned by month (both from the entry).
INSERT_EVENTS = """
INSERT INTO activation_events
    (event_id, license_key, kind, fingerprint, hostname, ip, version, occurred_at)
SELECT e, k, kind, f, h, ip, v, to_timestamp(t)
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
            $6::text[], $7::text[], $8::float8[]) AS u (e, k, kind, f, h, ip, v, t)
ON CONFLICT DO NOTHING
"""

# A server's row is rewritten only when something shown changes: its details, a deactivation,
# or last_seen_at moving by more than an hour (a server phoning home every few minutes does
# not leave a dead row version each time; the stored last_seen_at is at most an hour behind).
UPSERT_INSTALLATIONS = """
INSERT INTO installations AS i
    (license_key, fingerprint, hostname, ip, version, first_seen_at, last_seen_at, deactivated_at)
SELECT k, f, h, ip, v, to_timestamp(first), to_timestamp(last), to_timestamp(gone)
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
            $6::float8[], $7::float8[], $8::float8[]) AS u (k, f, h, ip, v, first, last, gone)
ON CONFLICT (license_key, fingerprint) DO UPDATE SET
    first_seen_at = LEAST(i.first_seen_at, EXCLUDED.first_seen_at),
    last_seen_at = GREATEST(i.last_seen_at, EXCLUDED.last_seen_at),
    hostname = CASE WHEN EXCLUDED.last_seen_at >= i.last_seen_at AND EXCLUDED.hostname <> ''
                    THEN EXCLUDED.hostname ELSE i.hostname END,
    ip = CASE WHEN EXCLUDED.last_seen_at >= i.last_seen_at AND EXCLUDED.ip <> ''
              THEN EXCLUDED.ip ELSE i.ip END,
    version = CASE WHEN EXCLUDED.last_seen_at >= i.last_seen_at AND EXCLUDED.version <> ''
                   THEN EXCLUDED.version ELSE i.version END,
    deactivated_at = CASE
        WHEN EXCLUDED.deactivated_at IS NOT NULL
             AND EXCLUDED.deactivated_at >= GREATEST(i.last_seen_at, EXCLUDED.last_seen_at)
        THEN EXCLUDED.deactivated_at
        WHEN EXCLUDED.last_seen_at > COALESCE(i.deactivated_at, '-infinity') THEN NULL
        ELSE i.deactivated_at END
WHERE EXCLUDED.last_seen_at > i.last_seen_at + interval '1 hour'
   OR EXCLUDED.first_seen_at < i.first_seen_at
   OR EXCLUDED.deactivated_at IS NOT NULL OR i.deactivated_at IS NOT NULL
   OR (EXCLUDED.last_seen_at >= i.last_seen_at
       AND (EXCLUDED.hostname NOT IN ('', i.hostname) OR EXCLUDED.ip NOT IN ('', i.ip)
            OR EXCLUDED.version NOT IN ('', i.version)))
"""


def event_columns(events: list[Event]) -> list[list[Any]]:
    # Sorted by id: concurrent writers of overlapping (redelivered) events lock in one order.
    events = sorted(events, key=lambda event: event.event_id)
    return [
        [e.event_id for e in events],
        [e.license_key for e in events],
        ["activation" if e.op == "a" else "deactivation" for e in events],
        [e.fingerprint for e in events],
        [e.hostname for e in events],
        [e.ip for e in events],
        [e.version for e in events],
        [e.at.timestamp() for e in events],
    ]


def installation_columns(events: list[Event]) -> list[list[Any]]:
    """One row per (license, server): a statement may not update the same row twice."""
    rows: dict[tuple[str, str], list[Any]] = {}
    for e in sorted(events, key=_by_time):
        server = (e.license_key, e.fingerprint)
        row = rows.get(server)
        at = e.at.timestamp()
        if e.op == "a":
            if row is None:
                rows[server] = [e.license_key, e.fingerprint, e.hostname, e.ip, e.version, at, at,
                                None]  # fmt: skip
            else:
                row[2], row[3], row[4], row[6], row[7] = e.hostname, e.ip, e.version, at, None
        elif row is None:
            rows[server] = [e.license_key, e.fingerprint, "", "", "", at, at, at]
        else:
            row[7] = at
    if not rows:
        return [[] for _ in range(8)]
    # Upserted in key order, so that workers writing batches with rows in common lock them in
    # the same order (in arrival order, two workers deadlock on each other's rows).
    return [list(column) for column in zip(*(rows[server] for server in sorted(rows)), strict=True)]


_by_time = attrgetter("at")
