"""The last verified answer on disk, for outages (`--state-dir`).

One file per (server, key, fingerprint), written atomically (a temporary file, then a rename)
with mode 0600. It holds the signed bytes, not a decision: every read verifies the signature
again against the pinned keys, so editing the file gains nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class SignedAnswer:
    body: bytes
    signature: str
    key_id: str | None


class AnswerStore:
    def __init__(self, directory: Path, server: str, license_key: str, fingerprint: str) -> None:
        name = hashlib.sha256(f"{server}\n{license_key}\n{fingerprint}".encode()).hexdigest()
        self.path = directory / f"answer-{name[:24]}.json"

    def save(self, answer: SignedAnswer) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "body": base64.b64encode(answer.body).decode(),
            "signature": answer.signature,
            "key_id": answer.key_id,
        }
        descriptor, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".answer-")
        try:
            with os.fdopen(descriptor, "w") as file:  # mkstemp creates it 0600
                json.dump(document, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def load(self) -> SignedAnswer | None:
        """The stored answer, or None when there is none or it is unreadable."""
        try:
            document = json.loads(self.path.read_text())
            key_id = document.get("key_id")
            return SignedAnswer(
                base64.b64decode(document["body"], validate=True),
                str(document["signature"]),
                None if key_id is None else str(key_id),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError, binascii.Error):
            return None
