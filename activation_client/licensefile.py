"""The offline license file: one armored text a customer can e-mail or paste.

    -----BEGIN LICENSE FILE-----
    Key-Id: 3f9a0c1b2d4e5f60
    Signature: ed25519=<base64 of the 64-byte signature>

    <base64 of the exact JSON body bytes, 64 characters a line>
    -----END LICENSE FILE-----

- The header lines come first (`Name: value`), then one empty line, then the body.
- The signature is over the decoded body bytes, exactly as `X-Signature` signs an online
  answer; `Key-Id` names the signing key as `X-Signature-Key-Id` does.
- Text before BEGIN and after END is ignored (an e-mail around it), and so are surrounding
  spaces and CR line ends (mail programs add both).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

BEGIN = "-----BEGIN LICENSE FILE-----"
END = "-----END LICENSE FILE-----"
LINE = 64


class LicenseFileError(ValueError):
    """The text is not a well-formed license file; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class LicenseFile:
    body: bytes
    signature: str  # "ed25519=<base64>", as the X-Signature header
    key_id: str

    def armored(self) -> str:
        encoded = base64.b64encode(self.body).decode()
        lines = [encoded[i : i + LINE] for i in range(0, len(encoded), LINE)]
        head = [BEGIN, f"Key-Id: {self.key_id}", f"Signature: {self.signature}", ""]
        return "\n".join([*head, *lines, END]) + "\n"


def parse(text: str) -> LicenseFile:
    """The license file in `text` (raises LicenseFileError)."""
    lines = [line.strip() for line in text.splitlines()]
    try:
        start = lines.index(BEGIN)
        end = lines.index(END, start)
    except ValueError:
        raise LicenseFileError(f"no {BEGIN} ... {END} block") from None
    block = lines[start + 1 : end]
    if "" not in block:
        raise LicenseFileError("no empty line between the headers and the body")
    blank = block.index("")
    headers: dict[str, str] = {}
    for line in block[:blank]:
        name, colon, value = line.partition(":")
        if not colon:
            raise LicenseFileError(f"header line without a colon: {line[:40]!r}")
        headers[name.strip().lower()] = value.strip()
    if "signature" not in headers or "key-id" not in headers:
        raise LicenseFileError("the Signature and Key-Id headers are required")
    try:
        body = base64.b64decode("".join(block[blank + 1 :]), validate=True)
    except (binascii.Error, ValueError):
        raise LicenseFileError("the body is not base64") from None
    if not body:
        raise LicenseFileError("the body is empty")
    return LicenseFile(body, headers["signature"], headers["key-id"])
