"""The callback web server (aiohttp.web): one for the whole process.

`POST /callbacks/{token}` — the token in the URL is the only proof a callback is genuine
(the API documents no signature), so it is random (256 bits), stored only as a hash and
compared in constant time. It is looked up before the body is read: an unknown token gets 404
and a replay for a settled request 200 "duplicate", neither read. The body is read as a stream
and cut off past the cap; gzip bodies are decompressed here, incrementally and bounded, so a
gzip bomb stops at the cap too (aiohttp's own decompression is off: it can leave a handler
waiting on a malformed deflate stream). Other encodings get 415, and a client that trickles its
body is cut off after `read_timeout`. A valid result is persisted with its credits in one
transaction; then 200 is answered at once and delivery runs in the background.
`GET /healthz` reports the database, the adapters and the pending count."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import zlib
from collections.abc import Callable

import aiohttp
from aiohttp import web

from bot.api_payloads import decode_body
from bot.service import StoriesService
from bot.store import Store
from bot.turns import RECEIVE

log = logging.getLogger(__name__)

TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{16,128}")
GZIP = ("gzip", "x-gzip")


class BodyTooLarge(Exception):
    pass


class BadBody(Exception):
    pass


def _json(status: int, payload: dict[str, object]) -> web.Response:
    return web.Response(status=status, body=json.dumps(payload).encode(),
                        content_type="application/json")


class CallbackServer:
    def __init__(self, service: StoriesService, store: Store, *, max_body: int,
                 adapters_running: Callable[[], dict[str, bool]] | None = None,
                 read_timeout: float = 30.0) -> None:
        self._service = service
        self._store = store
        self._max_body = max_body
        self._read_timeout = read_timeout
        self._adapters_running = adapters_running or (lambda: {})
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self.app = web.Application(client_max_size=max_body)
        self.app.router.add_post("/callbacks/{token}", self.handle_callback)
        self.app.router.add_get("/healthz", self.handle_health)

    async def start(self, host: str, port: int) -> int:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False,
                                     auto_decompress=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server  # the bound socket tells the port the OS chose for port 0
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        log.info("callback server listening on %s:%s", host, self.port)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _read_capped(self, request: web.Request, gzipped: bool) -> bytes:
        """The (decompressed) body; `BodyTooLarge` past the cap, `BadBody` if undecodable."""
        if request.content_length is not None and request.content_length > self._max_body:
            raise BodyTooLarge
        body = bytearray()
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None
        received = 0
        async for chunk in request.content.iter_chunked(64 * 1024):
            received += len(chunk)
            if received > self._max_body:
                raise BodyTooLarge
            if inflater is None:
                body += chunk
                continue
            data = chunk
            while data:
                room = self._max_body + 1 - len(body)
                try:
                    body += inflater.decompress(data, room)
                except zlib.error:
                    raise BadBody from None
                if len(body) > self._max_body:
                    raise BodyTooLarge
                data = inflater.unconsumed_tail
        if inflater is not None and not inflater.eof:
            raise BadBody
        return bytes(body)

    async def handle_callback(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        # Unknown tokens and settled requests are answered before the body is read (aiohttp
        # discards what the client still sends): a guess or a replay costs one lookup.
        try:
            record = await self._service.callback_request(token) \
                if TOKEN_RE.fullmatch(token) else None
        except Exception:
            log.exception("callback handling failed")
            return _json(500, {"error": "internal error"})
        if record is None:
            log.info("callback refused: unknown token (404)")
            return _json(404, {"error": "unknown token"})
        if not self._service.wants_body(record):
            return _json(200, {"status": "duplicate"})
        encoding = request.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in ("", "identity", *GZIP):
            return _json(415, {"error": "unsupported content-encoding (use gzip or none)"})
        try:
            async with asyncio.timeout(self._read_timeout):
                body = await self._read_capped(request, encoding in GZIP)
        except BodyTooLarge:
            log.warning("callback body over %d bytes refused", self._max_body)
            return _json(413, {"error": "body too large"})
        except TimeoutError:
            log.info("callback body not received within %g s", self._read_timeout)
            return _json(408, {"error": "body too slow"})
        except (BadBody, aiohttp.ClientPayloadError, web.HTTPException, ValueError) as exc:
            log.info("callback body unreadable: %s", type(exc).__name__)
            return _json(400, {"error": "unreadable body"})
        # Decoding and persisting a callback is ~1-2 ms: a burst of them takes turns with
        # the rest of the loop (`bot.turns`).
        async with self._service.turns.section(RECEIVE):
            try:
                payload = decode_body(body)
            except (UnicodeDecodeError, ValueError, RecursionError):
                return _json(400, {"error": "body is not JSON"})
            try:
                outcome = await self._service.handle_callback(record, payload, raw=body)
            except Exception:
                log.exception("callback handling failed")
                return _json(500, {"error": "internal error"})
        if outcome.status >= 400:
            log.info("callback refused: %s (%d)", outcome.reason, outcome.status)
        return _json(outcome.status, {"status": outcome.reason})

    async def handle_health(self, request: web.Request) -> web.Response:
        db_ok = await self._store.ping()
        pending = await self._store.count_pending() if db_ok else None
        adapters = self._adapters_running()
        healthy = db_ok and all(adapters.values())
        return _json(200 if healthy else 503, {
            "status": "ok" if healthy else "degraded",
            "database": db_ok,
            "adapters": adapters,
            "pending": pending,
        })
