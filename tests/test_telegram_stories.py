"""Stories posted on Telegram: albums, order, URL → upload → link fallbacks, flood control,
and nothing ever posted twice. End to end (fake Bot API, real core, emulator), plus direct
calls of the adapter's `send_stories` for the edge cases no emulator account produces."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from telegram import InputMediaPhoto, InputMediaVideo
from telegram.error import NetworkError

from bot import messages
from bot.emulator import Emulator
from bot.models import ChatRef, MediaKind, MediaVariant, Origin, Profile, StoryItem
from bot.ports import StoryDelivery
from tests.fakes.telegram_api import MB, ChatMessage
from tests.fakes.telegram_harness import GROUP, MEMBER, TelegramWorld

PROFILE = Profile("handmade", full_name="Hand Made")


@pytest.fixture
async def world(tmp_path: Path, emulator: Emulator) -> AsyncIterator[TelegramWorld]:
    async with TelegramWorld(tmp_path, emulator) as started:
        await started.set_key()
        yield started


class RecordingTracker:
    def __init__(self) -> None:
        self.events: list[tuple[str, list[str]]] = []

    async def sending(self, items: Sequence[StoryItem]) -> None:
        self.events.append(("sending", [i.id for i in items]))

    async def sent(self, items: Sequence[StoryItem]) -> None:
        self.events.append(("sent", [i.id for i in items]))

    async def unsent(self, items: Sequence[StoryItem]) -> None:
        self.events.append(("unsent", [i.id for i in items]))

    def sent_ids(self) -> list[str]:
        return [i for kind, ids in self.events if kind == "sent" for i in ids]


def media_messages(world: TelegramWorld, chat_id: int = GROUP) -> list[ChatMessage]:
    return [m for m in world.fake.bot_messages(chat_id) if m.media is not None]


def album_sizes(messages_: list[ChatMessage]) -> list[int]:
    sizes: list[int] = []
    last: object = object()
    for message in messages_:
        if message.media_group_id is None or message.media_group_id != last:
            sizes.append(0)
        sizes[-1] += 1
        last = message.media_group_id
    return sizes


def item(item_id: str, kind: MediaKind, *urls: str, minutes_ago: int = 60,
         duration: float | None = 3.0) -> StoryItem:
    """A story; a video lasts `duration` seconds (a file of tens of MB is a long video: 60)."""
    taken = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return StoryItem(id=item_id, kind=kind, variants=tuple(MediaVariant(u, 360, 640) for u in urls),
                     taken_at=taken, expiring_at=taken + timedelta(hours=24),
                     duration=duration if kind is MediaKind.VIDEO else None)


def delivery(items: Sequence[StoryItem], tracker: RecordingTracker, *, total: int | None = None,
             first_index: int = 0) -> StoryDelivery:
    return StoryDelivery(request_id=1, profile=PROFILE, items=tuple(items),
                         total=total or len(items), tracker=tracker, first_index=first_index)


def group_origin() -> Origin:
    return Origin(chat=ChatRef("telegram", str(GROUP)), user_id=str(MEMBER),
                  reply={"message_id": 1})


async def test_23_stories_arrive_as_10_10_3_in_order(world: TelegramWorld) -> None:
    command = await world.command(GROUP, "/stories manystories", user=MEMBER)
    await world.settle()
    posted = media_messages(world)
    assert album_sizes(posted) == [10, 10, 3]
    assert len(world.fake.calls_of("sendMediaGroup")) == 3
    assert [m.caption.split(" · ")[1] for m in posted] == [f"{n}/23" for n in range(1, 24)]
    assert [m.kind for m in posted] == ["video" if n % 3 == 2 else "photo" for n in range(23)]
    assert {m.media.source for m in posted} == {"url"}
    assert {(m.kind, m.media.content) for m in posted} == {("photo", "jpeg"), ("video", "mp4")}
    assert all(m.caption.startswith("@manystories · ") for m in posted)
    status = world.answers_to(command)[0]
    assert status.reply_to == command.message_id
    assert status.edits == ["Fetching the stories of @manystories…"]
    assert status.text == "@manystories: 23 stories."


async def test_url_refusal_falls_back_to_upload(world: TelegramWorld) -> None:
    world.fake.refuse_urls = True
    await world.command(GROUP, "/stories natgeo", user=MEMBER)
    await world.settle()
    posted = media_messages(world)
    assert len(posted) == 5 and album_sizes(posted) == [5]
    assert {m.media.source for m in posted} == {"upload"}
    assert [m.media.content for m in posted] == ["jpeg", "mp4", "jpeg", "mp4", "jpeg"]
    assert len(world.fake.fetched_urls) == 1  # Telegram gave up at the first URL
    assert len(world.fake.calls_of("sendMediaGroup")) == 2
    assert "upload_video" in {action for _, action, _ in world.fake.chat_actions}


async def test_429_on_the_first_album_is_waited_out(world: TelegramWorld) -> None:
    world.fake.fail_next("sendMediaGroup", retry_after=1)
    await world.command(GROUP, "/stories manystories", user=MEMBER)
    await world.settle()
    posted = media_messages(world)
    captions = [m.caption for m in posted]
    assert len(captions) == len(set(captions)) == 23  # nothing duplicated, nothing lost
    assert album_sizes(posted) == [10, 10, 3]
    assert len(world.fake.calls_of("sendMediaGroup")) == 4


async def test_duplicate_callback_posts_nothing_new(world: TelegramWorld) -> None:
    world.emulator.config.duplicate_callbacks = True
    await world.command(GROUP, "/stories natgeo", user=MEMBER)
    await world.emulator.wait_for_callbacks(2)
    await world.settle()
    assert [a.status for a in world.emulator.callback_attempts] == [200, 200]
    assert len(media_messages(world)) == 5
    assert len(world.fake.calls_of("sendMediaGroup")) == 1


async def test_resent_request_is_served_without_reposting_twice(world: TelegramWorld) -> None:
    await world.command(GROUP, "/stories natgeo", user=MEMBER)
    await world.settle()
    again = await world.command(GROUP, "/stories natgeo", user=MEMBER)
    await world.settle()
    # A shared result (no credit) is posted again on purpose: the user asked twice.
    assert len(world.emulator.requests) == 1
    assert "no credit used" in world.answers_to(again)[0].text
    assert len(media_messages(world)) == 10


async def test_video_over_the_url_limit_is_uploaded(world: TelegramWorld) -> None:
    world.emulator.add_account("bigclip", [{"kind": "video", "size": 25 * MB}])
    await world.command(GROUP, "/stories bigclip", user=MEMBER)
    await world.settle()
    [video] = media_messages(world)
    assert video.method == "sendVideo"
    assert (video.media.source, video.media.size, video.media.content) == \
        ("upload", 25 * MB, "mp4")
    assert world.fake.fetched_urls == []  # never offered by URL: it could not have worked


async def test_video_over_the_upload_limit_sends_a_smaller_version(world: TelegramWorld) -> None:
    world.emulator.add_account("hugeclip", [{"kind": "video", "size": 60 * MB}, "photo"])
    await world.command(GROUP, "/stories hugeclip", user=MEMBER)
    await world.settle()
    video, photo = media_messages(world)
    assert video.media.size < MB and video.media.source == "url"
    assert "larger than the 50 MB upload limit, so a smaller version is attached" in \
        video.caption
    assert photo.kind == "photo"


async def test_nothing_fits_so_a_link_is_posted(world: TelegramWorld) -> None:
    huge = world.emulator.media_url("video-reef-360x640.mp4", size=60 * MB)
    small = world.emulator.media_url("photo-ocean-540x960.jpg")
    tracker = RecordingTracker()
    items = [item("a", MediaKind.PHOTO, small, minutes_ago=90),
             item("b", MediaKind.VIDEO, huge, minutes_ago=60, duration=60),
             item("c", MediaKind.PHOTO, small, minutes_ago=30)]
    await world.adapter.send_stories(group_origin(), delivery(items, tracker))
    sent = world.fake.bot_messages(GROUP)[-3:]
    assert [m.kind for m in sent] == ["photo", "text", "photo"]  # order kept around the link
    assert "larger than the 50 MB upload limit, so here is a link: " + huge in sent[1].text
    assert sent[1].text.startswith("@handmade · 2/3 · video 1:00")
    assert tracker.sent_ids() == ["a", "b", "c"]


async def test_refused_even_uploaded_becomes_links_in_place(world: TelegramWorld) -> None:
    photo = world.emulator.media_url("photo-ocean-540x960.jpg")
    world.fake.refuse_urls = True
    world.fake.fail_next("sendMediaGroup", description="Bad Request: wrong file identifier")
    world.fake.fail_next("sendMediaGroup", description="Bad Request: IMAGE_PROCESS_FAILED")
    tracker = RecordingTracker()
    items = [item(str(n), MediaKind.PHOTO, photo, minutes_ago=100 - n) for n in range(12)]
    before = len(world.fake.sent)
    await world.adapter.send_stories(group_origin(), delivery(items, tracker))
    sent = world.fake.sent[before:]
    links = [m for m in sent if m.kind == "text"]
    assert sent[:len(links)] == links  # the first album, as links, then the second album
    link_lines = [line for m in links for line in m.text.split("\n") if line.startswith("@")]
    assert [line.split(" · ")[1] for line in link_lines] == [f"{n}/12" for n in range(1, 11)]
    assert all(len(m.text) <= 4096 for m in links)
    assert [m.kind for m in sent[len(links):]] == ["photo", "photo"]  # uploaded
    assert tracker.sent_ids() == [str(n) for n in range(12)]


async def test_undownloadable_item_becomes_a_link(world: TelegramWorld) -> None:
    world.fake.refuse_urls = True
    gone = f"{world.emulator.base_url}/media/nothing-here.jpg"
    photo = world.emulator.media_url("photo-ocean-540x960.jpg")
    tracker = RecordingTracker()
    items = [item("a", MediaKind.PHOTO, photo), item("b", MediaKind.PHOTO, gone),
             item("c", MediaKind.PHOTO, photo)]
    await world.adapter.send_stories(group_origin(), delivery(items, tracker))
    sent = world.fake.bot_messages(GROUP)[-3:]
    assert [m.kind for m in sent] == ["photo", "text", "photo"]
    assert messages.unavailable_link(items[1]) in sent[1].text
    assert {m.media.source for m in sent if m.media} == {"upload"}


async def test_resumed_delivery_numbers_from_where_it_stopped(world: TelegramWorld) -> None:
    photo = world.emulator.media_url("photo-ocean-540x960.jpg")
    tracker = RecordingTracker()
    items = [item(str(n), MediaKind.PHOTO, photo, minutes_ago=50 - n) for n in range(3)]
    await world.adapter.send_stories(group_origin(),
                                     delivery(items, tracker, total=23, first_index=20))
    captions = [m.caption for m in world.fake.bot_messages(GROUP)[-3:]]
    assert [c.split(" · ")[1] for c in captions] == ["21/23", "22/23", "23/23"]


async def test_unreachable_platform_raises_without_marking_sent(world: TelegramWorld) -> None:
    photo = world.emulator.media_url("photo-ocean-540x960.jpg")
    world.fake.fail_next("sendMediaGroup", status=502, description="Bad Gateway")
    tracker = RecordingTracker()
    items = [item("a", MediaKind.PHOTO, photo), item("b", MediaKind.PHOTO, photo)]
    with pytest.raises(NetworkError):
        await world.adapter.send_stories(group_origin(), delivery(items, tracker))
    # Telegram answered (502): the album was not posted, so the items may be sent again
    assert tracker.events == [("sending", ["a", "b"]), ("unsent", ["a", "b"])]


async def test_status_is_edited_or_posted_anew(world: TelegramWorld) -> None:
    origin = group_origin()
    ref = await world.adapter.post_status(origin, "Fetching…")
    assert ref is not None
    await world.adapter.edit_status(origin, ref, "Done.")
    await world.adapter.edit_status(origin, ref, "Done.")  # "not modified" is not an error
    status = world.fake.message(GROUP, int(ref))
    assert (status.text, status.edits) == ("Done.", ["Fetching…"])
    status.deleted = True  # someone removed the status message
    await world.adapter.edit_status(origin, ref, "Posted again.")
    assert world.fake.bot_messages(GROUP)[-1].text == "Posted again."
    await world.adapter.edit_status(origin, None, "No ref at all.")
    assert world.fake.bot_messages(GROUP)[-1].text == "No ref at all."


async def test_server_error_on_an_album_is_retried_without_duplicates(
        world: TelegramWorld) -> None:
    """Telegram answers 500 to the second album: that album was not posted, so the core sends
    it again (after a short backoff) and every story arrives exactly once."""
    world.fake.fail_next("sendMediaGroup", status=500, description="Internal Server Error")
    await world.command(GROUP, "/stories manystories", user=MEMBER)
    await world.settle()
    posted = media_messages(world)
    captions = [m.caption for m in posted]
    assert len(captions) == len(set(captions)) == 23
    assert album_sizes(posted) == [10, 10, 3]
    assert any(m.text == "@manystories: 23 stories." for m in world.fake.bot_messages(GROUP))


async def test_bot_removed_from_chat_loses_nothing_silently(world: TelegramWorld) -> None:
    """Every send is refused (403): nothing is marked posted, the request ends as failed."""
    from bot.models import RequestState

    for _ in range(3):
        world.fake.fail_next("sendMediaGroup", status=403,
                             description="Forbidden: bot was kicked from the supergroup chat")
    await world.command(GROUP, "/stories manystories", user=MEMBER)
    await world.settle()
    assert media_messages(world) == []
    failed = await world.app.store.requests_in_state(RequestState.FAILED)
    assert [r.username for r in failed] == ["manystories"]
    assert await world.app.store.item_states(failed[0].id) == {}


async def test_429_storm_is_waited_out_without_duplicates(world: TelegramWorld) -> None:
    for _ in range(4):  # flood control on several calls in a row
        world.fake.fail_next("sendMediaGroup", retry_after=1)
    await world.command(GROUP, "/stories manystories", user=MEMBER)
    await world.settle(timeout=30)
    posted = media_messages(world)
    captions = [m.caption for m in posted]
    assert len(captions) == len(set(captions)) == 23


async def test_dropped_connection_is_never_resent(world: TelegramWorld) -> None:
    """The connection dies while an album is in flight: it may or may not have been posted,
    so it is not sent again (never twice), the rest is, and the status says so."""
    world.fake.drops["sendmediagroup"] = 1
    await world.command(GROUP, "/stories manystories", user=MEMBER)
    await world.settle(timeout=30)
    captions = [m.caption for m in media_messages(world)]
    assert len(captions) == len(set(captions)) == 13  # the first album of 10 is in doubt
    status = [m.text for m in world.fake.bot_messages(GROUP) if m.text]
    assert any("13 of 23 stories posted. 10 were being posted when the bot was interrupted"
               in (t or "") for t in status), status


class MediaRequests:
    """Every request of the bot's shared HTTP client (the `MediaFetcher`'s), seen through
    httpx's own request hook, with the number of albums the fake had received by then."""

    def __init__(self, world: TelegramWorld) -> None:
        self.seen: list[tuple[str, str, int]] = []
        self._world = world
        assert world.app is not None
        world.app.http.event_hooks = {"request": [self._record]}

    async def _record(self, request: httpx.Request) -> None:
        albums = len(self._world.fake.calls_of("sendMediaGroup"))
        self.seen.append((request.method, request.url.path, albums))

    def heads(self) -> list[tuple[str, int]]:
        return [(path, albums) for method, path, albums in self.seen if method == "HEAD"]


async def test_photos_and_short_videos_are_sent_unasked(world: TelegramWorld) -> None:
    """23 stories (16 photos, 7 videos of 3 s): nothing is asked before posting — a 3 s video
    cannot be over Telegram's 20 MB by-URL limit at any bitrate stories have."""
    requests = MediaRequests(world)
    await world.command(GROUP, "/stories manystories", user=MEMBER)
    await world.settle()
    assert album_sizes(media_messages(world)) == [10, 10, 3]
    assert requests.heads() == []
    assert {m.media.source for m in media_messages(world)} == {"url"}


async def test_long_videos_are_asked_their_size_one_album_at_a_time(
        world: TelegramWorld) -> None:
    """Videos long enough to be over 20 MB get a HEAD each (photos never), and those of an
    album are asked about only once the album before it is posted."""
    photo = world.emulator.media_url("photo-ocean-540x960.jpg")
    clip = world.emulator.media_url("video-reef-360x640.mp4")
    # videos at 2, 5, 8 (album 1), 11, 14, 17 (album 2) and 20 (album 3)
    items = [item(str(n), MediaKind.VIDEO, clip, minutes_ago=100 - n, duration=45)
             if n % 3 == 2 else item(str(n), MediaKind.PHOTO, photo, minutes_ago=100 - n)
             for n in range(23)]
    requests = MediaRequests(world)
    await world.adapter.send_stories(group_origin(), delivery(items, RecordingTracker()))
    assert album_sizes(media_messages(world)) == [10, 10, 3]
    heads = requests.heads()
    assert [path.rsplit(".", 1)[-1] for path, _ in heads] == ["mp4"] * 7
    assert [albums for _, albums in heads[:3]] == [0, 0, 0]
    assert all(albums >= 1 for _, albums in heads[3:6])
    assert heads[6][1] >= 2


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


async def wait_for_call(world: TelegramWorld, method: str, count: int = 1) -> None:
    """Until the fake has received `count` calls of `method` (recorded on arrival, before
    the fake answers them)."""
    await world.fake.wait_for(lambda: len(world.fake.calls_of(method)) >= count, timeout=10)


async def test_large_video_is_uploaded_from_a_temporary_file(world: TelegramWorld,
                                                             tmp_path: Path) -> None:
    """30 MB: over the 20 MB by-URL limit, within the 50 MB upload limit. It is downloaded to
    a file of the delivery's own directory, streamed from there, and the directory is gone
    once the delivery is done."""
    root = tmp_path / "telegram-media"
    world.adapter._sender.temp_root = root
    big = world.emulator.media_url("video-reef-360x640.mp4", size=30 * MB)
    photo = world.emulator.media_url("photo-ocean-540x960.jpg")
    tracker = RecordingTracker()
    items = [item("clip", MediaKind.VIDEO, big, minutes_ago=90, duration=60),
             item("pic", MediaKind.PHOTO, photo, minutes_ago=60)]
    world.fake.latency["sendmediagroup"] = 0.3  # time to look at the disk meanwhile
    sending = asyncio.create_task(world.adapter.send_stories(group_origin(),
                                                             delivery(items, tracker)))
    await wait_for_call(world, "sendMediaGroup")
    [on_disk] = files_under(root)  # the upload being streamed
    assert on_disk.stat().st_size == 30 * MB
    await sending
    assert list(root.iterdir()) == []
    clip, pic = media_messages(world)
    assert (clip.media.source, clip.media.size, clip.media.content) == ("upload", 30 * MB, "mp4")
    assert pic.media.source == "url"
    assert world.fake.fetched_urls == [photo]  # the video was never offered by URL
    assert tracker.events == [("sending", ["clip", "pic"]), ("sent", ["clip", "pic"])]


async def test_temporary_files_are_deleted_on_failure_and_cancellation(
        world: TelegramWorld, tmp_path: Path) -> None:
    root = tmp_path / "telegram-media"
    world.adapter._sender.temp_root = root
    big = world.emulator.media_url("video-reef-360x640.mp4", size=30 * MB)
    # Telegram answers 502: the delivery raises, for the core to retry later.
    world.fake.fail_next("sendVideo", status=502, description="Bad Gateway")
    tracker = RecordingTracker()
    with pytest.raises(NetworkError):
        await world.adapter.send_stories(group_origin(), delivery(
            [item("a", MediaKind.VIDEO, big, duration=60)], tracker))
    assert tracker.events == [("sending", ["a"]), ("unsent", ["a"])]
    assert list(root.iterdir()) == []
    # The delivery is cancelled (the bot stops) while the upload is in flight.
    world.fake.latency["sendvideo"] = 30
    sending = asyncio.create_task(world.adapter.send_stories(
        group_origin(), delivery([item("b", MediaKind.VIDEO, big, duration=60)],
                                 RecordingTracker())))
    await wait_for_call(world, "sendVideo", count=2)
    assert len(files_under(root)) == 1
    sending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sending
    assert list(root.iterdir()) == []


async def test_photo_too_big_for_telegram_to_fetch_is_uploaded(world: TelegramWorld) -> None:
    """Photos are not asked their size: one over the 5 MB by-URL limit is refused by Telegram,
    and the ladder uploads it; one over the 10 MB upload limit goes as its smaller variant."""
    six = world.emulator.media_url("photo-ocean-540x960.jpg", size=6 * MB)
    twelve = world.emulator.media_url("photo-ocean-540x960.jpg", size=12 * MB)
    small = world.emulator.media_url("photo-ocean-270x480.jpg")
    tracker = RecordingTracker()
    items = [item("six", MediaKind.PHOTO, six, minutes_ago=90),
             item("twelve", MediaKind.PHOTO, twelve, small, minutes_ago=60)]
    requests = MediaRequests(world)
    await world.adapter.send_stories(group_origin(), delivery(items, tracker))
    assert requests.heads() == []
    first, second = media_messages(world)
    assert (first.media.source, first.media.size) == ("upload", 6 * MB)
    assert second.media.source == "upload" and second.media.size < MB
    assert "smaller version" in second.caption and "smaller version" not in first.caption
    assert first.media_group_id == second.media_group_id is not None
    assert tracker.events == [("sending", ["six", "twelve"]), ("unsent", ["six", "twelve"]),
                              ("sending", ["six", "twelve"]), ("sent", ["six", "twelve"])]


async def test_an_album_of_urls_is_sent_as_python_telegram_bots_own_objects_would_be(
        world: TelegramWorld) -> None:
    """An album of URLs goes out as plain InputMedia fields (cheaper than the library's
    objects): the JSON is what `InputMediaPhoto`/`InputMediaVideo` would have sent."""
    photo = world.emulator.media_url("photo-ocean-540x960.jpg")
    clip = world.emulator.media_url("video-reef-360x640.mp4")
    tracker = RecordingTracker()
    await world.adapter.send_stories(group_origin(), delivery(
        [item("p", MediaKind.PHOTO, photo, minutes_ago=90),
         item("v", MediaKind.VIDEO, clip, duration=7.4)], tracker))
    [call] = world.fake.calls_of("sendMediaGroup")
    assert call.uploads == ()
    sent = call.params["media"]
    captions = [m.caption for m in media_messages(world)]
    expected = [
        InputMediaPhoto(media=photo, caption=captions[0]).to_dict(),
        InputMediaVideo(media=clip, caption=captions[1], supports_streaming=True,
                        width=360, height=640, duration=7).to_dict(),
    ]
    assert sent == expected
    assert "@handmade · 1/2" in captions[0] and "video 0:07" in captions[1]
    assert tracker.sent_ids() == ["p", "v"]


async def test_a_single_video_goes_by_url_with_its_shape_and_caption(world: TelegramWorld) -> None:
    world.emulator.add_account("oneclip", ["video"])
    await world.command(GROUP, "/stories oneclip", user=MEMBER)
    await world.settle()
    [call] = world.fake.calls_of("sendVideo")
    params = call.params
    assert call.uploads == ()
    assert params["video"].startswith("http")
    assert params["supports_streaming"] is True
    assert isinstance(params["width"], int) and isinstance(params["height"], int)
    assert isinstance(params["duration"], int) and params["duration"] >= 1
    assert "@oneclip" in params["caption"]
    assert params["chat_id"] == GROUP
    [video] = media_messages(world)
    assert video.media is not None and video.media.source == "url"
