"""The floor of the activation design on this stack: the cheapest handler of the same shape.

    .venv/bin/python bench/floor.py PORT [redis] [sign | nonces] [--processes N]

One `POST /v1/activations` route that reads and parses the JSON body, optionally runs one
EVALSHA through the project's lean Redis client (`redis`), answers a small JSON body and
optionally signs it with Ed25519: `sign` inline with libsodium, `nonces` with the server's
`Signer` and its helper process of precomputed nonces. No validation, no decision, no
metrics. `make bench` runs `floor.py PORT redis nonces` beside `bench/bare.py` and the
activation server, so every run shows what the signature and the Redis round trip cost by
themselves; the README's benchmark section also quotes the other variants. With
`--processes N` it starts N processes sharing the port (SO_REUSEPORT), as `bench/bare.py` does.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from binascii import b2a_base64
from collections.abc import AsyncIterator, Sequence

import orjson
import uvloop
from aiohttp import web
from bare import health, serve_runner  # bench/ is on sys.path when run as a script
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.signing import SigningKey

from activation.api.nonces import NonceSource
from activation.api.signing import Signer
from activation.cli import supervise
from activation.store.lean_redis import LeanScriptClient

PARTS = ("redis", "sign", "nonces")


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
    app.router.add_get("/readyz", health)
    if nonces:
        app.cleanup_ctx.append(helper)
    return app


async def _serve(port: int, parts: frozenset[str], reuse_port: bool) -> None:
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    app = make_app(redis_url, "redis" in parts, "sign" in parts, "nonces" in parts)
    await serve_runner(web.AppRunner(app, access_log=None), "127.0.0.1", port, reuse_port)


def serve(port: int, parts: frozenset[str], reuse_port: bool) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve(port, parts, reuse_port))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("port", type=int)
    parser.add_argument("parts", nargs="*", choices=PARTS)
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args(argv)
    parts = frozenset(args.parts)
    if args.processes <= 1:
        serve(args.port, parts, reuse_port=False)
        return
    supervise(serve, (args.port, parts, True), args.processes, "floor")


if __name__ == "__main__":
    main()
