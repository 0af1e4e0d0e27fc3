"""Signing-key rotation end to end (SPEC §5, "Signing keys rotate"; README, "Rotating the
signing key"): publish the next key, ship it in product builds, switch, retire the old one."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives import serialization

from activation.api.keyring import key_id, read_public_key
from activation.config import Settings
from activation.runtime import open_resources, public_api
from activation_client.verify import PinnedKeys
from fraud.admin_app import create_admin_app
from tests.conftest import BOOTSTRAP_TOKEN, PublicTestServer, _clean
from tests.integration.client_support import Client, check, product_client, url_of
from tests.integration.helpers import activation_body, create_license, verify_signature

SERVER = Path(sys.executable).parent / "activation-server"
HEADERS = {"Authorization": f"Bearer {BOOTSTRAP_TOKEN}"}


def new_key(path: Path) -> tuple[str, str]:
    """`activation-server keys new --out path`: (id, base64 public key) as it prints them."""
    printed = subprocess.run(
        [str(SERVER), "keys", "new", "--out", str(path)], capture_output=True, text=True,
        check=True,
    ).stdout  # fmt: skip
    fields = dict(line.split(": ", 1) for line in printed.splitlines())
    return fields["id"], fields["public_key"]


@asynccontextmanager
async def serving(settings: Settings, aiohttp_client: Any) -> AsyncIterator[tuple[Client, Client]]:
    """The public and admin apps of one deployment started with `settings`."""
    async with open_resources(settings) as resources:
        public = await aiohttp_client(PublicTestServer(public_api(resources)))
        admin = await aiohttp_client(create_admin_app(resources))
        yield public, admin
        await public.close()
        await admin.close()


def test_keys_new_writes_a_private_key_only_its_owner_reads(tmp_path: Path) -> None:
    path = tmp_path / "next.pem"
    found_id, public_key = new_key(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert found_id == key_id(
        PinnedKeys.from_base64([public_key]).by_id[found_id].public_bytes_raw()
    )
    assert key_id(read_public_key(path).public_bytes_raw()) == found_id
    again = subprocess.run([str(SERVER), "keys", "new", "--out", str(path)], capture_output=True)
    assert again.returncode != 0 and b"exists" in again.stderr  # never replaced


async def test_a_rotation_end_to_end(
    settings: Settings, aiohttp_client: Any, tmp_path: Path
) -> None:
    await _clean(settings)
    assert settings.signing_key_file is not None
    published = tmp_path / "published"
    published.mkdir()
    old_file = Path(settings.signing_key_file)

    # 0. Today: one key, which products pin.
    async with serving(settings, aiohttp_client) as (public, admin):
        key = (await create_license(admin, HEADERS))["key"]
        old = (await (await public.get("/v1/signing-key")).json())["public_key"]
    old_id = key_id(read_public_key(old_file).public_bytes_raw())

    # 1. Publish the next key: the server still signs with the old one, and lists both.
    next_id, next_public = await asyncio.to_thread(new_key, published / "next.pem")
    step1 = settings.with_overrides(signing_keys_dir=str(published))
    # 2. Product builds ship with both keys pinned; older builds pin the old one only.
    both, old_only = PinnedKeys.from_base64([old, next_public]), PinnedKeys.from_base64([old])
    async with serving(step1, aiohttp_client) as (public, _):
        listed = (await (await public.get("/v1/signing-keys")).json())["keys"]
        assert [(k["id"], k["current"]) for k in listed] == [(old_id, True), (next_id, False)]
        assert listed[1]["public_key"] == next_public and "PUBLIC KEY" in listed[1]["pem"]
        before = await check(product_client(url_of(public), key, both))
        legacy_before = await check(product_client(url_of(public), key, old_only))
    assert (before.exit_code, before.key_id) == (0, old_id), before.to_json()
    assert (legacy_before.exit_code, legacy_before.key_id) == (0, old_id)

    # 3. Switch: the next key signs; the old one stays published (its public half only).
    previous = read_public_key(old_file).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (published / "previous.pem").write_bytes(previous)
    step3 = step1.with_overrides(signing_key_file=str(published / "next.pem"))
    async with serving(step3, aiohttp_client) as (public, _):
        current = await (await public.get("/v1/signing-key")).json()
        assert current["public_key"] == next_public
        listed = (await (await public.get("/v1/signing-keys")).json())["keys"]
        assert [(k["id"], k["current"]) for k in listed] == [(next_id, True), (old_id, False)]
        raw = await public.post("/v1/activations", json=activation_body(key))
        assert raw.headers["X-Signature-Key-Id"] == next_id
        verify_signature(next_public, await raw.read(), raw.headers["X-Signature"])
        assert orjson.loads(await raw.read())["code"] == "VALID"
        after = await check(product_client(url_of(public), key, both))
        legacy_after = await check(product_client(url_of(public), key, old_only))
    assert (after.exit_code, after.key_id) == (0, next_id), after.to_json()
    # 4. A build that pins only the retired key refuses the new answers.
    assert (legacy_after.exit_code, legacy_after.valid) == (2, False), legacy_after.to_json()
    assert f"signed with key {next_id}" in legacy_after.detail
