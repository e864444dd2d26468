"""Stories onto Telegram: in order, in albums of up to 10, by URL where Telegram can fetch them,
else uploaded, else as links — and never twice.

Albums are planned one at a time, each once the one before it is posted, so the first album
leaves after at most one round of HEADs (planning the next album while one is being posted
would compete with that post for the CPU, and albums are spaced by Telegram's rate limits
anyway):

- photos are sent by URL without asking: a story photo is far below Telegram's 5 MB by-URL
  limit, and when Telegram refuses one anyway the ladder below uploads it;
- so are videos short enough to be within Telegram's 20 MB by-URL limit at any bitrate
  Instagram uses (`MAX_BYTES_PER_SECOND`: 20 s and under; most stories are 15 s);
- longer videos (or of unknown duration) are asked their size (HEAD) to choose, variant by
  variant (best first): by URL within the by-URL limit (or when the server does not say),
  uploaded within the upload limit, else the next smaller variant; when none fits even the
  upload limit, a link with a word why.

Consecutive media items form albums (at most 10, uploads within a byte budget per request).
Each album climbs a ladder until it is posted:

1. as planned;
2. on a Bad Request (Telegram's fetcher refused a URL — it does at random — or a file):
   every item downloaded (streamed, size-capped, the largest variant that fits) and uploaded;
3. what Telegram still refuses, or what cannot be downloaded, is posted as links, in place.

Uploads are streamed to a temporary file (one directory per delivery, created only when
something is uploaded) and streamed from it to Telegram: memory stays flat whatever the size.
The files of an album are deleted as soon as it is done, the directory when the delivery ends,
however it ends.

Flood control (429) is waited out (AIORateLimiter first, then here, bounded). Anything else —
the network, a bot removed from the chat — is raised for the core to retry later; items already
confirmed went through the `DeliveryTracker` and are not sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import warnings
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import IO, Literal, TypeVar

from telegram import InputFile, InputMediaPhoto, InputMediaVideo
from telegram.constants import ChatAction
from telegram.error import BadRequest, RetryAfter, TelegramError, TimedOut
from telegram.warnings import PTBDeprecationWarning

from adapters.telegram.client import InputMedia, TelegramClient
from adapters.telegram.routing import Target
from adapters.telegram.transport import MaybeSent, NotSent
from bot import messages
from bot.media import MediaError, MediaFetcher, MediaTooLarge, short_url
from bot.models import MediaKind, MediaVariant, StoryItem
from bot.ports import DeliveryTracker, StoryDelivery

log = logging.getLogger(__name__)

T = TypeVar("T")
MB = 1024 * 1024
ALBUM_MAX = 10
CAPTION_MAX = 1024
TEXT_MAX = 4096
HEAD_CONCURRENCY = 8
# 8 Mbit/s: above any story rendition Instagram serves (720p at 1.4-1.8 Mbit/s in real
# payloads, 1080p a few Mbit/s). A video this short needs no HEAD to know it is within the
# by-URL limit; should one ever be larger, Telegram refuses the URL and the ladder uploads it.
MAX_BYTES_PER_SECOND = 1 * 1024 * 1024
TEMP_PREFIX = "stories-bot-telegram-"

Route = Literal["url", "upload", "link"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Telegram's size limits, in bytes."""

    url_photo: int = 5 * MB
    url_video: int = 20 * MB
    upload_photo: int = 10 * MB
    upload_video: int = 50 * MB
    album_upload: int = 50 * MB  # bytes uploaded in one request

    @classmethod
    def for_server(cls, *, local: bool) -> Limits:
        """A local Bot API server takes uploads of 2,000 MB. Photos stay at 10 MB: that
        limit is Telegram's photo processing, not the HTTP upload."""
        if local:
            return cls(upload_video=2000 * MB, album_upload=2000 * MB)
        return cls()

    def by_url(self, kind: MediaKind) -> int:
        return self.url_photo if kind is MediaKind.PHOTO else self.url_video

    def upload(self, kind: MediaKind) -> int:
        return self.upload_photo if kind is MediaKind.PHOTO else self.upload_video


@dataclass(frozen=True, slots=True)
class Planned:
    """One item with the variant chosen for it and how it will go out."""

    item: StoryItem
    caption: str
    variant: MediaVariant
    route: Route
    size: int | None = None


def retry_seconds(exc: RetryAfter) -> float:
    with warnings.catch_warnings():  # PTB 22 warns that the type becomes timedelta
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def definitely_not_sent(exc: TelegramError) -> bool:
    """True when the message was not posted: Telegram answered with an error (4xx, 429, or a
    5xx, after which Telegram's own advice is to send again), or no connection was made.
    A timeout or a connection dropped mid-request is uncertain: the message may be there."""
    if isinstance(exc, NotSent):
        return True
    if isinstance(exc, (TimedOut, MaybeSent)):
        return False
    # python-telegram-bot words an unexpected failure of the transport "Unknown error in HTTP
    # implementation"; any other NetworkError is Telegram's own answer (a 5xx description).
    return not str(exc).startswith("Unknown error in HTTP")


class StorySender:
    """Posts one `StoryDelivery` to one chat. Stateless between deliveries.

    `temp_root` is where each delivery's directory of downloads is made (None: the system's
    temporary directory)."""

    def __init__(self, bot: TelegramClient, media: MediaFetcher, limits: Limits, *,
                 max_flood_wait: float = 300.0, temp_root: Path | None = None) -> None:
        self._bot = bot
        self._media = media
        self._limits = limits
        self._max_flood_wait = max_flood_wait
        self.temp_root = temp_root

    async def send(self, target: Target, delivery: StoryDelivery) -> None:
        planner = _Planner(delivery, self._plan_video, self._limits.url_video)
        files = _TempFiles(self._media, self.temp_root)
        try:
            start = 0
            while start < len(delivery.items):
                batch = await self._next_batch(planner, start)
                start += len(batch)
                try:
                    await self._send_batch(target, batch, delivery.tracker, files)
                except TelegramError as exc:
                    if definitely_not_sent(exc):
                        # Telegram answered "no" (or was never reached): safe to send again
                        # later. Items of the batch already confirmed stay sent.
                        await delivery.tracker.unsent([entry.item for entry in batch])
                    raise
                finally:
                    files.clear()
        finally:
            planner.close()
            files.close()

    # planning ---------------------------------------------------------------------------

    async def _plan_video(self, item: StoryItem, caption: str) -> Planned:
        """The largest variant within the upload limit, by URL when within the by-URL limit
        or of unknown size (a HEAD that fails says nothing), else uploaded; else a link."""
        upload_limit = self._limits.upload(item.kind)
        for variant in item.variants:
            size = await self._media.size(variant.url)  # None when the server does not say
            if size is not None and size > upload_limit:
                continue
            route: Route = "url" if size is None or size <= self._limits.by_url(item.kind) \
                else "upload"
            if variant is not item.best:
                caption = _with_note(caption, messages.smaller_version_note(item, upload_limit))
            return Planned(item, caption, variant, route, size)
        return Planned(item, caption, item.best, "link")

    async def _next_batch(self, planner: _Planner, start: int) -> list[Planned]:
        """The message starting at item `start`: one link, or an album of consecutive media
        (at most 10, uploads within the byte budget)."""
        planner.ahead(start)
        first = await planner.get(start)
        batch = [first]
        if first.route == "link":
            return batch
        uploading = _upload_cost(first)
        for index in range(start + 1, min(start + ALBUM_MAX, planner.count)):
            entry = await planner.get(index)
            cost = _upload_cost(entry)
            if entry.route == "link" or uploading + cost > self._limits.album_upload:
                break
            batch.append(entry)
            uploading += cost
        return batch

    # the ladder -------------------------------------------------------------------------

    async def _send_batch(self, target: Target, batch: list[Planned],
                          tracker: DeliveryTracker, files: _TempFiles) -> None:
        # `sending` is recorded right before each call that posts, never earlier: a crash
        # while downloading must leave the items free to be sent after a restart.
        items = [entry.item for entry in batch]
        if batch[0].route == "link":
            entry = batch[0]
            limit = self._limits.upload(entry.item.kind)
            await tracker.sending(items)
            await self._send_texts(target, [
                f"{entry.caption}\n{messages.too_large_link(entry.item, limit)}"])
            await tracker.sent(items)
            return
        try:
            uploads: dict[str, Path] = {}
            for entry in batch:
                if entry.route == "upload":
                    uploads[entry.item.id] = (await files.fetch(
                        entry.variant.url, self._limits.upload(entry.item.kind))).path
            await tracker.sending(items)
            await self._post(target, batch, uploads)
        except (BadRequest, MediaError) as exc:
            log.info("album of %d refused as planned (%s); uploading it instead", len(batch),
                     _reason(exc))
            await tracker.unsent(items)  # not posted: the fallback below marks its own
        else:
            await tracker.sent(items)
            return
        await self._send_uploaded(target, batch, tracker, files)

    async def _send_uploaded(self, target: Target, batch: list[Planned],
                             tracker: DeliveryTracker, files: _TempFiles) -> None:
        """Step 2 and 3: upload everything, in sub-albums within the byte budget; links for
        what cannot be downloaded or is still refused, each in its place."""
        group: list[tuple[Planned, Path]] = []
        group_bytes = 0

        async def flush() -> None:
            nonlocal group, group_bytes
            if not group:
                return
            current, group, group_bytes = group, [], 0
            entries = [entry for entry, _ in current]
            try:
                await tracker.sending([entry.item for entry in entries])
                try:
                    await self._post(target, entries, {e.item.id: path for e, path in current})
                except BadRequest as exc:
                    log.warning("album of %d refused even uploaded (%s); posting links",
                                len(entries), _reason(exc))
                    await self._send_texts(target, [
                        f"{e.caption}\n{messages.unavailable_link(e.item)}" for e in entries])
                await tracker.sent([entry.item for entry in entries])
            finally:
                files.discard(path for _, path in current)

        for entry in batch:
            fetched = await self._download_fitting(entry, files)
            if isinstance(fetched, str):
                await flush()
                await tracker.sending([entry.item])
                await self._send_texts(target, [f"{entry.caption}\n{fetched}"])
                await tracker.sent([entry.item])
                continue
            chosen, downloaded = fetched
            if group and (len(group) == ALBUM_MAX
                          or group_bytes + downloaded.size > self._limits.album_upload):
                await flush()
            group.append((chosen, downloaded.path))
            group_bytes += downloaded.size
        await flush()

    async def _download_fitting(self, entry: Planned,
                                files: _TempFiles) -> tuple[Planned, _File] | str:
        """The largest variant (from the planned one down) within the upload limit, or the
        link text to post instead."""
        item = entry.item
        limit = self._limits.upload(item.kind)
        variants = item.variants[item.variants.index(entry.variant):] \
            if entry.variant in item.variants else (entry.variant,)
        for variant in variants:
            try:
                downloaded = await files.fetch(variant.url, limit)
            except MediaTooLarge:
                continue
            except MediaError as exc:
                log.warning("could not download %s: %s", short_url(variant.url), exc)
                return messages.unavailable_link(item)
            caption = entry.caption
            if variant is not entry.variant and variant is not item.best:
                caption = _with_note(caption, messages.smaller_version_note(item, limit))
            return replace(entry, variant=variant, caption=caption, route="upload",
                           size=downloaded.size), downloaded
        return messages.too_large_link(item, limit)

    # Telegram calls ---------------------------------------------------------------------

    async def _post(self, target: Target, entries: Sequence[Planned],
                    uploads: Mapping[str, Path]) -> None:
        """One message: sendPhoto/sendVideo for one item, sendMediaGroup for more. Uploads are
        streamed from their files (python-telegram-bot hands the open file to the transport,
        which reads it in chunks, from the start again on every attempt)."""
        if uploads:
            action = ChatAction.UPLOAD_VIDEO if any(
                e.item.kind is MediaKind.VIDEO for e in entries) else ChatAction.UPLOAD_PHOTO
            await self._chat_action(target, action)
        where = target.kwargs()
        with contextlib.ExitStack() as stack:
            handles = {key: stack.enter_context(path.open("rb"))
                       for key, path in uploads.items()}
            if len(entries) == 1:
                entry = entries[0]
                handle = handles.get(entry.item.id)

                def source() -> str | InputFile:
                    return entry.variant.url if handle is None else \
                        _input_file(handle, entry, attach=False)

                if entry.item.kind is MediaKind.PHOTO:
                    await self._call(lambda: self._bot.send_one(
                        "photo", source(), caption=entry.caption, **where))
                else:
                    await self._call(lambda: self._bot.send_one(
                        "video", source(), caption=entry.caption, supports_streaming=True,
                        **_video_shape(entry), **where))
                return
            media: list[InputMedia] = (
                [_input_media(entry, handles.get(entry.item.id)) for entry in entries]
                if handles else [_url_media(entry) for entry in entries])
            await self._call(lambda: self._bot.send_album(media, **where))

    async def _send_texts(self, target: Target, texts: Sequence[str]) -> None:
        """Post texts, packed into as few messages as Telegram's 4096 characters allow."""
        for chunk in _pack(texts):
            await self._call(lambda chunk=chunk: self._bot.send_text(  # type: ignore[misc]
                chunk, **target.kwargs()))

    async def _chat_action(self, target: Target, action: str) -> None:
        try:
            await self._bot.send_chat_action(action=action, **target.kwargs())
        except TelegramError as exc:  # only a courtesy
            log.debug("chat action failed: %s", exc)

    async def _call(self, send: Callable[[], Awaitable[T]]) -> T:
        return await call_patiently(send, max_wait=self._max_flood_wait)


class _Planner:
    """The plan of one delivery, made on demand: `ahead(start)` starts planning the items an
    album beginning at `start` can hold (all at once), `get(index)` waits for one item's plan.
    Photos and short videos are planned on the spot; other videos in tasks (their HEADs), at
    most `HEAD_CONCURRENCY` at a time."""

    def __init__(self, delivery: StoryDelivery,
                 plan_video: Callable[[StoryItem, str], Awaitable[Planned]],
                 url_video_limit: int) -> None:
        self._delivery = delivery
        self._plan_video = plan_video
        self._url_video_limit = url_video_limit
        self._slots: list[Planned | asyncio.Task[Planned] | None] = [None] * len(delivery.items)
        self._gate = asyncio.Semaphore(HEAD_CONCURRENCY)

    @property
    def count(self) -> int:
        return len(self._slots)

    def ahead(self, start: int) -> None:
        for index in range(start, min(start + ALBUM_MAX, self.count)):
            if self._slots[index] is None:
                self._slots[index] = self._start(index)

    async def get(self, index: int) -> Planned:
        slot = self._slots[index]
        if slot is None:
            slot = self._slots[index] = self._start(index)
        if isinstance(slot, asyncio.Task):
            slot = self._slots[index] = await slot
        return slot

    def close(self) -> None:
        """Cancel the planning still running (the delivery ended early)."""
        for slot in self._slots:
            if isinstance(slot, asyncio.Task):
                slot.cancel()
                slot.add_done_callback(_retrieve)

    def _start(self, index: int) -> Planned | asyncio.Task[Planned]:
        delivery = self._delivery
        item = delivery.items[index]
        caption = messages.caption(delivery.profile, item, delivery.first_index + index,
                                   delivery.total, cached_at=delivery.cached_at)[:CAPTION_MAX]
        if item.kind is MediaKind.PHOTO or self._surely_within(item):
            # By URL, unasked: if Telegram refuses it (over its by-URL limit, or its fetcher's
            # whim), the ladder downloads the largest variant within the upload limit and
            # uploads it.
            return Planned(item, caption, item.best, "url")
        return asyncio.create_task(self._gated(item, caption))

    def _surely_within(self, item: StoryItem) -> bool:
        return (item.duration is not None and item.duration > 0
                and item.duration * MAX_BYTES_PER_SECOND <= self._url_video_limit)

    async def _gated(self, item: StoryItem, caption: str) -> Planned:
        async with self._gate:
            return await self._plan_video(item, caption)


@dataclass(frozen=True, slots=True)
class _File:
    path: Path
    size: int


class _TempFiles:
    """The downloads of one delivery, streamed to files in a directory of their own (made on
    the first download). Deleting is synchronous, so that it also happens when the delivery
    is cancelled."""

    def __init__(self, media: MediaFetcher, root: Path | None) -> None:
        self._media = media
        self._root = root
        self._dir: Path | None = None
        self._fetched: dict[tuple[str, int], _File] = {}

    async def fetch(self, url: str, max_bytes: int) -> _File:
        """`url` downloaded to a file (once per album: the fallback reuses what the planned
        attempt downloaded)."""
        known = self._fetched.get((url, max_bytes))
        if known is not None:
            return known
        if self._dir is None:
            self._dir = self._make_dir()
        downloaded = await self._media.download(url, max_bytes=max_bytes, to_dir=self._dir)
        assert downloaded.path is not None  # with to_dir, always
        fetched = self._fetched[(url, max_bytes)] = _File(downloaded.path, downloaded.size)
        return fetched

    def _make_dir(self) -> Path:
        if self._root is not None:
            self._root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=self._root))

    def discard(self, paths: Iterable[Path]) -> None:
        gone = set(paths)
        for path in gone:
            path.unlink(missing_ok=True)
        self._fetched = {key: value for key, value in self._fetched.items()
                         if value.path not in gone}

    def clear(self) -> None:
        """Delete every file downloaded so far (an album is done)."""
        self.discard([fetched.path for fetched in self._fetched.values()])

    def close(self) -> None:
        self._fetched.clear()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


async def call_patiently(send: Callable[[], Awaitable[T]], *, max_wait: float = 300.0) -> T:
    """Run a Bot API call, waiting out flood control (429) within `max_wait` seconds in all.

    A 429 means Telegram did not act on the call, so trying again cannot duplicate a message.
    """
    waited = 0.0
    while True:
        try:
            return await send()
        except RetryAfter as exc:
            wait = retry_seconds(exc)
            if waited + wait > max_wait:
                raise
            log.info("Telegram flood control: waiting %.0f s", wait)
            await asyncio.sleep(wait)
            waited += wait


def _retrieve(task: asyncio.Task[Planned]) -> None:
    """Mark an abandoned planning task's outcome as seen (no 'never retrieved' warning)."""
    if not task.cancelled():
        task.exception()


def _upload_cost(entry: Planned) -> int:
    return (entry.size or 0) if entry.route == "upload" else 0


def _input_file(handle: IO[bytes], entry: Planned, *, attach: bool) -> InputFile:
    """The open file as an upload that python-telegram-bot does not read into memory."""
    handle.seek(0)
    return InputFile(handle, filename=_filename(entry), attach=attach, read_file_handle=False)


def _url_media(entry: Planned) -> dict[str, object]:
    """An album item sent by URL: the Bot API's InputMedia fields as a plain dict. (Built for
    each of a hundred albums at once, python-telegram-bot's InputMedia objects cost ~0.1 ms
    per item: each stats its URL as a possible local path, and `_post` copies each again; the
    dict costs ~2 µs and is sent as the same JSON.)"""
    fields: dict[str, object] = {"media": entry.variant.url, "caption": entry.caption}
    if entry.item.kind is MediaKind.PHOTO:
        fields["type"] = "photo"
    else:
        fields.update(type="video", supports_streaming=True, **_video_shape(entry))
    return fields


def _input_media(entry: Planned, handle: IO[bytes] | None) -> InputMediaPhoto | InputMediaVideo:
    """An item of an album with uploads in it (python-telegram-bot attaches the files)."""
    # In an album, uploads are referred to as attach://<name> (an InputFile passed in is used
    # as it is, so it must be made with attach=True).
    source: str | InputFile = entry.variant.url if handle is None else \
        _input_file(handle, entry, attach=True)
    if entry.item.kind is MediaKind.PHOTO:
        return InputMediaPhoto(media=source, caption=entry.caption, filename=_filename(entry))
    return InputMediaVideo(media=source, caption=entry.caption, filename=_filename(entry),
                           supports_streaming=True, **_video_shape(entry))


def _video_shape(entry: Planned) -> dict[str, int]:
    shape: dict[str, int] = {}
    if entry.variant.width and entry.variant.height:
        shape.update(width=entry.variant.width, height=entry.variant.height)
    if entry.item.duration:
        shape["duration"] = max(1, round(entry.item.duration))
    return shape


def _filename(entry: Planned) -> str:
    extension = "jpg" if entry.item.kind is MediaKind.PHOTO else "mp4"
    safe = "".join(c for c in entry.item.id if c.isalnum() or c in "_-")[:40] or "story"
    return f"{safe}.{extension}"


def _with_note(caption: str, note: str) -> str:
    combined = f"{caption}\n{note}"
    return combined if len(combined) <= CAPTION_MAX else caption


def _pack(texts: Sequence[str]) -> list[str]:
    chunks: list[str] = []
    for text in texts:
        text = text[:TEXT_MAX]
        if chunks and len(chunks[-1]) + 2 + len(text) <= TEXT_MAX:
            chunks[-1] += "\n\n" + text
        else:
            chunks.append(text)
    return chunks


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]
