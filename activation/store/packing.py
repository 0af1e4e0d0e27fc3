"""The activation script's keys and arguments packed as RESP by one string format.

Why: building the seven keys and eighteen arguments as Python lists and packing them with
`hiredis.pack_command` costs ≈ 12 µs per activation on the benchmark machine, a sixth of the
API process's CPU per request; one `%` format of a template whose constant parts (the limits,
the empty fill, the numbers of keys) are formatted once costs ≈ 6 µs. The bytes are exactly
those `hiredis.pack_command` makes of `ActivationStore.script_call`'s lists
(tests/unit/test_script_packing.py compares them), so the script sees the same call.

The lengths in RESP are byte counts, the template counts characters: it packs only calls
whose every text is ASCII, from IPv4 clients. Validation makes the key, fingerprint, version
and event id so; a hostname or key prefix that is not, and an IPv6 client (counted per /64),
is packed by hiredis as before (`pack` returns None).
"""

from __future__ import annotations

from activation.store.keys import KeyLayout


def _bulk(value: object) -> str:
    text = str(value)
    return f"${len(text)}\r\n{text}\r\n"


class ScriptCallPacker:
    """`pack` gives what follows `EVALSHA <sha>` in the command; `ARITY` counts its items."""

    ARITY = 1 + 7 + 18  # numkeys, KEYS, ARGV

    def __init__(
        self,
        layout: KeyLayout,
        active_window: int,
        leak_window: int,
        limits_per_minute: tuple[int, int, int],
        negative_ttl: int,
    ) -> None:
        self._layout = layout
        self._ascii = layout.prefix.isascii()
        # ARGV 8-12 and 14-17: the same in every call.
        windows_and_limits = "".join(map(_bulk, (active_window, leak_window, *limits_per_minute)))
        fill_and_ttl = "".join(map(_bulk, ("", "", "", negative_ttl)))
        self._template = (
            "$1\r\n7\r\n"
            # KEYS 1-4: license hash, installations, details, stream
            "$%d\r\n%s:lic:%s\r\n$%d\r\n%s:inst:%s\r\n$%d\r\n%s:info:%s\r\n$%d\r\n%s:events\r\n"
            # KEYS 5-7: per-IP counter, per-key counter, per-IP unknown-key counter
            "$%d\r\n%s:rl:ip:%s:%d\r\n$%d\r\n%s:rl:key:%s:%d\r\n$%d\r\n%s:rl:nf:%s:%d\r\n"
            # ARGV 1-7: op, now, fingerprint, hostname, version, ip, event id
            "$1\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
            "$%d\r\n%s\r\n"
            + windows_and_limits.replace("%", "%%")
            # ARGV 13: seconds left in the minute
            + "$%d\r\n%d\r\n"
            + fill_and_ttl.replace("%", "%%")
            # ARGV 18: the license key
            + "$%d\r\n%s\r\n"
        )

    def pack(
        self,
        op: str,
        stamp: float,
        license_key: str,
        fingerprint: str,
        hostname: str,
        version: str,
        ip: str,
        event_id: str,
    ) -> bytes | None:
        """The packed call, or None when some text is not ASCII (pack it with hiredis)."""
        # IPv6 clients are counted per /64 (KeyLayout.client_counters): packed by hiredis.
        if not (self._ascii and hostname.isascii() and ip.isascii()) or ":" in ip:
            return None
        layout = self._layout
        tag = layout.tag_of(license_key)
        base = tag if layout.cluster else layout.prefix
        minute, second = divmod(int(stamp), 60)
        left = 60 - second
        now = repr(stamp)
        key_size, tag_size, ip_size = len(license_key), len(tag), len(ip)
        minute_size = len(str(minute))
        counter_size = len(base) + 8 + ip_size + minute_size
        # fmt: off
        values = (
            tag_size + 5 + key_size, tag, license_key,
            tag_size + 6 + key_size, tag, license_key,
            tag_size + 6 + key_size, tag, license_key,
            tag_size + 7, tag,
            counter_size, base, ip, minute,
            tag_size + 9 + key_size + minute_size, tag, license_key, minute,
            counter_size, base, ip, minute,
            op,
            len(now), now,
            len(fingerprint), fingerprint,
            len(hostname), hostname,
            len(version), version,
            ip_size, ip,
            len(event_id), event_id,
            len(str(left)), left,
            key_size, license_key,
        )
        # fmt: on
        return (self._template % values).encode()
