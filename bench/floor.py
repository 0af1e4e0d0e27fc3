"""The floor of the activation design on this stack: the cheapest handler of the same shape.

    .venv/bin/python bench/floor.py PORT [redis] [sign | nonces]

One `POST /v1/activations` route that reads and parses the JSON body, optionally runs one
EVALSHA through the project's lean Redis client (`redis`), answers a small JSON body and
optionally signs it with Ed25519: `sign` inline with libsodium, `nonces` with the server's
`Signer` and its helper process of precomputed nonces. No validation, no decision, no
metrics. Drive it with wrk beside `bench/bare.py` to see what the signature and
the Redis round trip cost by themselves; the README's benchmark section quotes one such run.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
from binascii import b2a_base64
from collections.abc import AsyncIterator

import orjson
import uvloop
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.signing import SigningKey

from activation.api.nonces import NonceSource
from activation.api.signing import Signer
from activation.store.lean_redis import LeanScriptClient


def make_app(redis_url: str, use_redis: bool, sign: bool, nonces: bool) -> web.Application:
    key = SigningKey(os.urandom(32))
    signer = Signer(Ed25519PrivateKey.generate())
    client = LeanScriptClient(redis_url, "return {'OK', ARGV[1]}")

    async def handler(request: web.Request) -> web.Response:
        data = orjson.loads(await request.read())
        if use_redis:
            await client.evalsha([f"floor:{{s1}}:lic:{data['license_key']}"], [data["fingerprint"]])
        body = orjson.dumps({"valid": True, "code": "VALID", "nonce": data.get("nonce")})
        headers = None
        if sign:
            signature = b2a_base64(key.sign(body).signature, newline=False).decode()
            headers = {"X-Signature": f"ed25519={signature}"}
        elif nonces:
            headers = {"X-Signature": signer.header(body)}
        return web.Response(body=body, content_type="application/json", headers=headers)

    async def helper(app: web.Application) -> AsyncIterator[None]:
        source = NonceSource()
        signer.attach(source)
        yield
        source.close()

    app = web.Application()
    app.router.add_post("/v1/activations", handler)
    if nonces:
        app.cleanup_ctx.append(helper)
    return app


async def serve(port: int, use_redis: bool, sign: bool, nonces: bool) -> None:
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    runner = web.AppRunner(make_app(redis_url, use_redis, sign, nonces), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    gc.collect()
    gc.freeze()
    await asyncio.Event().wait()


def main() -> None:
    port, options = int(sys.argv[1]), set(sys.argv[2:])
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(port, "redis" in options, "sign" in options, "nonces" in options))


if __name__ == "__main__":
    main()
