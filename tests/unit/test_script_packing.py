"""store/packing.py packs exactly what hiredis packs of ActivationStore.script_call's lists."""

from __future__ import annotations

import hiredis
import pytest

from activation.store.keys import KeyLayout
from activation.store.packing import ScriptCallPacker
from activation.store.redis_store import ActivationRequest, ActivationStore, Limits

SHA = "0123456789abcdef0123456789abcdef01234567"
REQUEST = ActivationRequest(
    "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE", "fp:1/2+3=", "mail.example.com", "16.3.6989",
    "203.0.113.9", "9f86d081884c7d65",
)  # fmt: skip


def store(layout: KeyLayout, limits: Limits) -> ActivationStore:
    made = ActivationStore.__new__(ActivationStore)
    made._layout, made._limits = layout, limits
    return made


CASES = [
    ("activation", "lic", False, "a", 1796126142.5718, REQUEST, Limits(60, 10, 5, 604_800)),
    ("deactivation", "lic", False, "d", 1796126142.0, REQUEST, Limits(0, 0, 0, 86_400)),
    ("cluster counters", "p", True, "a", 1796126199.999, REQUEST, Limits(1, 2, 3, 4, 5, 6)),
    ("first second", "x:y", False, "a", 1796126100.25, REQUEST,
     Limits(100, 1000, 0, 604_800, 86_400, 3600)),
    ("long event id, empty hostname", "lic", False, "a", 1.5,
     REQUEST._replace(hostname="", event_id="f" * 40), Limits(0, 0, 0, 7)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("what", "prefix", "cluster", "op", "stamp", "request_", "limits"),
    CASES,
    ids=[case[0] for case in CASES],
)
def test_packed_call_is_byte_for_byte_hiredis(
    what: str,
    prefix: str,
    cluster: bool,
    op: str,
    stamp: float,
    request_: ActivationRequest,
    limits: Limits,
) -> None:
    layout = KeyLayout(prefix, 16, cluster)
    packer = ScriptCallPacker(
        layout,
        limits.active_window_seconds,
        limits.leak_window_seconds,
        (limits.ip_per_minute, limits.key_per_minute, limits.unknown_per_minute),
        limits.negative_ttl_seconds,
    )
    keys, args = store(layout, limits).script_call(op, stamp, request_)
    expected = hiredis.pack_command(("EVALSHA", SHA, len(keys), *keys, *args))
    packed = packer.pack(op, stamp, *request_)
    assert packed is not None
    head = b"*%d\r\n$7\r\nEVALSHA\r\n$40\r\n%s\r\n" % (ScriptCallPacker.ARITY + 2, SHA.encode())
    assert head + packed == expected


def test_text_that_is_not_ascii_and_ipv6_clients_are_left_to_hiredis() -> None:
    packer = ScriptCallPacker(KeyLayout("lic", 16, False), 1, 2, (3, 4, 5), 6)
    assert packer.pack("a", 1.0, *REQUEST._replace(ip="2001:db8::1")) is None  # counted per /64
    assert packer.pack("a", 1.0, *REQUEST._replace(hostname="café.example.com")) is None
    assert (
        ScriptCallPacker(KeyLayout("lïc", 16, False), 1, 2, (3, 4, 5), 6).pack("a", 1.0, *REQUEST)
        is None
    )
