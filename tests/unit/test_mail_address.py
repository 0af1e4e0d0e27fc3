"""What the admin API accepts as a customer's e-mail address (SPEC §6 customers, §7 e-mails go
to it): one bare address; nothing that could add a header line or a second recipient."""

from __future__ import annotations

import pytest

from activation.admin.customers import is_mail_address


@pytest.mark.parametrize(
    ("text", "accepted"),
    [
        ("ops@acme.example", True),
        ("root@localhost", True),
        ("ü@exämple.de", True),
        ("a@b\r\nBcc: x@y", False),  # header injection
        ("a@b\nBcc: x@y", False),
        ("a@b\u2028", False),
        ("x@y\x00", False),
        ("Bob <a@b.example>", False),  # a display name: the API stores the address alone
        ("a@b.example,c@d.example", False),  # a list
        ("a@b.example;c@d.example", False),
        ('"a b"@c.example', False),
        ("a b@c.example", False),
        ("@b.example", False),
        ("a@", False),
        ("a@@b.example", False),
        ("a@b@c.example", False),
        ("not-an-address", False),
    ],
)
def test_one_bare_address(text: str, accepted: bool) -> None:
    assert is_mail_address(text) is accepted
