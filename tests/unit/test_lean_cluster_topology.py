"""The lean cluster client's reading of redirects and of CLUSTER SLOTS (store/lean_cluster.py)."""

from __future__ import annotations

import pytest

from activation.store.lean_cluster import _address, _slot_map

ASKED = ("10.0.0.9", 7000)


@pytest.mark.parametrize(
    ("where", "node"),
    [
        ("3999 127.0.0.1:6381", ("127.0.0.1", 6381)),
        ("0 redis-2.internal:6379", ("redis-2.internal", 6379)),
        ("16383 :6380", ("10.0.0.9", 6380)),  # an unknown endpoint: the node asked
        ("12 ::1:7001", ("::1", 7001)),  # IPv6: the port is after the last colon
    ],
)
def test_redirect_names_the_node(where: str, node: tuple[str, int]) -> None:
    assert _address(where, ASKED) == node


def test_slot_map_from_cluster_slots() -> None:
    reply = [
        [0, 5460, [b"127.0.0.1", 7000, b"id-a"], [b"127.0.0.1", 7003, b"id-r"]],
        [5461, 10922, [b"", 7001, b"id-b"]],
        [10923, 16382, [b"?", 7002, b"id-c", {b"hostname": b"c"}]],
    ]
    slots = _slot_map(reply, ASKED)
    assert slots[0] == slots[5460] == ("127.0.0.1", 7000)  # masters only, never a replica
    assert slots[5461] == slots[10922] == ("10.0.0.9", 7001)
    assert slots[10923] == slots[16382] == ("10.0.0.9", 7002)
    assert slots[16383] is None  # not served: a call there is refused (CLUSTERDOWN, 503)
    assert len(slots) == 16384
