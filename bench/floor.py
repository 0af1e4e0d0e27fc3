"""The floor of the activation design: the cheapest handler of an activation's shape.

    python bench/floor.py PORT        (REDIS_URL from the environment)

`POST /v1/activations` reads and parses the JSON body, runs one EVALSHA of a trivial script
through the activation server's own lean Redis connection
(`activation.store.lean_redis.LeanScriptClient`), signs the small JSON answer with Ed25519
through PyNaCl's public `SigningKey.sign` and answers it with its `X-Signature`, on the same
server as bench/bare.py (aiohttp's low-level `web.Server` on uvloop). No validation, no
decision, no metrics: activations/s over its requests/s is what the product's own logic costs
above the plumbing it cannot do without.
"""

from __future__ import annotations

import asyncio
import os
import sys
from binascii import b2a_base64

import orjson
import uvloop
from aiohttp import web
from bare import READY, Handler, serve_until_stopped  # bench/ is on sys.path when run as a script
from nacl.signing import SigningKey

from activation.store.lean_redis import LeanScriptClient

SCRIPT = "return {'OK', ARGV[1]}"


def make_handler(client: LeanScriptClient, key: SigningKey) -> Handler:
    async def handle(request: web.BaseRequest) -> web.Response:
        if request.path == "/readyz":
            return web.Response(body=READY, content_type="application/json")
        data = orjson.loads(await request.read())
        await client.evalsha([f"floor:{{{data['license_key']}}}"], [data["fingerprint"]])
        body = orjson.dumps({"valid": True, "code": "VALID", "nonce": data.get("nonce")})
        signature = "ed25519=" + b2a_base64(key.sign(body).signature, newline=False).decode()
        # As the API answers: web.Response with the two headers.
        headers = {"Content-Type": "application/json", "X-Signature": signature}
        return web.Response(body=body, headers=headers)

    return handle


async def serve(port: int) -> None:
    client = LeanScriptClient(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), SCRIPT)
    try:
        await serve_until_stopped(make_handler(client, SigningKey.generate()), port)
    finally:
        await client.aclose()


def main() -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(int(sys.argv[1])))


if __name__ == "__main__":
    main()
