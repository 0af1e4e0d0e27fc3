"""Ed25519 signatures over the exact answer bytes (SPEC §5, `X-Signature`)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
from binascii import b2a_base64
from collections.abc import AsyncIterator
from pathlib import Path
from time import perf_counter

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nacl._sodium import ffi, lib
from nacl.bindings import (
    crypto_core_ed25519_scalar_reduce,
    crypto_scalarmult_ed25519_base_noclamp,
    crypto_sign,
    crypto_sign_seed_keypair,
)

from activation.api.keyring import key_id
from activation.api.nonces import NonceSource
from metrics.tally import Tally

log = logging.getLogger(__name__)


class Signer:
    """Signs with libsodium (PyNaCl): ≈ 23 µs per answer inline against ≈ 44 µs for the same
    key through `cryptography`; ≈ 4 µs with a nonce pair precomputed by the helper process of
    `activation.api.nonces` (`attach`). `cryptography` reads the PEM file and publishes the
    public key. `inline_signatures` counts the answers signed without a precomputed nonce (the
    helper off, starting, restarting, or emptied by a burst): metric `signatures_inline_total`."""

    def __init__(
        self, private_key: Ed25519PrivateKey, inline_signatures: Tally | None = None
    ) -> None:
        seed = private_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        public = private_key.public_key()
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        _, self._secret_key = crypto_sign_seed_keypair(seed)
        self._public_raw = raw
        self._scalar = _secret_scalar(seed)
        if crypto_scalarmult_ed25519_base_noclamp(self._scalar) != raw:
            raise RuntimeError("the signing scalar does not match the public key")
        self._nonces: NonceSource | None = None
        self._wants_nonces = True
        # For signing_load.SigningLoad: what inline signatures cost here, in place (caches
        # shared with everything else). Only they are timed: they are the ones signed with
        # headroom to spare (the precomputed ones are counted by the nonce source's `taken`).
        self.inline_seconds = 0.0
        self.inline_signed = 0
        self._inline_signatures = inline_signatures
        self._scratch = ffi.new("unsigned char[32]")
        self._scratch_bytes = ffi.buffer(self._scratch)
        self._reduce = lib.crypto_core_ed25519_scalar_reduce
        self._multiply = lib.crypto_core_ed25519_scalar_mul
        self._add = lib.crypto_core_ed25519_scalar_add
        pem = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_key: Ed25519PublicKey = public
        self.key_id = key_id(raw)  # sent as X-Signature-Key-Id (activation/api/keyring.py)
        self.public_document = {
            "algorithm": "ed25519",
            "public_key": base64.b64encode(raw).decode(),
            "pem": pem.decode(),
        }

    @property
    def nonces(self) -> NonceSource | None:
        return self._nonces

    def attach(self, nonces: NonceSource | None) -> None:
        """Sign with `nonces`' precomputed pairs from now on (None: inline only)."""
        self._nonces = nonces

    @property
    def wants_nonces(self) -> bool:
        return self._wants_nonces

    def want_nonces(self, wanted: bool) -> None:
        """Take precomputed nonces (when attached) or sign inline by choice: switched by
        `signing_load.SigningLoad` with the process's load. Only an inline signature while
        nonces are wanted counts in `signatures_inline_total`."""
        self._wants_nonces = wanted

    @contextlib.asynccontextmanager
    async def precomputed_nonces(self) -> AsyncIterator[NonceSource]:
        """A helper process of precomputed nonces (activation/api/nonces.py), signed with while
        the block runs; stopped, and inline signing again, when it ends."""
        source = NonceSource()
        self.attach(source)
        try:
            yield source
        finally:
            self.attach(None)
            source.close()

    def header(self, body: bytes) -> str:
        wanted = self._wants_nonces
        pair = None if self._nonces is None or not wanted else self._nonces.take()
        if pair is None:
            started = perf_counter()
            signature = crypto_sign(body, self._secret_key)[:64]
            self.inline_seconds += perf_counter() - started
            self.inline_signed += 1
            if wanted and self._inline_signatures is not None:
                self._inline_signatures.inc()
        else:
            # RFC 8032 §5.1.6 steps 4-6 with r chosen at random ahead of time (see nonces.py):
            # k = SHA-512(R ‖ A ‖ M) mod L, S = r + k·a mod L, with libsodium's constant-time
            # scalar arithmetic (the secret a and r must not leak through timing).
            # libsodium is called directly through PyNaCl's cffi module: its wrappers check
            # and copy arguments, 5 µs against 1 µs here (tests verify these signatures with
            # OpenSSL).
            # One scratch buffer per signer: header() never yields, so no two calls share it.
            r, point = pair
            scalar = self._scratch
            self._reduce(scalar, hashlib.sha512(point + self._public_raw + body).digest())
            self._multiply(scalar, scalar, self._scalar)
            self._add(scalar, scalar, r)
            signature = point + self._scratch_bytes[:]
        return "ed25519=" + b2a_base64(signature, newline=False).decode()


def _secret_scalar(seed: bytes) -> bytes:
    """RFC 8032 §5.1.5: the clamped first half of SHA-512(seed), reduced mod L."""
    digest = bytearray(hashlib.sha512(seed).digest()[:32])
    digest[0] &= 248
    digest[31] &= 127
    digest[31] |= 64
    return crypto_core_ed25519_scalar_reduce(bytes(digest) + bytes(32))


def load_signer(
    path: str | None, *, generate: bool, inline_signatures: Tally | None = None
) -> Signer:
    """Read the PEM private key; in dev only, create it on first start."""
    if path is None:
        if not generate:
            raise RuntimeError("SIGNING_KEY_FILE is required outside dev mode")
        path = ".dev/signing-key.pem"
    file = Path(path)
    if not file.exists():
        if not generate:
            raise RuntimeError(f"SIGNING_KEY_FILE {path} does not exist")
        file.parent.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        file.chmod(0o600)
        log.warning("generated a new signing key in %s (dev mode)", file)
    loaded = serialization.load_pem_private_key(file.read_bytes(), password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise RuntimeError(f"{path} is not an Ed25519 private key")
    return Signer(loaded, inline_signatures)
