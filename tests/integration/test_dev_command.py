"""`activation-dev`, the README's run command: the sample `curl` it prints activates the demo
key the moment it is printed (the banner waits until both ports listen).

Run here on the tests' PostgreSQL and Redis (DATABASE_URL/REDIS_URL set, so no embedded
services are started) and on free ports."""

from __future__ import annotations

import json
import re
import selectors
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.integration.receivers import free_port
from tests.integration.servers import drop_prefix, server_env, stop, truncate

DEV = Path(sys.executable).parent / "activation-dev"
TIMEOUT = 60.0


def _read_until_curl(process: subprocess.Popen[bytes]) -> list[str]:
    """stdout lines up to and including the line after the sample activation's `curl`."""
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    lines: list[str] = []
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if not selector.select(timeout=0.5):
            if process.poll() is not None:
                break
            continue
        line = process.stdout.readline().decode()
        if not line:
            break
        lines.append(line)
        if len(lines) >= 2 and "curl -s -X POST" in lines[-2]:
            return lines
    raise AssertionError("no sample curl printed:\n" + "".join(lines))


def test_the_printed_curl_activates_the_demo_key_at_once(
    database_url: str, server_urls: tuple[str, str], redis_prefix: str, tmp_path: Path
) -> None:
    truncate(database_url)
    public_port = free_port()
    env = server_env(
        database_url,
        server_urls[1],
        redis_prefix,
        tmp_path,
        PUBLIC_PORT=str(public_port),
        ADMIN_PORT=str(free_port()),
        SMTP_URL=f"smtp://127.0.0.1:{free_port()}",
        PYTHONUNBUFFERED="1",
    )
    process = subprocess.Popen(
        [str(DEV)], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        lines = _read_until_curl(process)
        url = re.search(r"curl -s -X POST (\S+)", lines[-2])
        body = re.search(r"-d '(.*)'", lines[-1])
        assert url is not None and body is not None, lines[-2:]
        assert url.group(1) == f"http://127.0.0.1:{public_port}/v1/activations"
        request = urllib.request.Request(
            url.group(1),
            data=body.group(1).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # no retry: must be up
            answer = json.loads(response.read())
            assert response.status == 200
            assert response.headers["X-Signature"].startswith("ed25519=")
        assert answer["code"] == "VALID"
        assert answer["nonce"] == "c0ffee42"
    finally:
        stop(process)
        if process.stdout is not None:
            process.stdout.close()
        drop_prefix(server_urls[1], redis_prefix)
        truncate(database_url)
