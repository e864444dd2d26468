"""The callback endpoint over real HTTP: good, bad, duplicate, oversized, gzip, unknown tokens."""

from __future__ import annotations

import asyncio
import gzip
import json
import sqlite3
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from bot.app import App
from bot.emulator import Emulator
from bot.models import RequestState
from tests.conftest import API_KEY, AppFactory, origin
from tests.fakes.recording_adapter import RecordingAdapter


async def pending_request(make_app: AppFactory, emulator: Emulator,
                          **settings: Any) -> tuple[App, RecordingAdapter, str, dict[str, Any]]:
    """A request the API accepted but will never call back: the test plays the callback.
    Returns the app, the chat, the callback URL and the body the API would have sent."""
    emulator.config.drop_callbacks = True
    app, chat = await make_app(**settings)
    await app.service.set_key(origin(admin=True), API_KEY)
    await app.service.request_stories(origin(), "natgeo")
    await emulator.wait_for_callbacks(1)  # produced (and charged), then dropped
    record = emulator.requests[0]
    assert record.webhook_url and record.result
    return app, chat, record.webhook_url, record.result


async def test_good_callback_is_answered_then_delivered(make_app: AppFactory,
                                                        emulator: Emulator) -> None:
    app, chat, url, body = await pending_request(make_app, emulator)
    async with httpx.AsyncClient() as http:
        response = await http.post(url, json=body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    await app.wait_idle(timeout=10)
    assert len(chat.items()) == 5
    assert await app.store.ledger_total() == 1


async def test_duplicate_and_replayed_callbacks(make_app: AppFactory, emulator: Emulator) -> None:
    app, chat, url, body = await pending_request(make_app, emulator)
    async with httpx.AsyncClient() as http:
        first = await http.post(url, json=body)
        await app.wait_idle(timeout=10)
        again = await http.post(url, json=body)
        altered = await http.post(url, json={**body, "creditsCharged": 50})
    assert (first.status_code, again.status_code, altered.status_code) == (200, 200, 200)
    assert again.json() == {"status": "duplicate"}
    await app.wait_idle(timeout=10)
    assert len(chat.items()) == 5
    assert await app.store.ledger_total() == 1


async def test_unknown_and_malformed_tokens_are_404(make_app: AppFactory,
                                                    emulator: Emulator) -> None:
    app, chat, url, body = await pending_request(make_app, emulator)
    base = url.rsplit("/", 1)[0]
    token = url.rsplit("/", 1)[1]
    guesses = [token[:-1] + ("A" if token[-1] != "A" else "B"), "x" * 43, "short",
               "..%2Fhealthz", "%00", token + "x"]
    async with httpx.AsyncClient() as http:
        for guess in guesses:
            response = await http.post(f"{base}/{guess}", json=body)
            assert response.status_code == 404, guess
    assert chat.items() == []
    assert await app.store.ledger_total() == 0


async def open_post(url: str, length: int, first: bytes = b"") -> tuple[
        asyncio.StreamReader, asyncio.StreamWriter]:
    """A POST whose head announces `length` bytes of body, of which only `first` is sent."""
    where = urlsplit(url)
    reader, writer = await asyncio.open_connection(where.hostname, where.port)
    writer.write(f"POST {where.path} HTTP/1.1\r\nHost: {where.netloc}\r\n"
                 f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
                 .encode() + first)
    await writer.drain()
    return reader, writer


async def answer_of(reader: asyncio.StreamReader) -> tuple[int, Any]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    status = int(head.split(b" ", 2)[1])
    length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    return status, json.loads(await asyncio.wait_for(reader.readexactly(length), 5))


async def test_guesses_and_replays_are_answered_without_reading_the_body(
        make_app: AppFactory, emulator: Emulator) -> None:
    """The body never comes (the server's read timeout is 30 s): the answer does not wait."""
    app, chat, url, body = await pending_request(make_app, emulator)
    guess = url[:-4] + ("AAAA" if not url.endswith("AAAA") else "BBBB")
    reader, writer = await open_post(guess, 10_000_000, b'{"success": tr')
    assert await answer_of(reader) == (404, {"error": "unknown token"})
    writer.close()
    await writer.wait_closed()
    async with httpx.AsyncClient() as http:
        assert (await http.post(url, json=body)).status_code == 200
    await app.wait_idle(timeout=10)
    reader, writer = await open_post(url, 10_000_000)  # a replay of a delivered request
    assert await answer_of(reader) == (200, {"status": "duplicate"})
    writer.close()
    await writer.wait_closed()
    assert len(chat.items()) == 5
    assert await app.store.ledger_total() == 1


async def test_a_request_expiring_while_its_callback_arrives_is_charged_as_late(
        make_app: AppFactory, emulator: Emulator) -> None:
    app, chat, url, body = await pending_request(make_app, emulator, request_timeout=0.3)
    data = json.dumps(body).encode()
    reader, writer = await open_post(url, len(data), data[:100])  # looked up: processing
    await chat.wait_for(lambda shown: any("did not answer" in s.text for s in shown))
    assert await app.store.requests_in_state(RequestState.EXPIRED)
    writer.write(data[100:])
    assert await answer_of(reader) == (200, {"status": "late"})
    writer.close()
    await writer.wait_closed()
    await app.wait_idle(timeout=10)
    assert chat.items() == []
    assert await app.store.ledger_total() == emulator.total_charged == 1


async def test_a_failing_store_gets_a_500_and_the_callback_is_taken_when_resent(
        make_app: AppFactory, emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    app, chat, url, body = await pending_request(make_app, emulator)

    async def locked(token_hash: str) -> None:
        raise sqlite3.OperationalError("database is locked")

    with monkeypatch.context() as patched:
        patched.setattr(app.store, "find_by_token", locked)
        async with httpx.AsyncClient() as http:
            failed = await http.post(url, json=body)
    assert (failed.status_code, failed.json()) == (500, {"error": "internal error"})
    async with httpx.AsyncClient() as http:  # the API sends it again: nothing was lost
        assert (await http.post(url, json=body)).status_code == 200
    await app.wait_idle(timeout=10)
    assert len(chat.items()) == 5
    assert await app.store.ledger_total() == 1


async def test_bad_json_and_unknown_shapes(make_app: AppFactory, emulator: Emulator) -> None:
    app, chat, url, body = await pending_request(make_app, emulator)
    async with httpx.AsyncClient() as http:
        not_json = await http.post(url, content=b"{not json", headers={
            "content-type": "application/json"})
        binary = await http.post(url, content=b"\xff\xfe\x00garbage")
        odd = await http.post(url, json={"hello": "world"})
        listed = await http.post(url, json=[1, 2, 3])
    assert not_json.status_code == 400
    assert binary.status_code == 400
    assert odd.status_code == 422
    assert listed.status_code == 422
    # nothing was delivered; the request still waits for a real result
    record = (await app.store.requests_in_state(RequestState.PROCESSING))[0]
    assert record.username == "natgeo"
    async with httpx.AsyncClient() as http:
        assert (await http.post(url, json=body)).status_code == 200
    await app.wait_idle(timeout=10)
    assert len(chat.items()) == 5


async def test_failure_callback_tells_the_chat(make_app: AppFactory, emulator: Emulator) -> None:
    app, chat, url, body = await pending_request(make_app, emulator)
    async with httpx.AsyncClient() as http:
        response = await http.post(url, json={"success": False, "error": "User not found",
                                              "requestId": "r1"})
    assert response.status_code == 200
    await app.wait_idle(timeout=10)
    assert chat.texts()[-1] == "No Instagram account has that username."


async def test_oversized_body_is_413(make_app: AppFactory, emulator: Emulator) -> None:
    app, chat, url, body = await pending_request(make_app, emulator, callback_max_body=64 * 1024)
    padded = {**body, "padding": "x" * (128 * 1024)}
    async with httpx.AsyncClient() as http:
        announced = await http.post(url, json=padded)

        async def stream() -> Any:  # no Content-Length: the cap must hold while streaming
            data = json.dumps(padded).encode()
            for start in range(0, len(data), 8192):
                yield data[start:start + 8192]

        chunked = await http.post(url, content=stream())
    assert announced.status_code == 413
    assert chunked.status_code == 413
    assert chat.items() == []


async def test_gzip_body_accepted_and_gzip_bomb_refused(make_app: AppFactory,
                                                        emulator: Emulator) -> None:
    app, chat, url, body = await pending_request(make_app, emulator, callback_max_body=256 * 1024)
    bomb = gzip.compress(b"[" + b" " * (64 * 1024 * 1024) + b"]")  # 64 MB of JSON in ~64 KB
    assert len(bomb) < 256 * 1024
    async with httpx.AsyncClient() as http:
        refused = await http.post(url, content=bomb, headers={
            "content-encoding": "gzip", "content-type": "application/json"})
        accepted = await http.post(url, content=gzip.compress(json.dumps(body).encode()),
                                   headers={"content-encoding": "gzip",
                                            "content-type": "application/json"})
    assert refused.status_code == 413
    assert accepted.status_code == 200
    await app.wait_idle(timeout=10)
    assert len(chat.items()) == 5


async def test_healthz(make_app: AppFactory, emulator: Emulator) -> None:
    app, chat = await make_app()
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{app.callback_url}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": True, "adapters": {"test": True},
                               "pending": 0}
    chat.running = False
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{app.callback_url}/healthz")
    assert response.status_code == 503
    assert response.json()["status"] == "degraded"
