"""The reference for callback ingest: a bare aiohttp handler on the same route that reads the
whole body and answers 200, with the callback server's own runner options. Whatever the bot
does beyond this (checking the token, parsing, persisting, handing off) is its overhead.

Run by the runner as `python -m benchmarks.bare` (see `benchmarks.child`).
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from benchmarks.child import serve

MAX_BODY = 8 * 1024 * 1024  # the callback server's default CALLBACK_MAX_BODY
OK = json.dumps({"status": "accepted"}).encode()


async def handle(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(status=200, body=OK, content_type="application/json")


async def main() -> None:
    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post("/callbacks/{token}", handle)
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
