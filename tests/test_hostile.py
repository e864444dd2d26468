"""Hostile input: property-based tests of the parsers, and garbage thrown at the endpoint.

No input may raise past the boundary (only our own `StoriesBotError`s, which carry a sentence
for the chat), and the callback endpoint answers 4xx, never 5xx, to garbage.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.api_payloads import decode_body, result_or_error
from bot.app import App
from bot.emulator import Emulator, EmulatorConfig
from bot.errors import InvalidInput, InvalidUsername, StoriesBotError
from bot.models import RequestState
from bot.service import split_fresh
from bot.spending import parse_limits
from bot.usernames import _USERNAME, normalise_username
from tests.conftest import API_KEY, make_settings, origin
from tests.fakes.recording_adapter import RecordingAdapter

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)

# Bodies shaped like the API's, with every field replaced by anything.
item_like = st.fixed_dictionaries({}, optional={
    "id": json_values, "pk": json_values, "taken_at": json_values, "expiring_at": json_values,
    "media_type": json_values, "video_duration": json_values,
    "image_versions2": st.fixed_dictionaries({}, optional={"candidates": st.lists(
        st.fixed_dictionaries({}, optional={"url": json_values, "width": json_values,
                                            "height": json_values}), max_size=3)}) | json_values,
    "video_versions": st.lists(st.fixed_dictionaries({}, optional={
        "url": st.just("https://x/v.mp4") | json_values, "width": json_values}), max_size=3)
    | json_values,
})
body_like = st.fixed_dictionaries({}, optional={
    "success": json_values, "requestId": json_values, "error": json_values,
    "creditsCharged": json_values, "itemCount": json_values, "status": json_values,
    "data": st.fixed_dictionaries({}, optional={
        "id": json_values, "items": st.lists(item_like, max_size=4) | json_values,
        "user": st.dictionaries(st.sampled_from(["pk", "username", "is_private", "full_name"]),
                                json_values) | json_values}) | json_values,
})

# Bodies with the fields' usual JSON types but any values in them: the shapes `decode_body`
# reads on its fast path.
scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
           | st.text(max_size=12) | st.sampled_from(["1700000000", "1.7e9", "2", " 7.5 ", "nan"]))
urls = st.sampled_from(["https://x/a.jpg?sig=1", "http://y/b.mp4", "ftp://z/c", ""]) | scalars
variant = st.fixed_dictionaries({}, optional={"url": urls, "width": scalars,
                                              "height": scalars, "extra": json_values})
typed_item = st.fixed_dictionaries({}, optional={
    "id": scalars, "pk": scalars, "taken_at": scalars, "expiring_at": scalars,
    "media_type": st.sampled_from([1, 2, 8, "1", "2", None]) | scalars,
    "video_duration": scalars, "caption": json_values,
    "image_versions2": st.none() | st.fixed_dictionaries({}, optional={
        "candidates": st.none() | st.lists(variant, max_size=3)}),
    "video_versions": st.none() | st.lists(variant, max_size=3),
})
success = st.sampled_from([True, True, True, False, None])
typed_body = st.fixed_dictionaries({"success": success}, optional={
    "requestId": scalars, "creditsCharged": json_values, "itemCount": json_values,
    "error": st.none() | st.sampled_from(["User not found", "private", "rate limit", ""]),
    "message": st.none() | st.text(max_size=20), "status": st.none() | st.text(max_size=10),
    "data": st.fixed_dictionaries({"items": st.lists(typed_item, max_size=5)}, optional={
        "id": scalars,
        "user": st.none() | st.fixed_dictionaries({}, optional={
            "pk": scalars, "id": scalars, "username": st.none() | st.text(max_size=10),
            "is_private": st.none() | st.booleans(), "full_name": st.none() | st.text(max_size=10),
        })}),
})

@settings(max_examples=300, deadline=None)
@given(body=body_like | json_values)
def test_callback_parser_never_raises_past_the_boundary(body: Any) -> None:
    try:
        result = result_or_error(body, username="someone")
    except StoriesBotError as exc:
        assert exc.user_message
        return
    for item in result.items:
        assert item.url.startswith(("http://", "https://"))
        assert item.expiring_at > item.taken_at


def _outcome(body: Any) -> object:
    """What `result_or_error` makes of a body: the result, or the error's type and text.
    Items without any timestamp are dated "now", and their fallback id carries that second:
    both are blanked, since the two readings run microseconds apart."""
    try:
        result = result_or_error(body, username="someone")
    except StoriesBotError as exc:
        return (type(exc), str(exc))
    undated = {"taken_at": None, "expiring_at": None}
    items = tuple(
        msgspec.structs.replace(item, id=re.sub(r"^\d+:", "T:", item.id), **undated)
        if abs(item.taken_at.timestamp() - time.time()) < 90_000 else item
        for item in result.items)
    return msgspec.structs.replace(result, items=items)


@settings(max_examples=400, deadline=None)
@given(body=typed_body | body_like)
def test_fast_and_tolerant_readings_agree(body: Any) -> None:
    """`decode_body` (msgspec, narrow types) and the pydantic path give the same answer for
    any API-shaped body; a body the narrow types refuse is read by the pydantic path."""
    raw = json.dumps(body).encode()
    assert _outcome(decode_body(raw)) == _outcome(json.loads(raw))


@settings(max_examples=500, deadline=None)
@given(text=st.text(max_size=400) | st.from_regex(r"@?[A-Za-z0-9._]{0,35}", fullmatch=True)
       | st.builds(lambda u, q: f"https://www.instagram.com/{u}/{q}",
                   st.text(max_size=40), st.text(max_size=20)))
def test_username_parser(text: str) -> None:
    try:
        username = normalise_username(text)
    except InvalidUsername as exc:
        assert exc.user_message
        return
    assert _USERNAME.fullmatch(username)
    assert username == username.lower() and username.isascii()


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=60) | st.lists(
    st.sampled_from(["daily", "monthly", "off", "none", "5", "-1", "1e9", "=", "x"]),
    max_size=6).map(" ".join))
def test_limits_parser(text: str) -> None:
    try:
        caps = parse_limits(text)
    except InvalidInput as exc:
        assert exc.user_message
        return
    assert set(caps) <= {"daily", "monthly"}
    assert all(v is None or (isinstance(v, int) and v >= 0) for v in caps.values())


@given(text=st.text(max_size=60))
def test_fresh_flag_parser(text: str) -> None:
    argument, fresh = split_fresh(text)
    assert isinstance(argument, str) and isinstance(fresh, bool)


# The endpoint, running in a thread of its own so hypothesis drives it synchronously. -------


class LiveApp:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro: Any, timeout: float = 20) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> None:
        self.emulator = Emulator(EmulatorConfig(keys={API_KEY: 1000}, drop_callbacks=True))
        await self.emulator.start()
        self.chat = RecordingAdapter()
        settings = make_settings(self.tmp_path, self.emulator, callback_max_body=64 * 1024)
        self.app = App(settings, adapters=[lambda *_: self.chat], public_url="auto")
        await self.app.start()
        await self.app.service.set_key(origin(admin=True), API_KEY)
        await self.app.service.request_stories(origin(), "natgeo")
        await self.emulator.wait_for_callbacks(1)
        self.url = self.emulator.requests[0].webhook_url
        self.base = self.app.callback_url

    async def _stop(self) -> None:
        await self.app.stop()
        await self.emulator.stop()
        current = asyncio.current_task()
        leftovers = [t for t in asyncio.all_tasks() if t is not current]
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)

    def start(self) -> None:
        self.call(self._start())

    def stop(self) -> None:
        self.call(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    live = LiveApp(tmp_path_factory.mktemp("hostile"))
    live.start()
    try:
        yield live
    finally:
        live.stop()


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=2048) | json_values.map(lambda v: json.dumps(v).encode())
       | body_like.map(lambda v: json.dumps(v).encode()),
       encoding=st.sampled_from([None, "gzip", "deflate", "br", "identity", "x-bogus"]))
def test_endpoint_answers_4xx_to_garbage(live: LiveApp, body: bytes,
                                         encoding: str | None) -> None:
    headers = {"content-type": "application/json"}
    if encoding:
        headers["content-encoding"] = encoding
    with httpx.Client(timeout=10) as http:
        response = http.post(live.url, content=body, headers=headers)
    assert response.status_code < 500, (response.status_code, body[:80])


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=st.text(min_size=1, max_size=200)
       | st.from_regex(r"[A-Za-z0-9_-]{16,128}", fullmatch=True))
def test_guessed_tokens_are_refused(live: LiveApp, token: str) -> None:
    from urllib.parse import quote

    with httpx.Client(timeout=10) as http:
        response = http.post(f"{live.base}/callbacks/{quote(token, safe='')}",
                             json={"success": True})
    assert 400 <= response.status_code < 500


def test_still_healthy_after_the_barrage(live: LiveApp) -> None:
    """After every hostile test above the app still answers, and garbage created nothing: the
    one request is the test's own (a well-formed body with the right token is genuine, so it
    may have settled it)."""
    with httpx.Client(timeout=5) as http:
        assert http.get(f"{live.base}/healthz").json()["database"] is True
    every_state = live.call(live.app.store.requests_in_state(*RequestState))
    assert len(every_state) == 1


def test_slow_client_does_not_block_others(live: LiveApp) -> None:
    """A client that sends headers and then trickles its body holds only its own request."""
    import socket

    host, port = live.base.removeprefix("http://").split(":")
    path = live.url.split(live.base, 1)[1]
    slow = socket.create_connection((host, int(port)))
    try:
        slow.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Content-Length: 100000\r\n\r\n{".encode())
        with httpx.Client(timeout=5) as http:
            health = http.get(f"{live.base}/healthz")
        assert health.status_code == 200
    finally:
        slow.close()
