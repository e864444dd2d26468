"""The references for callback ingest: a bare aiohttp handler that reads the whole body and
answers 200 (`/callbacks/{token}`), with the callback server's own runner options; and, to
show where the bot's time goes, the same plus `json.loads` (`/json/{token}`: what decoding
the whole document costs), and the bare handler plus the bot's own parsing of the result into
its domain objects and their stored form (`/parse/{token}`: `decode_body` + `result_or_error` +
`codec.dumps`, what any accepted callback costs before the store is touched). Whatever
the bot does beyond the bare handler is its overhead.

Run by the runner as `python -m benchmarks.bare` (see `benchmarks.child`).
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from benchmarks.child import serve
from bot import codec
from bot.api_payloads import decode_body, result_or_error

MAX_BODY = 8 * 1024 * 1024  # the callback server's default CALLBACK_MAX_BODY
OK = json.dumps({"status": "accepted"}).encode()


async def handle(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(status=200, body=OK, content_type="application/json")


async def handle_json(request: web.Request) -> web.Response:
    json.loads(await request.read())
    return web.Response(status=200, body=OK, content_type="application/json")


async def handle_parse(request: web.Request) -> web.Response:
    result = result_or_error(decode_body(await request.read()), username="manystories")
    codec.dumps(result)
    return web.Response(status=200, body=OK, content_type="application/json")


async def main() -> None:
    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post("/callbacks/{token}", handle)
    app.router.add_post("/json/{token}", handle_json)
    app.router.add_post("/parse/{token}", handle_parse)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, auto_decompress=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]

    async def url() -> str:
        return f"http://127.0.0.1:{port}"

    await serve({"url": url}, on_stop=runner.cleanup)


if __name__ == "__main__":
    asyncio.run(main())
