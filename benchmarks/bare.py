"""The references for callback ingest: a bare aiohttp handler that reads the whole body and
answers 200 (`/callbacks/{token}`), with the callback server's own runner options; and, to
show where the bot's time goes, the same plus `json.loads` (`/json/{token}`: what decoding
the whole document costs), and the bare handler plus the bot's own parsing of the result into
its domain objects and their stored form (`/parse/{token}`: `decode_body` + `result_or_error` +
`codec.dumps`, what any accepted callback costs before the store is touched), and that plus
one SQLite transaction storing the result as the bot stores it (`/persist/{token}`: `codec.pack`,
one INSERT, a WAL database with the store's pragmas — the least a bot that loses nothing must
do before answering). Whatever the bot does beyond the bare handler is its overhead.

And the reference for the latency figure (`/first/{chat_id}/{token}`): the least any bot
must do between a callback's arrival and its first call on the chat platform — read the body,
decode it (`decode_body`), and make one small call (sendMessage, aiohttp keep-alive) to the
same fake Telegram — then answer 200. Arrivals are stamped as the bot's are, when the handler
starts (`stamps`).

Run by the runner as `python -m benchmarks.bare` (see `benchmarks.child`).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import tempfile
from pathlib import Path

import aiohttp
from aiohttp import web

from benchmarks.child import serve
from benchmarks.common import monotonic
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


class FirstCall:
    """`/first/{chat_id}/{token}`: read, decode, one sendMessage, answer."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self._session: aiohttp.ClientSession | None = None
        self._method_url = ""

    async def telegram(self, *, url: str, token: str, connections: int) -> None:
        """Where to call; `connections` keep-alive connections are opened beforehand (with
        getMe), as the bot has its own open when the callbacks come."""
        root = f"{url.rstrip('/')}/bot{token}"
        self._method_url = f"{root}/sendMessage"
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections))

        async def get_me() -> None:
            assert self._session is not None
            async with self._session.post(f"{root}/getMe") as answer:
                await answer.read()

        await asyncio.gather(*(get_me() for _ in range(connections)))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def stamps(self) -> dict[str, float]:
        return self.arrivals

    async def handle(self, request: web.Request) -> web.Response:
        self.arrivals[request.match_info["token"]] = monotonic()
        payload = decode_body(await request.read())
        assert self._session is not None, "telegram() first"
        text = f"{len(payload.data.items) if payload.data else 0} stories"
        async with self._session.post(self._method_url, json={
                "chat_id": int(request.match_info["chat_id"]), "text": text}) as answer:
            await answer.read()
        return web.Response(status=200, body=OK, content_type="application/json")


class Persist:
    """`/persist/{token}`: the parse reference, then the result stored in one transaction."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="bench-bare-")
        self._db = sqlite3.connect(Path(self._dir.name) / "bare.sqlite3", isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE results (token TEXT PRIMARY KEY, result BLOB)")

    async def handle(self, request: web.Request) -> web.Response:
        result = result_or_error(decode_body(await request.read()), username="manystories")
        self._db.execute("BEGIN IMMEDIATE")
        self._db.execute("INSERT OR REPLACE INTO results VALUES (?, ?)",
                         [request.match_info["token"], codec.pack(result)])
        self._db.execute("COMMIT")
        return web.Response(status=200, body=OK, content_type="application/json")

    def close(self) -> None:
        self._db.close()
        self._dir.cleanup()


async def main() -> None:
    first = FirstCall()
    persist = Persist()
    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post("/callbacks/{token}", handle)
    app.router.add_post("/json/{token}", handle_json)
    app.router.add_post("/parse/{token}", handle_parse)
    app.router.add_post("/persist/{token}", persist.handle)
    app.router.add_post("/first/{chat_id}/{token}", first.handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, auto_decompress=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]

    async def url() -> str:
        return f"http://127.0.0.1:{port}"

    async def stop() -> None:
        await first.close()
        await runner.cleanup()
        persist.close()

    await serve({"url": url, "telegram": first.telegram, "stamps": first.stamps}, on_stop=stop)


if __name__ == "__main__":
    asyncio.run(main())
