"""The signing keys a deployment publishes (SPEC §5, "Signing keys rotate").

- The key in `SIGNING_KEY_FILE` signs every answer: it is the *current* key.
- `SIGNING_KEYS_DIR` (optional) holds more keys, public or private PEM files (`*.pem`), that
  products may still pin: the next key, published before the switch, and the previous one,
  kept until no product build pins it alone. Only their public halves are ever used here.
- A key's id is the first 8 bytes of SHA-256 of its raw 32-byte public key, in hex: a product
  computes it from the key it pins, and `X-Signature-Key-Id` on an answer tells it which of
  its pinned keys signed.

Rotation, step by step, is in the README ("Rotating the signing key").
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ALGORITHM = "ed25519"


def key_id(raw_public_key: bytes) -> str:
    """The key's id: SHA-256 of the raw public key, first 8 bytes, hex (16 characters)."""
    return hashlib.sha256(raw_public_key).digest()[:8].hex()


@dataclass(frozen=True, slots=True)
class PublishedKey:
    id: str
    public_key: Ed25519PublicKey
    raw: bytes

    @classmethod
    def of(cls, public_key: Ed25519PublicKey) -> PublishedKey:
        raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return cls(key_id(raw), public_key, raw)

    def document(self, *, current: bool) -> dict[str, Any]:
        """The key as `GET /v1/signing-keys` lists it (and, without `id` and `current`, as
        `GET /v1/signing-key` shows the current one)."""
        pem = self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return {
            "id": self.id,
            "algorithm": ALGORITHM,
            "public_key": base64.b64encode(self.raw).decode(),
            "pem": pem.decode(),
            "current": current,
        }


@dataclass(frozen=True, slots=True)
class KeyRing:
    """The current key first, then the others in the order of their ids (stable output)."""

    current: PublishedKey
    others: tuple[PublishedKey, ...] = ()

    def documents(self) -> dict[str, Any]:
        keys = [self.current.document(current=True)]
        keys += [key.document(current=False) for key in self.others]
        return {"keys": keys}


def load_keyring(current: Ed25519PublicKey, keys_dir: str | None) -> KeyRing:
    """The current key plus every `*.pem` key in `keys_dir` (public or private; a file that is
    not an Ed25519 key stops the start with its name). The current key found there again is
    listed once."""
    mine = PublishedKey.of(current)
    others: dict[str, PublishedKey] = {}
    if keys_dir is not None:
        directory = Path(keys_dir)
        if not directory.is_dir():
            raise RuntimeError(f"SIGNING_KEYS_DIR {keys_dir} is not a directory")
        for path in sorted(directory.glob("*.pem")):
            key = PublishedKey.of(read_public_key(path))
            if key.id != mine.id:
                others[key.id] = key
    return KeyRing(mine, tuple(others[name] for name in sorted(others)))


def read_public_key(path: Path) -> Ed25519PublicKey:
    """The public half of the Ed25519 key in the PEM file `path` (private or public)."""
    data = path.read_bytes()
    try:
        if b"PRIVATE KEY" in data:
            private = serialization.load_pem_private_key(data, password=None)
            if isinstance(private, Ed25519PrivateKey):
                return private.public_key()
        else:
            public = serialization.load_pem_public_key(data)
            if isinstance(public, Ed25519PublicKey):
                return public
    except ValueError as error:
        raise RuntimeError(f"{path} is not a PEM key: {error}") from None
    raise RuntimeError(f"{path} is not an Ed25519 key")


def write_private_key(path: Path | None) -> tuple[Path, PublishedKey]:
    """A new Ed25519 private key (PKCS#8 PEM) in `path`, or in `signing-key-<id>.pem` in the
    working directory. The file is created with mode 0600, so the secret is never readable by
    others, not even for a moment; an existing file is never replaced."""
    key = Ed25519PrivateKey.generate()
    published = PublishedKey.of(key.public_key())
    path = path or Path(f"signing-key-{published.id}.pem")
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(pem)
    return path, published
