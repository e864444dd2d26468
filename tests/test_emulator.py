"""The emulator over real HTTP: every other end-to-end test trusts it, so it is tested first."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp import web

from bot.emulator import ASSETS, Emulator, EmulatorConfig, ItemSpec, serve
from bot.emulator.cdn import VirtualFile, parse_range
from bot.emulator.ratelimit import RateLimiter

KEY = "sk_test_emulator_0001"
NOW = 1_775_659_002  # 8 Apr 2026, when the natgeo sample was captured


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Receiver:
    """A webhook endpoint answering the statuses it is given (then 200), recording bodies."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.bodies: list[dict[str, Any]] = []
        self.content_types: list[str] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _handle(self, request: web.Request) -> web.Response:
        self.content_types.append(request.content_type)
        self.bodies.append(json.loads(await request.read()))
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/callbacks/{token}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/callbacks/tok3n-s3cret"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
        yield client


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator(EmulatorConfig(keys={KEY: 100}), clock=Clock()) as emu:
        yield emu


async def ask(http: httpx.AsyncClient, emu: Emulator, username: str = "natgeo", *,
              key: str | None = KEY, **extra: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return await http.post(emu.stories_url, json={"username": username, **extra}, headers=headers)


# -- shipped media --------------------------------------------------------------------------

def test_shipped_media_are_real_and_small() -> None:
    emu = Emulator()
    total = 0
    for name, asset in ASSETS.items():
        data = emu.media_bytes(name)
        total += len(data)
        if asset.content_type == "image/jpeg":
            assert data[:3] == b"\xff\xd8\xff" and data[-2:] == b"\xff\xd9", name
            assert struct.pack(">HH", asset.height, asset.width) in data, name  # SOF dimensions
        else:
            assert data[4:8] == b"ftyp" and b"avc1" in data and b"moov" in data, name
    assert len({emu.media_bytes(n) for n in ASSETS}) == len(ASSETS)
    assert total < 300 * 1024


# -- auth, body, credits, rate limits -------------------------------------------------------

async def test_missing_or_unknown_key_is_401(emulator: Emulator,
                                             http: httpx.AsyncClient) -> None:
    for response in (
        await ask(http, emulator, key=None),
        await ask(http, emulator, key="sk_live_nope"),
        await http.post(emulator.stories_url, json={"username": "natgeo"},
                        headers={"Authorization": f"Basic {KEY}"}),
    ):
        assert response.status_code == 401
        assert response.json() == {"error": "Unauthorized", "message": "Invalid or expired token"}
    assert emulator.total_charged == 0
    assert all(KEY not in repr(record) for record in emulator.requests)


@pytest.mark.parametrize("body", [
    b"not json", b"[]", b"{}", b'{"username": ""}', b'{"username": 42}',
    b'{"username": "natgeo", "webhookUrl": "ftp://x.example/cb"}',
    b'{"username": "natgeo", "webhookUrl": "not a url"}',
])
async def test_bad_body_is_400(emulator: Emulator, http: httpx.AsyncClient, body: bytes) -> None:
    response = await http.post(emulator.stories_url, content=body, headers={
        "Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert response.status_code == 400
    payload = response.json()
    assert payload["success"] is False and payload["error"] and payload["requestId"]
    assert emulator.balance(KEY) == 100


async def test_out_of_credits_is_402_and_failures_cost_nothing(http: httpx.AsyncClient) -> None:
    async with Emulator(EmulatorConfig(keys={KEY: 2})) as emu:
        assert (await ask(http, emu, "natgeo")).json()["creditsCharged"] == 1
        assert (await ask(http, emu, "nobody.here")).json()["success"] is False
        assert (await ask(http, emu, "nostories")).json()["creditsCharged"] == 1
        response = await ask(http, emu, "natgeo")
        assert response.status_code == 402
        assert response.json() == {"error": "Payment Required", "message": "Insufficient credits"}
        assert emu.charged == {KEY: 2} and emu.total_charged == 2 and emu.balance(KEY) == 0
        emu.set_balance(KEY, 1)
        assert (await ask(http, emu)).status_code == 200
        assert emu.charged[KEY] == 3
        assert [r.credits_charged for r in emu.requests] == [1, 0, 1, 0, 1]


async def test_rate_limit_429_with_retry_after(http: httpx.AsyncClient) -> None:
    clock = Clock()
    config = EmulatorConfig(keys={KEY: 100, "other": 100}, rate_per_minute=5)
    async with Emulator(config, clock=clock) as emu:
        for _ in range(5):
            assert (await ask(http, emu, "nobody")).status_code == 200
        clock.now += 20
        response = await ask(http, emu)
        assert response.status_code == 429
        assert response.json() == {"error": "Too Many Requests", "message": "Rate limit exceeded"}
        assert response.headers["Retry-After"] == "40"
        assert (await ask(http, emu, key="other")).status_code == 200  # limits are per key
        clock.now += 40
        assert (await ask(http, emu)).status_code == 200
        assert emu.charged[KEY] == 1  # a refused request costs nothing


def test_rate_limiter_windows() -> None:
    limiter = RateLimiter(lambda: (60, 100, 120), lambda: "sliding")
    t = 1_000_000.0
    for i in range(100):
        assert limiter.hit("k", t + i * 2).allowed  # 30 a minute: only the hour limit bites
    verdict = limiter.hit("k", t + 200)
    assert not verdict.allowed and verdict.retry_after == 3400  # the first hit leaves at t+3600
    fixed = RateLimiter(lambda: (2, 10, 10), lambda: "fixed")
    assert fixed.hit("k", 120.5).allowed and fixed.hit("k", 150).allowed
    assert fixed.hit("k", 170).retry_after == 10  # the next minute starts at 180
    assert fixed.hit("k", 180).allowed


# -- payloads -------------------------------------------------------------------------------

async def test_sync_success_payload_looks_real(emulator: Emulator,
                                               http: httpx.AsyncClient) -> None:
    response = await ask(http, emulator, "NatGeo")
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and body["requestId"] == emulator.requests[-1].request_id
    assert body["itemCount"] == 6 and body["creditsCharged"] == 1
    data = body["data"]
    assert data["id"] == 787132 and data["user"]["pk"] == 787132
    assert data["user"]["username"] == "natgeo" and data["user"]["pk_id"] == "787132"
    items = data["items"]
    taken = [int(item["taken_at"]) for item in items]
    assert taken == sorted(taken) and all(NOW - 86400 < t <= NOW for t in taken)
    assert sorted(item["media_type"] for item in items) == [1, 1, 1, 2, 2, 8]
    assert any(isinstance(i["pk"], str) for i in items)
    assert any(isinstance(i["pk"], int) and i["pk"] > 2**53 for i in items)
    assert any(isinstance(i["taken_at"], str) for i in items)
    assert any("expiring_at" not in i for i in items)
    photos = [i for i in items if i["media_type"] == 1]
    assert any("video_versions" not in p for p in photos)
    assert any(p.get("video_versions", 0) is None for p in photos)
    for video in (i for i in items if i["media_type"] == 2):
        sizes = {(v["width"], v["height"]) for v in video["video_versions"]}
        assert sizes == {(360, 640), (180, 320)}
        assert isinstance(video["video_duration"], float)
        assert len(video["video_dash_manifest"]) > 2000
    for item in items:
        assert item["id"] == f"{item['pk']}_787132"
        assert len(item["image_versions2"]["candidates"]) >= 3
    # Big integers stay exact on the wire (a JSON parser that uses doubles would round them).
    assert str(next(i["pk"] for i in items if isinstance(i["pk"], int))) in response.text


async def test_not_found_private_and_empty(emulator: Emulator, http: httpx.AsyncClient) -> None:
    missing = (await ask(http, emulator, "no.such.user")).json()
    assert missing == {"success": False, "error": "User not found",
                       "requestId": emulator.requests[-1].request_id}
    private = (await ask(http, emulator, "privateuser")).json()
    assert private["success"] is False and private["error"] == "This account is private"
    empty = (await ask(http, emulator, "nostories")).json()
    assert empty["success"] is True and empty["itemCount"] == 0 and empty["data"]["items"] == []
    assert [r.outcome for r in emulator.requests] == ["not_found", "private", "empty"]
    assert emulator.charged[KEY] == 1


async def test_many_stories_and_custom_accounts(emulator: Emulator,
                                                http: httpx.AsyncClient) -> None:
    many = (await ask(http, emulator, "manystories")).json()
    kinds = [item["media_type"] for item in many["data"]["items"]]
    assert len(kinds) == 23 and kinds.count(2) == 7 and kinds.count(1) == 16
    emulator.add_account("test.user", ["video", {"kind": "photo", "age": 60},
                                       ItemSpec("video", size=2_000_000, age=30)])
    body = (await ask(http, emulator, "test.user")).json()
    items = body["data"]["items"]
    assert [i["media_type"] for i in items] == [2, 1, 2]
    assert int(items[1]["taken_at"]) == NOW - 60
    best = max(items[2]["video_versions"], key=lambda v: v["width"])
    head = await http.head(best["url"])
    assert head.status_code == 200 and head.headers["Content-Length"] == "2000000"
    with pytest.raises(ValueError):
        emulator.add_account("bad", [{"kind": "video", "size": 10}])  # smaller than the file


async def test_serve_runs_until_cancelled(http: httpx.AsyncClient) -> None:
    started: asyncio.Future[Emulator] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve("127.0.0.1", 0, EmulatorConfig(keys={KEY: 1}),
                                     on_start=started.set_result))
    emu = await started
    assert (await http.get(emu.base_url + "/healthz")).json() == {"status": "ok"}
    emu.remove_key(KEY)
    assert (await ask(http, emu)).status_code == 401
    url = emu.stories_url
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(httpx.ConnectError):
        await http.get(url)


# -- webhook mode ---------------------------------------------------------------------------

async def test_webhook_delivers_the_sync_body(emulator: Emulator,
                                              http: httpx.AsyncClient) -> None:
    async with Receiver() as receiver:
        response = await ask(http, emulator, webhookUrl=receiver.url)
        assert response.status_code == 200
        accepted = response.json()
        assert accepted["success"] is True and accepted["status"] == "processing"
        assert accepted["message"]
        [delivery] = await emulator.wait_for_callbacks(1)
    assert delivery.delivered and len(delivery.attempts) == 1
    assert receiver.content_types == ["application/json"]
    body = receiver.bodies[0]
    assert body == emulator.requests[-1].result
    assert body["requestId"] == accepted["requestId"] and body["itemCount"] == 6
    assert body["creditsCharged"] == 1 and emulator.charged[KEY] == 1
    assert set(body) == {"success", "requestId", "data", "itemCount", "creditsCharged"}


async def test_webhook_failure_body_and_retry(emulator: Emulator,
                                              http: httpx.AsyncClient) -> None:
    async with Receiver(statuses=[500, 502]) as receiver:
        await ask(http, emulator, "privateuser", webhookUrl=receiver.url)
        [delivery] = await emulator.wait_for_callbacks(1)
    assert [a.status for a in delivery.attempts] == [500, 502, 200] and delivery.delivered
    assert receiver.bodies[-1]["error"] == "This account is private"
    assert emulator.charged[KEY] == 0 and emulator.balance(KEY) == 100


async def test_webhook_gives_up(http: httpx.AsyncClient) -> None:
    config = EmulatorConfig(keys={KEY: 10}, webhook_attempts=3, webhook_backoff=0.01)
    async with Emulator(config) as emu, Receiver(statuses=[410]) as receiver:
        await ask(http, emu, webhookUrl=receiver.url)  # 410: gone, never retried
        await ask(http, emu, webhookUrl="http://127.0.0.1:9/callbacks/x")  # refused
        gone, refused = await emu.wait_for_callbacks(2)
    assert [a.status for a in gone.attempts] == [410] and not gone.delivered
    assert [a.status for a in refused.attempts] == [None] * 3 and refused.attempts[0].error
    assert emu.charged[KEY] == 2  # the results were produced: the API charged for them


async def test_callback_before_response_and_duplicates(http: httpx.AsyncClient) -> None:
    config = EmulatorConfig(keys={KEY: 10}, callback_before_response=True,
                            duplicate_callbacks=True)
    async with Emulator(config) as emu, Receiver() as receiver:
        response = await ask(http, emu, "nostories", webhookUrl=receiver.url)
        assert len(receiver.bodies) == 2  # both arrived before the POST returned
        assert response.json()["status"] == "processing"
    assert receiver.bodies[0] == receiver.bodies[1]
    assert [d.copy for d in emu.deliveries] == [1, 2] and emu.charged[KEY] == 1


async def test_paused_callbacks_and_clean_stop(http: httpx.AsyncClient) -> None:
    async with Receiver() as receiver:
        emu = Emulator(EmulatorConfig(keys={KEY: 10}))
        await emu.start()
        emu.pause_callbacks()
        await ask(http, emu, webhookUrl=receiver.url)
        await emu.wait_until(lambda: emu.requests[-1].result is not None)
        assert receiver.bodies == [] and emu.charged[KEY] == 1
        emu.resume_callbacks()
        await emu.wait_for_callbacks(1)
        assert len(receiver.bodies) == 1
        emu.config.webhook_delay = 60
        await ask(http, emu, webhookUrl=receiver.url)
        await emu.stop()  # cancels the pending callback; its reserved credit comes back
    assert len(receiver.bodies) == 1 and emu.balance(KEY) == 9


# -- faults ---------------------------------------------------------------------------------

async def test_injected_faults(emulator: Emulator, http: httpx.AsyncClient) -> None:
    emulator.fail_next(1, 503)
    emulator.fail_next(1, 500)
    first = await ask(http, emulator)
    assert first.status_code == 503 and "nginx" in first.text
    assert (await ask(http, emulator)).json()["success"] is False
    assert (await ask(http, emulator)).status_code == 200
    emulator.hang_next(1)
    with pytest.raises(httpx.ReadTimeout):
        await http.post(emulator.stories_url, json={"username": "natgeo"},
                        headers={"Authorization": f"Bearer {KEY}"}, timeout=0.2)
    emulator.release_hung()
    assert emulator.charged[KEY] == 1


# -- media ----------------------------------------------------------------------------------

async def test_media_served_signed_and_checked(http: httpx.AsyncClient) -> None:
    clock = Clock()
    async with Emulator(EmulatorConfig(keys={KEY: 10}), clock=clock) as emu:
        items = (await ask(http, emu)).json()["data"]["items"]
        photo = next(i for i in items if i["media_type"] == 1)
        video = next(i for i in items if i["media_type"] == 2)
        photo_url = max(photo["image_versions2"]["candidates"], key=lambda c: c["width"])["url"]
        video_url = max(video["video_versions"], key=lambda v: v["width"])["url"]
        assert "oe=" in photo_url and "oh=00_" in photo_url

        got = await http.get(photo_url)
        assert got.status_code == 200 and got.headers["Content-Type"] == "image/jpeg"
        assert got.content == emu.media_bytes("photo-aurora-540x960.jpg")
        got = await http.get(video_url)
        assert got.headers["Content-Type"] == "video/mp4" and got.content[4:8] == b"ftyp"
        head = await http.head(video_url)
        assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(got.content)
        part = await http.get(video_url, headers={"Range": "bytes=4-7"})
        assert part.status_code == 206 and part.content == b"ftyp"

        base, query = photo_url.split("?")
        params = query.split("&")
        for altered in (
            base + "?" + "&".join(reversed(params)),
            base + "?" + "&".join(p for p in params if not p.startswith("_nc_sid")),
            base + "?" + query.replace("ccb=7-5", "ccb=7-4"),
            photo_url + "&dl=1",
            photo_url.replace("aurora-540x960", "desert-540x960"),
        ):
            assert (await http.get(altered)).status_code == 403
        assert (await http.get(base.replace("aurora", "nope") + "?" + query)).status_code == 404
        async with aiohttp.ClientSession() as session, session.get(photo_url) as response:
            assert response.status == 200  # yarl re-quotes `%3A` and `%2F`: still equivalent
        clock.now += 5 * 86400  # the URLs expire after 4 days
        expired = await http.get(photo_url)
        assert expired.status_code == 403 and "expired" in expired.text


async def test_big_video_is_streamed_at_its_size(http: httpx.AsyncClient) -> None:
    size = 12 * 1024 * 1024
    async with Emulator(EmulatorConfig(keys={KEY: 10}, big_video_bytes=size)) as emu:
        items = (await ask(http, emu, "bigvideo")).json()["data"]["items"]
        assert [i["media_type"] for i in items] == [1, 2]
        versions = sorted(items[1]["video_versions"], key=lambda v: -v["width"])
        assert (await http.head(versions[0]["url"])).headers["Content-Length"] == str(size)
        assert int((await http.head(versions[-1]["url"])).headers["Content-Length"]) < 100_000
        original = emu.media_bytes("video-reef-360x640.mp4")
        received, head = 0, b""
        async with http.stream("GET", versions[0]["url"]) as response:
            assert response.headers["Content-Length"] == str(size)
            async for chunk in response.aiter_bytes():
                if len(head) < len(original) + 8:
                    head += chunk[: len(original) + 8 - len(head)]
                received += len(chunk)
        assert received == size
        assert head[: len(original)] == original
        assert head[len(original):] == struct.pack(">I4s", size - len(original), b"free")


def test_virtual_file_ranges() -> None:
    content = VirtualFile((b"abc", 5, b"xyz"))
    assert content.size == 11 and b"".join(content.chunks()) == b"abc\0\0\0\0\0xyz"
    assert b"".join(content.chunks(2, 9)) == b"c\0\0\0\0\0x"
    assert parse_range("bytes=-3", 11) == (8, 11)
    assert parse_range("bytes=20-", 11) is False
    assert parse_range("bytes=0-1,4-5", 11) is None
