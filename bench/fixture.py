"""The benchmark's data: seeded licenses, the request bodies that phone home for them, and the
priming pass that brings every license into the Redis cache.

10,000 perpetual licenses by default, 5 % of them with a second server (so some answers are
GRACE, as in production); a request picks a license at random, then one of its servers, so
the keys are spread over the whole cache and over every shard stream.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
from common import KEY_ALPHABET  # bench/ is on sys.path when run as a script
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

PRODUCT = "smartermail"
VERSION = "16.3.6989"
SECOND_SERVER_SHARE = 0.05


@dataclass
class Fixture:
    """The licenses' keys and each license's servers (fingerprint, hostname)."""

    licenses: list[tuple[str, list[tuple[str, str]]]]

    @property
    def servers(self) -> int:
        return sum(len(servers) for _, servers in self.licenses)


def make_fixture(count: int, rng: random.Random) -> Fixture:
    keys: set[str] = set()
    while len(keys) < count:
        chars = "".join(rng.choice(KEY_ALPHABET) for _ in range(25))
        keys.add("-".join(chars[i : i + 5] for i in range(0, 25, 5)))
    licenses = []
    for number, key in enumerate(sorted(keys)):
        server_count = 2 if rng.random() < SECOND_SERVER_SHARE else 1
        servers = [
            (f"{rng.getrandbits(160):040x}", f"mail{n + 1}.customer{number}.example.com")
            for n in range(server_count)
        ]
        licenses.append((key, servers))
    return Fixture(licenses)


def activation_body(key: str, fingerprint: str, hostname: str, rng: random.Random) -> str:
    return json.dumps(
        {
            "license_key": key,
            "fingerprint": fingerprint,
            "hostname": hostname,
            "product": PRODUCT,
            "version": VERSION,
            "addons": ["eas"],
            "nonce": f"{rng.getrandbits(64):016x}",
        },
        separators=(",", ":"),
    )


def lua_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def write_bodies(fixture: Fixture, directory: Path, rng: random.Random) -> tuple[Path, Path]:
    """bodies.lua for wrk (bench/activations.lua) and bodies.json for bench/openloop.py: one
    entry per license, the bodies of its servers. The Lua table is built in chunks: LuaJIT
    caps the constants of one function."""
    bodies = [
        [activation_body(key, fingerprint, hostname, rng) for fingerprint, hostname in servers]
        for key, servers in fixture.licenses
    ]
    lines = ["local t = {}"]
    for start in range(0, len(bodies), 2000):
        lines.append(";(function() for _, s in ipairs({")
        for servers in bodies[start : start + 2000]:
            lines.append("{" + ", ".join(lua_string(body) for body in servers) + "},")
        lines.append("}) do t[#t + 1] = s end end)()")
    lines.append("return t")
    lua_path = directory / "bodies.lua"
    lua_path.write_text("\n".join(lines) + "\n")
    json_path = directory / "bodies.json"
    json_path.write_text(json.dumps(bodies))
    return lua_path, json_path


async def seed(database_url: str, fixture: Fixture) -> None:
    """The licenses (one customer, add-on `eas`) and two releases of the product."""
    today = dt.date.today()
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        async with connection.transaction():
            customer_id = await connection.fetchval(
                "INSERT INTO customers (name, email) VALUES ($1, $2) RETURNING id",
                "Bench Hosting Ltd",
                "ops@bench.example.com",
            )
            await connection.execute(
                """
                INSERT INTO licenses (key, customer_id, product, kind, edition, purchased_on,
                                      ms_covered_through, limits)
                SELECT k, $2, $3, 'perpetual', 'enterprise', $4, $5, '{"mailboxes": 250}'
                FROM unnest($1::text[]) AS k
                """,
                [key for key, _ in fixture.licenses],
                customer_id,
                PRODUCT,
                today - dt.timedelta(days=200),
                today + dt.timedelta(days=5 * 365),
            )
            await connection.execute(
                "INSERT INTO license_addons (license_key, name, added_on) "
                "SELECT key, 'eas', purchased_on FROM licenses"
            )
            await connection.executemany(
                "INSERT INTO releases (product, major, minor, build, released_on) "
                "VALUES ($1, $2, $3, $4, $5)",
                [
                    (PRODUCT, 16, 2, 6900, today - dt.timedelta(days=120)),
                    (PRODUCT, 16, 3, 6989, today - dt.timedelta(days=30)),
                ],
            )
    finally:
        await connection.close()


def write_signing_key(path: Path) -> None:
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.touch(mode=0o600)
    path.write_bytes(pem)


async def prime(url: str, bodies: list[list[str]], concurrency: int = 32) -> Counter[str]:
    """One request per license and server: loads every license into the Redis cache and
    records every installation. The count of each answer code (or `HTTP <status>`)."""
    codes: Counter[str] = Counter()
    work = iter([body for servers in bodies for body in servers])

    async def worker(session: aiohttp.ClientSession) -> None:
        for body in work:
            headers = {"Content-Type": "application/json"}
            async with session.post(url, data=body, headers=headers) as response:
                if response.status == 200:
                    codes[str((await response.json()).get("code"))] += 1
                else:
                    codes[f"HTTP {response.status}"] += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return codes
