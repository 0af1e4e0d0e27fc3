"""Ed25519 signatures over the exact answer bytes (SPEC §5, `X-Signature`).

Signed by libsodium through PyNaCl's `SigningKey.sign` (standard RFC 8032 deterministic
signatures), which costs less per answer than `cryptography`'s `Ed25519PrivateKey.sign`: every
answer is signed. `cryptography` reads the PEM file and publishes the public key (raw and
SubjectPublicKeyInfo PEM).
"""

from __future__ import annotations

import base64
import logging
from binascii import b2a_base64
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nacl.signing import SigningKey

from activation.api.keyring import key_id, write_private_key

log = logging.getLogger(__name__)

DEV_KEY_FILE = ".dev/signing-key.pem"


class Signer:
    """Signs answers with one private key; `public_document` is `GET /v1/signing-key`."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        seed = private_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        self._signing_key = SigningKey(seed)
        public = private_key.public_key()
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        if bytes(self._signing_key.verify_key) != raw:
            raise RuntimeError("the signing key does not match its public key")
        pem = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_key: Ed25519PublicKey = public
        self.public_raw = raw
        self.key_id = key_id(raw)  # sent as X-Signature-Key-Id (activation/api/keyring.py)
        self.public_document = {
            "algorithm": "ed25519",
            "public_key": base64.b64encode(raw).decode(),
            "pem": pem.decode(),
        }

    def signature(self, body: bytes) -> bytes:
        """The 64-byte Ed25519 signature of `body`."""
        return self._signing_key.sign(body).signature

    def header(self, body: bytes) -> str:
        """The `X-Signature` value for the answer `body`."""
        return "ed25519=" + b2a_base64(self.signature(body), newline=False).decode()


def load_signer(path: str | None, *, generate: bool) -> Signer:
    """Read the PEM private key; in dev only, create it on first start."""
    if path is None:
        if not generate:
            raise RuntimeError("SIGNING_KEY_FILE is required outside dev mode")
        path = DEV_KEY_FILE
    file = Path(path)
    if not file.exists():
        if not generate:
            raise RuntimeError(f"SIGNING_KEY_FILE {path} does not exist")
        file.parent.mkdir(parents=True, exist_ok=True)
        write_private_key(file)
        log.warning("generated a new signing key in %s (dev mode)", file)
    loaded = serialization.load_pem_private_key(file.read_bytes(), password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise RuntimeError(f"{path} is not an Ed25519 private key")
    return Signer(loaded)
