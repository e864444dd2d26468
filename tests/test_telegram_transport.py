"""`AiohttpRequest`, python-telegram-bot's transport, against a small aiohttp server on
127.0.0.1: what it sends (form fields, streamed files), and how each kind of failure is told
apart (never sent / maybe sent / timed out), with no bot token in any error text."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import BodyPartReader, web
from telegram import Bot, InputFile
from telegram.error import TimedOut
from telegram.request import RequestData
from telegram.request._requestparameter import RequestParameter

from adapters.telegram.sending import definitely_not_sent
from adapters.telegram.transport import AiohttpRequest, MaybeSent, NotSent
from tests.conftest import KNOWN_SECRETS

TOKEN = "123456:TransportTestTokenABCDEFghijkl"
KNOWN_SECRETS.add(TOKEN)  # no log line or exception text of the suite may carry it


class Server:
    """Answers `/bot<token>/<method>`: getMe, echo (the fields it got; a file's size),
    drop (closes the connection unanswered), slow (answers once released)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.slow_arrivals: asyncio.Queue[None] = asyncio.Queue()
        self.app = web.Application()
        self.app.router.add_post("/bot{token}/{method}", self.handle)
        self.runner = web.AppRunner(self.app)
        self.root = ""

    async def handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if method == "slow":
            self.slow_arrivals.put_nowait(None)
            await self.release.wait()
            return web.json_response({"ok": True, "result": True})
        if method == "drop":
            await request.read()
            assert request.transport is not None
            request.transport.close()  # the connection dies before any answer
            return web.Response()
        if method == "getMe":
            return web.json_response({"ok": True, "result": {
                "id": 123456, "is_bot": True, "first_name": "T", "username": "TBot"}})
        fields: dict[str, object] = {}
        if request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                assert isinstance(part, BodyPartReader)
                content = await part.read()
                fields[part.name or ""] = len(content) if part.filename else content.decode()
        elif request.content_type == "application/json":
            fields = await request.json()
        else:
            fields = {name: str(value) for name, value in (await request.post()).items()}
        return web.json_response({"ok": True, "result": {
            "content_type": request.content_type, "fields": fields}})

    async def __aenter__(self) -> Server:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.root = f"http://127.0.0.1:{port}/bot{TOKEN}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        await self.runner.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async with Server() as started:
        yield started


@pytest.fixture
async def request_() -> AsyncIterator[AiohttpRequest]:
    transport = AiohttpRequest(4, read_timeout=5, connect_timeout=2, pool_timeout=1)
    await transport.initialize()
    yield transport
    await transport.shutdown()
    assert transport.is_closed


def data(**values: object) -> RequestData:
    return RequestData([RequestParameter.from_input(k, v) for k, v in values.items()])


async def test_parameters_are_sent_as_typed_json(server: Server,
                                                 request_: AiohttpRequest) -> None:
    status, body = await request_.do_request(
        f"{server.root}/echo", "POST",
        data(chat_id=-100, text="é ✓ & =", flags=[1, 2], media=[{"type": "photo"}]))
    assert status == 200
    result = json.loads(body)["result"]
    assert result["content_type"] == "application/json"
    assert result["fields"] == {"chat_id": -100, "text": "é ✓ & =", "flags": [1, 2],
                                "media": [{"type": "photo"}]}
    # an integer orjson cannot encode (beyond 64 bits) is sent all the same
    status, body = await request_.do_request(f"{server.root}/echo", "POST", data(id=2**70))
    assert json.loads(body)["result"]["fields"] == {"id": 2**70}


async def test_an_open_file_is_streamed_and_can_be_sent_again(
        server: Server, request_: AiohttpRequest, tmp_path: Path) -> None:
    """A retry sends the same open file again: the transport must not close the caller's
    handle, and must send from where the caller put it (the start)."""
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"\x00\x01" * 300_000)
    with path.open("rb") as handle:
        for _attempt in range(2):
            handle.seek(0)
            upload = InputFile(handle, filename="clip.mp4", read_file_handle=False)
            status, body = await request_.do_request(
                f"{server.root}/echo", "POST", data(chat_id=1, video=upload))
            assert status == 200
            result = json.loads(body)["result"]
            assert result["content_type"] == "multipart/form-data"
            assert result["fields"] == {"chat_id": "1", "video": 600_000}
        assert not handle.closed


async def test_refused_connection_is_not_sent(request_: AiohttpRequest) -> None:
    async with Server() as server:
        root = server.root
    with pytest.raises(NotSent) as caught:  # the server is gone: connection refused
        await request_.do_request(f"{root}/echo", "POST", data(chat_id=1))
    assert definitely_not_sent(caught.value)
    assert TOKEN not in str(caught.value) and TOKEN.split(":")[1] not in repr(caught.value)


async def test_dropped_connection_may_have_been_sent(server: Server,
                                                     request_: AiohttpRequest) -> None:
    with pytest.raises(MaybeSent) as caught:
        await request_.do_request(f"{server.root}/drop", "POST", data(chat_id=1))
    assert not definitely_not_sent(caught.value)
    assert TOKEN not in str(caught.value)


async def test_a_slow_answer_times_out(server: Server) -> None:
    transport = AiohttpRequest(1, read_timeout=0.2)
    await transport.initialize()
    try:
        with pytest.raises(TimedOut) as caught:
            await transport.do_request(f"{server.root}/slow", "POST", data(chat_id=1))
        assert not definitely_not_sent(caught.value)
        # the one connection is busy until the server answers: the next call waits for it,
        # then fails as never sent
        busy = asyncio.create_task(transport.do_request(
            f"{server.root}/slow", "POST", data(chat_id=1), read_timeout=5))
        for _ in range(2):  # the timed-out call, then this one, have reached the server
            await server.slow_arrivals.get()
        with pytest.raises(NotSent):
            await transport.do_request(f"{server.root}/echo", "POST", data(chat_id=1),
                                       pool_timeout=0.1, connect_timeout=0.1)
        server.release.set()
        assert (await busy)[0] == 200
    finally:
        await transport.shutdown()


async def test_a_bot_on_it_makes_calls_and_refuses_before_initialize(server: Server) -> None:
    transport = AiohttpRequest(2)
    with pytest.raises(RuntimeError, match="not initialized"):
        await transport.do_request(f"{server.root}/echo", "POST")
    bot = Bot(TOKEN, base_url=server.root.removesuffix(TOKEN), request=transport,
              get_updates_request=AiohttpRequest(1))
    async with bot:
        result = await bot.do_api_request("echo", api_kwargs={"chat_id": 5})
    assert result["fields"] == {"chat_id": 5}
    assert transport.is_closed


async def test_a_proxy_from_the_environment_is_used(server: Server,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP(S)_PROXY is honoured, as python-telegram-bot's httpx transport does; the test
    server plays the proxy (it routes the absolute-form request by its path)."""
    monkeypatch.setenv("HTTP_PROXY", server.root.split("/bot")[0])
    transport = AiohttpRequest(1)
    await transport.initialize()
    try:
        status, body = await transport.do_request(
            f"http://api.telegram.invalid/bot{TOKEN}/echo", "POST", data(chat_id=7))
    finally:
        await transport.shutdown()
    assert status == 200
    assert json.loads(body)["result"]["fields"] == {"chat_id": 7}
