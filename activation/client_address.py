"""Who the client is, for rate limits and login throttling (SPEC §10, TRUSTED_PROXIES).

Pure: strings and networks in, an address out. The public API, the admin API and the console
all ask `client_address`, so a deployment behind a load balancer limits the real clients
everywhere, and nobody else can choose the address they are counted under.

- The TCP peer is the client, unless the peer is in TRUSTED_PROXIES (default: none).
- From a trusted peer, `X-Forwarded-For` (every such header, in order, as one list) is read
  from the right: each trusted proxy appended the address it received the request from, so
  the right-most address that is not itself a trusted proxy is the client. Addresses to its
  left were written by the client and are ignored.
- Every hop trusted: the left-most address (a client inside the trusted networks).
- A malformed entry (empty, `unknown`, an obfuscated name, text that is no address) ends the
  walk where it stands: the client is the trusted hop that forwarded it. Garbage can thus
  neither pick the counter it is counted under nor escape one; at worst the requests a broken
  proxy forwards share that proxy's counter. Accepted forms: a bare address, `[v6]`,
  `[v6]:port` and `v4:port` (some balancers append the port).
- IPv4-mapped IPv6 (`::ffff:192.0.2.1`, a dual-stack socket's view of an IPv4 peer) is the
  IPv4 address, for trust and for counting; an IPv6 zone (`%eth0`) is dropped.
- `limit_key`: IPv6 clients are counted per /64 (one subscriber's usual allocation: a client
  rotating through its own /64 is still one client); IPv4 per address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
TrustedNetworks = tuple[IPNetwork, ...]

UNKNOWN = "unknown"  # no TCP peer address (a UNIX socket): all such clients share one counter
FORWARDED_FOR = "X-Forwarded-For"


def parse_trusted(text: str) -> TrustedNetworks:
    """TRUSTED_PROXIES: comma-separated CIDRs (a bare address is its /32 or /128); ValueError
    names the entry that is not one (host bits set included: `10.0.0.1/8` is a typo for
    either `10.0.0.0/8` or `10.0.0.1`, and trust must not be guessed)."""
    networks: list[IPNetwork] = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        try:
            network = ipaddress.ip_network(entry, strict=True)
        except ValueError:
            raise ValueError(f"{entry!r} is not a CIDR network") from None
        if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
            mapped = network.network_address.ipv4_mapped
            if mapped is not None:  # peers are compared as IPv4: so must their networks be
                network = ipaddress.IPv4Network((mapped, network.prefixlen - 96))
        networks.append(network)
    return tuple(networks)


def client_address(peer: str | None, forwarded_for: Iterable[str], trusted: TrustedNetworks) -> str:
    """The client's address as text (see the module's rules); `peer` is the TCP peer,
    `forwarded_for` the X-Forwarded-For header values in the order they came."""
    if not trusted:
        return _normal_peer(peer)
    peer_address = parse_address(peer or "")
    if peer_address is None:
        return _normal_peer(peer)
    if not _is_trusted(peer_address, trusted):
        return str(peer_address)
    entries = [entry for value in forwarded_for for entry in value.split(",")]
    client = peer_address
    for entry in reversed(entries):
        hop = parse_address(entry)
        if hop is None:
            break
        client = hop
        if not _is_trusted(hop, trusted):
            break
    return str(client)


def request_client(request: web.BaseRequest, trusted: TrustedNetworks) -> str:
    """`client_address` of an aiohttp request (its headers are not read when no proxy is
    trusted: the common deployment pays for no header lookup)."""
    if not trusted:
        return _normal_peer(request.remote)
    return client_address(request.remote, request.headers.getall(FORWARDED_FOR, ()), trusted)


def limit_key(address: str) -> str:
    """What a rate limit counts `address` (a `client_address`) under: the address itself for
    IPv4, its /64 network for IPv6."""
    if ":" not in address:
        return address
    parsed = parse_address(address)
    if not isinstance(parsed, ipaddress.IPv6Address):
        return address
    return str(ipaddress.IPv6Network((parsed, 64), strict=False))


def parse_address(text: str) -> IPAddress | None:
    """An address in one of the accepted forms, normalised (mapped IPv4 unwrapped, zone
    dropped); None when `text` is not one."""
    text = text.strip()
    if text.startswith("["):
        inside, bracket, rest = text[1:].partition("]")
        if not bracket or not _is_port_suffix(rest):
            return None
        text = inside
        if "." in text and ":" not in text:  # "[192.0.2.1]" is not a form anyone writes
            return None
    elif text.count(":") == 1:  # "192.0.2.1:443"; IPv6 has at least two colons
        text, _, port = text.partition(":")
        if not _is_port_suffix(":" + port):
            return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id is not None:
            return ipaddress.IPv6Address(int(address))
    return address


def _is_port_suffix(rest: str) -> bool:
    if not rest:
        return True
    port = rest[1:]
    return rest[0] == ":" and port.isascii() and port.isdigit() and len(port) <= 5


def _is_trusted(address: IPAddress, trusted: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in trusted)


def _normal_peer(peer: str | None) -> str:
    """The TCP peer as the client: IPv4 text from the socket as it is (the common case, kept
    cheap), anything else normalised."""
    if not peer:
        return UNKNOWN
    if ":" not in peer:
        return peer
    address = parse_address(peer)
    return UNKNOWN if address is None else str(address)
