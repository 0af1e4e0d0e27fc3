"""Any text through the lean hot-path connection (store/lean_redis.py) to a real Redis comes
back byte for byte, and no text can disturb the connection for the calls beside it.

Commands are packed by `hiredis.pack_command`, whose RESP lengths count bytes: astral
characters, NUL bytes, digits of other scripts and long multi-byte text arrive exactly. A lone
surrogate (what a JSON parser may hand over from the escape "\\ud800") has no UTF-8 encoding:
packing it raises UnicodeEncodeError before anything is written, and the calls sent in the same
event-loop pass, before and after it, get their own replies. (The public API refuses such
strings with 400 before they reach Redis, tests/integration/test_hostile_input.py.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from activation.store.lean_redis import LeanScriptClient

# KEYS[1] and ARGV[1] as the script sees them, returned as they are.
ECHO = "return {KEYS[1], ARGV[1]}"

# Every code point, surrogates included (hypothesis leaves category Cs out by default).
ANY_CHARACTER = st.characters(exclude_categories=())
TEXTS = st.one_of(
    st.text(ANY_CHARACTER, max_size=64),
    st.text(ANY_CHARACTER, min_size=1000, max_size=3000),
)


@pytest.fixture(scope="module")
def lean(server_urls: tuple[str, str]) -> Iterator[tuple[asyncio.Runner, LeanScriptClient]]:
    """One client and one event loop for all examples: the connection must keep serving."""
    with asyncio.Runner() as runner:
        client = LeanScriptClient(server_urls[1], ECHO)
        try:
            yield runner, client
        finally:
            runner.run(client.aclose())


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


async def _round_trip(client: LeanScriptClient, text: str) -> list[object]:
    """The text as KEYS[1] and ARGV[1] of EVALSHA and as ECHO's argument, between two plain
    calls sent in the same event-loop pass."""
    return list(
        await asyncio.gather(
            client.evalsha(["before"], ["b"]),
            client.evalsha([text], [text]),
            client.call("ECHO", text),
            client.evalsha(["after"], ["a"]),
            return_exceptions=True,
        )
    )


@settings(max_examples=150, deadline=None)
@given(text=TEXTS)
@example(text="١٧.1.7400")  # Arabic-Indic digits: 2 bytes each
@example(text="\U0001f600 \U00010348 \U000e0001")  # astral characters: 4 bytes each
@example(text="a\x00b\x00")
@example(text="\ud800")  # a lone high surrogate, as json.loads('"\\ud800"') gives it
@example(text="x\udfffy")  # a lone low surrogate amid text
@example(text="é" * 4096)  # 8 KiB of two-byte text
@example(text="\U0001f600" * 2048)  # 8 KiB of four-byte text
def test_any_text_comes_back_byte_identical_and_the_connection_keeps_serving(
    lean: tuple[asyncio.Runner, LeanScriptClient], text: str
) -> None:
    runner, client = lean
    before, evaluated, echoed, after = runner.run(_round_trip(client, text))
    assert before == [b"before", b"b"]
    assert after == [b"after", b"a"]
    if _encodable(text):
        assert evaluated == [text.encode(), text.encode()]
        assert echoed == text.encode()
    else:
        assert isinstance(evaluated, UnicodeEncodeError), evaluated
        assert isinstance(echoed, UnicodeEncodeError), echoed
    assert runner.run(client.call("PING")) in (b"PONG", "PONG")
