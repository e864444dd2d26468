"""The Discord adapter's parts that need no server: endpoints, routing data, and how stories
are packed into messages (with a recording outbox and media served by httpx.MockTransport)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import discord
import httpx
import pytest
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

from adapters.discord.endpoints import api_base, apply_endpoints
from adapters.discord.routing import (
    DEFAULT_SIZE_LIMIT,
    TOKEN_LIFETIME,
    PendingResponses,
    ReplyRoute,
)
from adapters.discord.sending import MAX_CONTENT, StoryPoster, Upload, clean
from bot.media import MediaFetcher
from bot.models import MediaKind, MediaVariant, Profile, StoryItem
from bot.ports import StoryDelivery

MiB = 1024 * 1024


# --- endpoints and routing ----------------------------------------------------------------------


@pytest.mark.parametrize(("url", "expected"), [
    ("http://proxy:8080", "http://proxy:8080/api/v10"),
    ("http://proxy:8080/", "http://proxy:8080/api/v10"),
    ("https://proxy.example/api", "https://proxy.example/api/v10"),
    ("https://proxy.example/api/v9/", "https://proxy.example/api/v9"),
])
def test_api_base(url: str, expected: str) -> None:
    assert api_base(url) == expected


def test_endpoints_are_restored() -> None:
    base, gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    restore = apply_endpoints("http://127.0.0.1:1", "ws://127.0.0.1:1/gateway")
    try:
        assert Route("GET", "/users/@me").url == "http://127.0.0.1:1/api/v10/users/@me"
        assert yarl.URL("ws://127.0.0.1:1/gateway") == DiscordWebSocket.DEFAULT_GATEWAY
        with pytest.raises(RuntimeError):
            apply_endpoints("http://elsewhere", None)
    finally:
        restore()
    assert (base, gateway) == (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)
    apply_endpoints(None, None)()  # nothing configured: nothing touched
    assert base == Route.BASE


def test_reply_route_round_trip_and_token_age() -> None:
    route = ReplyRoute(channel_id=2**60 + 1, application_id=2**59 + 3, token="tok",
                       created_at=1_000_000.0, size_limit=25 * MiB)
    reply = route.to_reply()
    assert reply["channel_id"] == str(2**60 + 1)  # snowflakes survive any JSON reader
    assert ReplyRoute.from_reply(reply) == route
    assert route.token_usable(1_000_000.0 + 13 * 60)
    assert not route.token_usable(1_000_000.0 + 14 * 60 + 1)
    assert not route.without_token().token_usable(1_000_000.0)
    assert ReplyRoute.from_reply({}) == ReplyRoute(None, size_limit=DEFAULT_SIZE_LIMIT)


def test_pending_responses_are_taken_once_and_forgotten_when_old() -> None:
    now = [0.0]
    pending = PendingResponses(lambda: now[0])
    pending.add("a")
    assert pending.take("a") and not pending.take("a")
    pending.add("b")
    now[0] = TOKEN_LIFETIME + 1
    pending.add("c")  # prunes "b"
    assert not pending.take("b") and pending.take("c") and not pending.take(None)


def test_clean_escapes_markdown_but_not_links_and_fits_a_message() -> None:
    text = clean("@nat_geo: https://cdn.example/a_b.mp4?_nc_ht=x&oe=1")
    assert text == "@nat\\_geo: https://cdn.example/a_b.mp4?_nc_ht=x&oe=1"
    assert len(clean("x" * 5000)) == MAX_CONTENT


# --- packing stories ------------------------------------------------------------------------------


class Outbox:
    """Records what would be posted; `refuse(n, status)` makes the n-th send fail."""

    def __init__(self, size_limit: int = 10 * MiB) -> None:
        self.route = ReplyRoute(channel_id=1, size_limit=size_limit)
        self.sent: list[tuple[str, list[tuple[str, int]]]] = []
        self.events: list[str] = []
        self._refusals: dict[int, int] = {}
        self._calls = 0

    def refuse(self, call: int, status: int) -> None:
        self._refusals[call] = status

    async def send(self, content: str | None, uploads: list[Upload] = ()) -> str:  # type: ignore[assignment]
        self._calls += 1
        for upload in uploads:
            assert upload.path.stat().st_size == upload.size  # still on disk while sending
        status = self._refusals.get(self._calls)
        if status:
            raise discord.HTTPException(_Response(status), {"code": 40005, "message": "no"})
        self.sent.append((content or "", [(u.filename, u.size) for u in uploads]))
        self.events.append(f"send {len(uploads)}")
        return f"webhook:{self._calls}"


class _Response:
    def __init__(self, status: int) -> None:
        self.status = status
        self.reason = "refused"


class Tracker:
    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.delivered: list[str] = []

    async def sending(self, items: Any) -> None:
        self.events.append(f"sending {len(items)}")

    async def sent(self, items: Any) -> None:
        self.events.append(f"sent {len(items)}")
        self.delivered += [i.id for i in items]

    async def unsent(self, items: Any) -> None:
        self.events.append(f"unsent {len(items)}")


def media(sizes: dict[str, int], *, missing: set[str] = frozenset()) -> MediaFetcher:  # type: ignore[assignment]
    def handler(request: httpx.Request) -> httpx.Response:
        name = request.url.path.strip("/")
        if name in missing or name not in sizes:
            return httpx.Response(404)
        kind = "video/mp4" if name.endswith(".mp4") else "image/jpeg"
        return httpx.Response(200, content=b"\0" * sizes[name], headers={"content-type": kind})

    return MediaFetcher(httpx.AsyncClient(transport=httpx.MockTransport(handler)))


def item(n: int, *names: str, preview: str | None = None) -> StoryItem:
    kind = MediaKind.VIDEO if names[0].endswith(".mp4") else MediaKind.PHOTO
    taken = datetime(2024, 5, 1, 12, tzinfo=UTC) + timedelta(minutes=n)
    return StoryItem(
        id=str(n), kind=kind, variants=tuple(MediaVariant(f"http://cdn/{x}") for x in names),
        taken_at=taken, expiring_at=taken + timedelta(hours=24),
        duration=15.0 if kind is MediaKind.VIDEO else None,
        preview=MediaVariant(f"http://cdn/{preview}") if preview else None)


async def post(items: list[StoryItem], fetcher: MediaFetcher, outbox: Outbox,
               tmp_path: Path, *, first_index: int = 0, total: int | None = None) -> Tracker:
    tracker = Tracker(outbox.events)
    delivery = StoryDelivery(request_id=1, profile=Profile("acct"), items=tuple(items),
                             total=total or len(items), tracker=tracker, first_index=first_index)
    await StoryPoster(outbox, fetcher, delivery, workdir=tmp_path).run()  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []  # every download removed once sent
    return tracker


async def test_tracker_wraps_every_message_and_order_is_kept(tmp_path: Path) -> None:
    sizes = {f"{n}.jpg": 100 + n for n in range(12)}
    outbox = Outbox()
    tracker = await post([item(n, f"{n}.jpg") for n in range(12)], media(sizes), outbox,
                         tmp_path)
    assert outbox.events == ["sending 10", "send 10", "sent 10", "sending 2", "send 2", "sent 2"]
    assert [name for _, files in outbox.sent for name, _ in files] == [
        f"acct_{n + 1:02d}.jpg" for n in range(12)]
    assert tracker.delivered == [str(n) for n in range(12)]


async def test_a_resumed_delivery_numbers_from_where_it_stopped(tmp_path: Path) -> None:
    outbox = Outbox()
    await post([item(7, "7.jpg")], media({"7.jpg": 10}), outbox, tmp_path, first_index=7,
               total=9)
    [(content, files)] = outbox.sent
    assert files == [("acct_08.jpg", 10)] and "8/9" in content


async def test_one_unavailable_item_loses_nothing_else(tmp_path: Path) -> None:
    sizes = {"a.jpg": 10, "b.mp4": 20, "c.jpg": 30}
    outbox = Outbox()
    tracker = await post([item(1, "a.jpg"), item(2, "b.mp4"), item(3, "c.jpg")],
                         media(sizes, missing={"b.mp4"}), outbox, tmp_path)
    [(content, files)] = outbox.sent
    assert files == [("acct_01.jpg", 10), ("acct_03.jpg", 30)]
    assert "This video could not be uploaded here, so here is a link: http://cdn/b.mp4" in content
    assert tracker.delivered == ["1", "2", "3"]


async def test_the_largest_rendition_that_fits_is_attached(tmp_path: Path) -> None:
    sizes = {"big.mp4": 11 * MiB, "mid.mp4": 3 * MiB, "small.mp4": MiB}
    outbox = Outbox()
    await post([item(1, "big.mp4", "mid.mp4", "small.mp4")], media(sizes), outbox, tmp_path)
    [(content, files)] = outbox.sent
    assert files == [("acct_01.mp4", 3 * MiB)]
    assert "smaller version is attached. Full quality: http://cdn/big.mp4" in content


async def test_too_large_everywhere_is_a_link_with_its_preview(tmp_path: Path) -> None:
    sizes = {"big.mp4": 11 * MiB, "still.jpg": 5000}
    outbox = Outbox()
    await post([item(1, "big.mp4", preview="still.jpg")], media(sizes), outbox, tmp_path)
    [(content, files)] = outbox.sent
    assert files == [("acct_01_preview.jpg", 5000)]
    assert content.endswith(
        "This video is larger than the 10 MB upload limit, so here is a link: http://cdn/big.mp4")


async def test_messages_respect_the_request_size(tmp_path: Path) -> None:
    sizes = {f"{n}.mp4": 9 * MiB for n in range(5)}
    outbox = Outbox()
    await post([item(n, f"{n}.mp4") for n in range(5)], media(sizes), outbox, tmp_path)
    assert [len(files) for _, files in outbox.sent] == [2, 2, 1]  # 25 MiB per request


async def test_messages_respect_the_text_length(tmp_path: Path) -> None:
    names = [f"{n}/{'x' * 700}.jpg" for n in range(6)]  # links this long: two per message
    outbox = Outbox()
    tracker = await post([item(n, names[n]) for n in range(6)], media({}), outbox, tmp_path)
    assert len(outbox.sent) == 3
    assert all(len(content) <= MAX_CONTENT and content.count("http://cdn/") == 2
               for content, _ in outbox.sent)
    assert tracker.delivered == [str(n) for n in range(6)]


async def test_a_refused_message_is_sent_item_by_item(tmp_path: Path) -> None:
    sizes = {"a.jpg": 10, "b.mp4": 20, "c.jpg": 30}
    outbox = Outbox()
    outbox.refuse(1, 413)  # the message with all three files
    outbox.refuse(3, 413)  # then b.mp4 alone
    tracker = await post([item(1, "a.jpg"), item(2, "b.mp4"), item(3, "c.jpg")], media(sizes),
                         outbox, tmp_path)
    assert [files for _, files in outbox.sent] == [
        [("acct_01.jpg", 10)], [], [("acct_03.jpg", 30)]]
    assert "so here is a link: http://cdn/b.mp4" in outbox.sent[1][0]
    assert tracker.delivered == ["1", "2", "3"]


async def test_server_errors_are_raised_for_the_core_to_retry(tmp_path: Path) -> None:
    outbox = Outbox()
    outbox.refuse(2, 503)
    sizes = {f"{n}.jpg": 1 for n in range(11)}
    tracker = Tracker(outbox.events)
    delivery = StoryDelivery(request_id=1, profile=Profile("acct"),
                             items=tuple(item(n, f"{n}.jpg") for n in range(11)), total=11,
                             tracker=tracker)
    poster = StoryPoster(outbox, media(sizes), delivery, workdir=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(discord.HTTPException):
        await poster.run()
    assert tracker.delivered == [str(n) for n in range(10)]  # the first message stays delivered
    assert outbox.events[-1] == "unsent 1"  # Discord answered 503: safe to send again later
    assert list(tmp_path.iterdir()) == []


async def test_downloads_run_ahead_but_order_is_kept(tmp_path: Path) -> None:
    """The first file is only served once the fourth was asked for: the downloads overlap,
    and the message still lists the items in the order taken."""
    asked: dict[str, asyncio.Event] = {f"{n}.jpg": asyncio.Event() for n in range(4)}

    async def handler(request: httpx.Request) -> httpx.Response:
        name = request.url.path.strip("/")
        asked[name].set()
        if name == "0.jpg":
            await asyncio.wait_for(asked["3.jpg"].wait(), 5)
        return httpx.Response(200, content=b"\0" * (10 + int(name[0])),
                              headers={"content-type": "image/jpeg"})

    fetcher = MediaFetcher(httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    outbox = Outbox()
    await post([item(n, f"{n}.jpg", f"{n}.jpg") for n in range(4)], fetcher, outbox, tmp_path)
    [(_, files)] = outbox.sent
    assert files == [(f"acct_{n + 1:02d}.jpg", 10 + n) for n in range(4)]


async def test_file_names_follow_the_content_type_or_the_kind(tmp_path: Path) -> None:
    types = {"a": "image/png", "b": "application/octet-stream", "c": "video/quicktime"}

    def handler(request: httpx.Request) -> httpx.Response:
        name = request.url.path.strip("/").split(".")[0]
        return httpx.Response(200, content=b"1", headers={"content-type": types[name]})

    fetcher = MediaFetcher(httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    outbox = Outbox()
    await post([item(1, "a.jpg"), item(2, "b.mp4"), item(3, "c.mp4")], fetcher, outbox,
               tmp_path)
    [(_, files)] = outbox.sent
    assert [name for name, _ in files] == ["acct_01.png", "acct_02.mp4", "acct_03.mov"]
