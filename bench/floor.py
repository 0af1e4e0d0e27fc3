"""The floor of the activation design on this stack: the cheapest handler of the same shape.

    .venv/bin/python bench/floor.py PORT [redis] [sign | nonces] [--low-level] [--processes N]

One `POST /v1/activations` route that reads and parses the JSON body, optionally runs one
EVALSHA through the project's lean Redis client (`redis`), answers a small JSON body and
optionally signs it with Ed25519: `sign` inline with libsodium, `nonces` with the server's
`Signer` and its helper process of precomputed nonces. No field validation, no decision, no
metrics. `--low-level` serves it the way the activation server's public API does: aiohttp's
low-level `web.Server`, the body read by the API's own `read_json_object`, and the answer
written as one buffer (`SignedJson`); without it, a `web.Application` answering with
`web.Response` (the floor of the first sessions' tables, ≈ 13 µs of CPU per request dearer).
`make bench` runs `floor.py PORT redis nonces --low-level` beside `bench/bare.py` and the
activation server, so every run shows what the activation's logic costs above the plumbing it
is built on; the README's benchmark section also quotes the other variants. With
`--processes N` it starts N processes sharing the port (SO_REUSEPORT), as `bench/bare.py` does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from binascii import b2a_base64
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import orjson
import uvloop
from aiohttp import web
from bare import health, serve_runner  # bench/ is on sys.path when run as a script
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.signing import SigningKey

from activation.api.parsing import read_json_object
from activation.api.signing import Signer
from activation.api.wire import SignedJson
from activation.cli import supervise
from activation.store.lean_redis import LeanScriptClient

PARTS = ("redis", "sign", "nonces")


def make_handler(
    redis_url: str, use_redis: bool, sign: bool, signer: Signer | None, low_level: bool
) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
    key = SigningKey(os.urandom(32))
    client = LeanScriptClient(redis_url, "return {'OK', ARGV[1]}")

    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        if low_level and request.path == "/readyz":
            return await health(request)
        if low_level:  # as the API reads its bodies
            data = await read_json_object(request)
        else:
            data = orjson.loads(await request.read())
        if use_redis:
            await client.evalsha([f"floor:{{s1}}:lic:{data['license_key']}"], [data["fingerprint"]])
        body = orjson.dumps({"valid": True, "code": "VALID", "nonce": data.get("nonce")})
        signature: str | None = None
        if sign:
            signature = "ed25519=" + b2a_base64(key.sign(body).signature, newline=False).decode()
        elif signer is not None:
            signature = signer.header(body)
        if low_level and signature is not None:
            return SignedJson(body, signature, "floor")
        headers = None if signature is None else {"X-Signature": signature}
        return web.Response(body=body, content_type="application/json", headers=headers)

    return handler


def make_app(redis_url: str, use_redis: bool, sign: bool, nonces: bool) -> web.Application:
    signer = Signer(Ed25519PrivateKey.generate()) if nonces else None
    handler = make_handler(redis_url, use_redis, sign, signer, low_level=False)

    async def helper(app: web.Application) -> AsyncIterator[None]:
        async with signing_nonces(signer):
            yield

    app = web.Application()
    app.router.add_post("/v1/activations", handler)
    app.router.add_get("/readyz", health)
    app.cleanup_ctx.append(helper)
    return app


def signing_nonces(signer: Signer | None) -> contextlib.AbstractAsyncContextManager[object]:
    """The helper process of precomputed nonces while serving, when signing with them."""
    return contextlib.nullcontext() if signer is None else signer.precomputed_nonces()


async def _serve(port: int, parts: frozenset[str], reuse_port: bool, low_level: bool) -> None:
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    if not low_level:
        app = make_app(redis_url, "redis" in parts, "sign" in parts, "nonces" in parts)
        await serve_runner(web.AppRunner(app, access_log=None), "127.0.0.1", port, reuse_port)
        return
    signer = Signer(Ed25519PrivateKey.generate()) if "nonces" in parts else None
    handler = make_handler(redis_url, "redis" in parts, "sign" in parts, signer, low_level=True)
    async with signing_nonces(signer):
        runner = web.ServerRunner(web.Server(handler, access_log=None))
        await serve_runner(runner, "127.0.0.1", port, reuse_port)


def serve(port: int, parts: frozenset[str], reuse_port: bool, low_level: bool) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve(port, parts, reuse_port, low_level))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("port", type=int)
    parser.add_argument("parts", nargs="*", choices=PARTS)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument(
        "--low-level", action="store_true", help="web.Server and one-buffer answers, as the API"
    )
    args = parser.parse_args(argv)
    parts = frozenset(args.parts)
    if args.processes <= 1:
        serve(args.port, parts, reuse_port=False, low_level=args.low_level)
        return
    supervise(serve, (args.port, parts, True, args.low_level), args.processes, "floor")


if __name__ == "__main__":
    main()
