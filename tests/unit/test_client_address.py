"""Who the client is behind a load balancer (SPEC §10, TRUSTED_PROXIES): client_address.py."""

from __future__ import annotations

import pytest

from activation.client_address import client_address, limit_key, parse_address, parse_trusted

PROXIES = parse_trusted("10.0.0.0/8, 192.168.1.1, 2001:db8:ffff::/48")

# (what, peer, X-Forwarded-For header values, trusted, expected client)
CASES: list[tuple[str, str | None, tuple[str, ...], str, str]] = [
    ("no proxies trusted: the peer", "203.0.113.7", ("198.51.100.1",), "", "203.0.113.7"),
    ("untrusted peer: its forged header is ignored", "203.0.113.7", ("198.51.100.1",),
     "10.0.0.0/8", "203.0.113.7"),
    ("trusted peer, no header: the peer", "10.1.2.3", (), "10.0.0.0/8", "10.1.2.3"),
    ("trusted peer: the forwarded client", "10.1.2.3", ("198.51.100.1",), "10.0.0.0/8",
     "198.51.100.1"),
    ("right-most untrusted wins over what the client wrote", "10.1.2.3",
     ("1.1.1.1, 2.2.2.2, 198.51.100.1",), "10.0.0.0/8", "198.51.100.1"),
    ("trusted hops are skipped", "10.1.2.3", ("198.51.100.1, 10.9.9.9, 192.168.1.1",),
     "10.0.0.0/8,192.168.1.1", "198.51.100.1"),
    ("several header lines are one list, in order", "10.1.2.3",
     ("1.1.1.1", "198.51.100.1, 10.9.9.9"), "10.0.0.0/8", "198.51.100.1"),
    ("every hop trusted: the left-most", "10.1.2.3", ("10.0.0.5, 10.0.0.6",), "10.0.0.0/8",
     "10.0.0.5"),
    ("malformed entry: the trusted hop that forwarded it", "10.1.2.3",
     ("198.51.100.1, unknown, 10.0.0.6",), "10.0.0.0/8", "10.0.0.6"),
    ("malformed right-most entry: the peer", "10.1.2.3", ("198.51.100.1, _hidden",),
     "10.0.0.0/8", "10.1.2.3"),
    ("empty entry: the peer", "10.1.2.3", ("198.51.100.1,",), "10.0.0.0/8", "10.1.2.3"),
    ("empty header: the peer", "10.1.2.3", ("",), "10.0.0.0/8", "10.1.2.3"),
    ("NUL and non-ASCII digits are no address", "10.1.2.3", ("1.2.3.4\x00",), "10.0.0.0/8",
     "10.1.2.3"),
    ("١٧٢.1.1.1 is no address", "10.1.2.3", ("١٧٢.1.1.1",), "10.0.0.0/8", "10.1.2.3"),
    ("IPv4 with a port", "10.1.2.3", ("198.51.100.1:5555",), "10.0.0.0/8", "198.51.100.1"),
    ("bracketed IPv6 with a port", "10.1.2.3", ("[2001:db8::7]:443",), "10.0.0.0/8",
     "2001:db8::7"),
    ("a port that is no port", "10.1.2.3", ("198.51.100.1:http",), "10.0.0.0/8", "10.1.2.3"),
    ("IPv4-mapped peer is IPv4, and trusted as such", "::ffff:10.1.2.3", ("198.51.100.1",),
     "10.0.0.0/8", "198.51.100.1"),
    ("IPv4-mapped untrusted peer is reported as IPv4", "::ffff:203.0.113.7", (), "",
     "203.0.113.7"),
    ("IPv4-mapped forwarded client is IPv4", "10.1.2.3", ("::ffff:198.51.100.1",),
     "10.0.0.0/8", "198.51.100.1"),
    ("mapped network in TRUSTED_PROXIES trusts the IPv4 peer", "10.1.2.3", ("198.51.100.1",),
     "::ffff:10.0.0.0/104", "198.51.100.1"),
    ("IPv6 proxy and client", "2001:db8:ffff::1", ("2001:db8:1:2::99",), "2001:db8:ffff::/48",
     "2001:db8:1:2::99"),
    ("IPv6 zone dropped", "fe80::1%eth0", (), "", "fe80::1"),
    ("no peer address (UNIX socket)", None, ("198.51.100.1",), "10.0.0.0/8", "unknown"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("what", "peer", "forwarded", "trusted", "expected"), CASES, ids=[case[0] for case in CASES]
)
def test_client_address(
    what: str, peer: str | None, forwarded: tuple[str, ...], trusted: str, expected: str
) -> None:
    assert client_address(peer, forwarded, parse_trusted(trusted)) == expected


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("198.51.100.1", "198.51.100.1"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("::1", "::/64"),
        ("unknown", "unknown"),
    ],
)
def test_ipv6_clients_are_limited_per_64(address: str, key: str) -> None:
    assert limit_key(address) == key


def test_trusted_proxies_parse_cidrs_and_bare_addresses() -> None:
    assert [str(network) for network in PROXIES] == [
        "10.0.0.0/8",
        "192.168.1.1/32",
        "2001:db8:ffff::/48",
    ]
    assert parse_trusted("") == parse_trusted(" , ") == ()


@pytest.mark.parametrize("text", ["10.0.0.1/8", "10.0.0.0/33", "example.com", "10.0.0.0/8;"])
def test_trusted_proxies_refuse_what_is_no_network(text: str) -> None:
    with pytest.raises(ValueError, match="is not a CIDR network"):
        parse_trusted(text)


def test_a_header_of_many_entries_is_read_from_the_right_only() -> None:
    forged = ", ".join(f"1.1.{n // 256}.{n % 256}" for n in range(2000))
    assert client_address("10.0.0.1", (forged + ", 198.51.100.1",), PROXIES) == "198.51.100.1"
    assert parse_address("[192.0.2.1]") is None
