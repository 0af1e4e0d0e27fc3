"""Answer signatures (activation/api/signing.py): standard Ed25519 through a maintained
binding's public API, and the dev key file private from the moment it exists."""

from __future__ import annotations

import ast
import base64
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from activation.api.signing import Signer, load_signer

ACTIVATION = Path(__file__).resolve().parents[2] / "activation"


def test_signatures_verify_with_openssl_through_cryptography() -> None:
    private = Ed25519PrivateKey.generate()
    signer = Signer(private)
    body = b'{"valid":true,"code":"VALID"}'
    scheme, _, encoded = signer.header(body).partition("=")
    assert scheme == "ed25519"
    assert base64.b64decode(encoded) == private.sign(body)  # RFC 8032 is deterministic
    private.public_key().verify(base64.b64decode(encoded), body)


def test_the_dev_key_is_created_owner_only_even_with_an_open_umask(tmp_path: Path) -> None:
    path = tmp_path / "dev" / "signing-key.pem"
    previous = os.umask(0)
    try:
        signer = load_signer(str(path), generate=True)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_signer(str(path), generate=False).public_document == signer.public_document


def test_a_missing_key_outside_dev_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="does not exist"):
        load_signer(str(tmp_path / "absent.pem"), generate=False)
    with pytest.raises(RuntimeError, match="required outside dev"):
        load_signer(None, generate=False)


def test_no_low_level_sodium_calls_under_activation() -> None:
    """Signatures come from the binding's own signing call: nothing under activation/ imports
    `nacl.bindings` or `nacl._sodium`."""
    offenders = []
    for module in ACTIVATION.rglob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            offenders += [
                f"{module.name}: {name}"
                for name in names
                if name.startswith(("nacl.bindings", "nacl._sodium"))
            ]
    assert offenders == []


def test_a_dangling_symlink_at_the_key_path_is_not_written_through(tmp_path: Path) -> None:
    """O_EXCL: the new key goes into a new file only, never through a link someone placed
    where the key will be (the key would land wherever the link points)."""
    elsewhere = tmp_path / "elsewhere.pem"
    path = tmp_path / "signing-key.pem"
    path.symlink_to(elsewhere)
    with pytest.raises(FileExistsError):
        load_signer(str(path), generate=True)
    assert not elsewhere.exists()
