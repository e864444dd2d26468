"""Stories onto Telegram: in order, in albums of up to 10, by URL where Telegram can fetch them,
else uploaded, else as links — and never twice.

Each item is planned first (sizes from HEAD requests, variants best first): the largest variant
within the upload limit is chosen, sent by URL when its size is within the by-URL limit or
unknown, uploaded when bigger; when no variant fits even the upload limit, a link with a word
why. Consecutive media items form albums (at most 10, uploads within a byte budget per request).

Each album climbs a ladder until it is posted:

1. as planned;
2. on a Bad Request (Telegram's fetcher refused a URL — it does at random — or a file):
   every item downloaded (streamed, size-capped, the largest variant that fits) and uploaded;
3. what Telegram still refuses, or what cannot be downloaded, is posted as links, in place.

Flood control (429) is waited out (AIORateLimiter first, then here, bounded). Anything else —
the network, a bot removed from the chat — is raised for the core to retry later; items already
confirmed went through the `DeliveryTracker` and are not sent again.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Literal, TypeVar

from telegram import Bot, InputMediaPhoto, InputMediaVideo
from telegram.constants import ChatAction
from telegram.error import BadRequest, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.warnings import PTBDeprecationWarning

from adapters.telegram.routing import Target
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

Route = Literal["url", "upload", "link"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Telegram's size limits, in bytes."""

    url_photo: int = 5 * MB
    url_video: int = 20 * MB
    upload_photo: int = 10 * MB
    upload_video: int = 50 * MB
    album_upload: int = 50 * MB  # bytes uploaded in one request: bounds memory, too

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
    if isinstance(exc, TimedOut):
        return False
    if isinstance(exc, NetworkError) and not isinstance(exc, BadRequest):
        # python-telegram-bot words transport failures "httpx.<Error>: …"; anything else
        # is Telegram's own answer (a 5xx description).
        text = str(exc)
        if text.startswith("httpx.") or text.startswith("Unknown error in HTTP"):
            return text.startswith(("httpx.ConnectError", "httpx.ConnectTimeout"))
        return True
    return True


class StorySender:
    """Posts one `StoryDelivery` to one chat. Stateless between deliveries."""

    def __init__(self, bot: Bot, media: MediaFetcher, limits: Limits, *,
                 max_flood_wait: float = 300.0) -> None:
        self._bot = bot
        self._media = media
        self._limits = limits
        self._max_flood_wait = max_flood_wait

    async def send(self, target: Target, delivery: StoryDelivery) -> None:
        planned = await self._plan(delivery)
        for batch in self._batches(planned):
            try:
                await self._send_batch(target, batch, delivery.tracker)
            except TelegramError as exc:
                if definitely_not_sent(exc):
                    # Telegram answered "no" (or was never reached): safe to send again later.
                    # Items of the batch already confirmed stay sent.
                    await delivery.tracker.unsent([entry.item for entry in batch])
                raise

    # planning ---------------------------------------------------------------------------

    async def _plan(self, delivery: StoryDelivery) -> list[Planned]:
        gate = asyncio.Semaphore(HEAD_CONCURRENCY)

        async def plan(index: int, item: StoryItem) -> Planned:
            caption = messages.caption(delivery.profile, item, delivery.first_index + index,
                                       delivery.total, cached_at=delivery.cached_at)
            async with gate:
                return await self._plan_item(item, caption[:CAPTION_MAX])

        return list(await asyncio.gather(*(plan(i, item)
                                           for i, item in enumerate(delivery.items))))

    async def _plan_item(self, item: StoryItem, caption: str) -> Planned:
        upload_limit = self._limits.upload(item.kind)
        for variant in item.variants:
            size = await self._media.size(variant.url)
            if size is not None and size > upload_limit:
                continue
            route: Route = "url" if size is None or size <= self._limits.by_url(item.kind) \
                else "upload"
            if variant is not item.best:
                caption = _with_note(caption, messages.smaller_version_note(item, upload_limit))
            return Planned(item, caption, variant, route, size)
        return Planned(item, caption, item.best, "link")

    def _batches(self, planned: Sequence[Planned]) -> list[list[Planned]]:
        batches: list[list[Planned]] = []
        current: list[Planned] = []
        uploading = 0
        for entry in planned:
            if entry.route == "link":
                if current:
                    batches.append(current)
                current, uploading = [], 0
                batches.append([entry])
                continue
            cost = (entry.size or 0) if entry.route == "upload" else 0
            if current and (len(current) == ALBUM_MAX
                            or uploading + cost > self._limits.album_upload):
                batches.append(current)
                current, uploading = [], 0
            current.append(entry)
            uploading += cost
        if current:
            batches.append(current)
        return batches

    # the ladder -------------------------------------------------------------------------

    async def _send_batch(self, target: Target, batch: list[Planned],
                          tracker: DeliveryTracker) -> None:
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
            uploads = {entry.item.id: await self._download(entry.variant.url, entry.item.kind)
                       for entry in batch if entry.route == "upload"}
            await tracker.sending(items)
            await self._post(target, batch, uploads)
        except (BadRequest, MediaError) as exc:
            log.info("album of %d refused as planned (%s); uploading it instead", len(batch),
                     _reason(exc))
            await tracker.unsent(items)  # not posted: the fallback below marks its own
        else:
            await tracker.sent(items)
            return
        await self._send_uploaded(target, batch, tracker)

    async def _send_uploaded(self, target: Target, batch: list[Planned],
                             tracker: DeliveryTracker) -> None:
        """Step 2 and 3: upload everything, in sub-albums within the byte budget; links for
        what cannot be downloaded or is still refused, each in its place."""
        group: list[tuple[Planned, bytes]] = []
        group_bytes = 0

        async def flush() -> None:
            nonlocal group, group_bytes
            if not group:
                return
            current, group, group_bytes = group, [], 0
            entries = [entry for entry, _ in current]
            await tracker.sending([entry.item for entry in entries])
            try:
                await self._post(target, entries, {e.item.id: data for e, data in current})
            except BadRequest as exc:
                log.warning("album of %d refused even uploaded (%s); posting links",
                            len(entries), _reason(exc))
                await self._send_texts(target, [
                    f"{e.caption}\n{messages.unavailable_link(e.item)}" for e in entries])
            await tracker.sent([entry.item for entry in entries])

        for entry in batch:
            fetched = await self._download_fitting(entry)
            if isinstance(fetched, str):
                await flush()
                await tracker.sending([entry.item])
                await self._send_texts(target, [f"{entry.caption}\n{fetched}"])
                await tracker.sent([entry.item])
                continue
            chosen, data = fetched
            if group and (len(group) == ALBUM_MAX
                          or group_bytes + len(data) > self._limits.album_upload):
                await flush()
            group.append((chosen, data))
            group_bytes += len(data)
        await flush()

    async def _download_fitting(self, entry: Planned) -> tuple[Planned, bytes] | str:
        """The largest variant (from the planned one down) within the upload limit, or the
        link text to post instead."""
        item = entry.item
        limit = self._limits.upload(item.kind)
        variants = item.variants[item.variants.index(entry.variant):] \
            if entry.variant in item.variants else (entry.variant,)
        for variant in variants:
            try:
                data = await self._download(variant.url, item.kind)
            except MediaTooLarge:
                continue
            except MediaError as exc:
                log.warning("could not download %s: %s", short_url(variant.url), exc)
                return messages.unavailable_link(item)
            caption = entry.caption
            if variant is not entry.variant and variant is not item.best:
                caption = _with_note(caption, messages.smaller_version_note(item, limit))
            return replace(entry, variant=variant, caption=caption, route="upload",
                           size=len(data)), data
        return messages.too_large_link(item, limit)

    async def _download(self, url: str, kind: MediaKind) -> bytes:
        downloaded = await self._media.download(url, max_bytes=self._limits.upload(kind))
        return downloaded.read()

    # Telegram calls ---------------------------------------------------------------------

    async def _post(self, target: Target, entries: Sequence[Planned],
                    uploads: dict[str, bytes]) -> None:
        """One message: sendPhoto/sendVideo for one item, sendMediaGroup for more."""
        if uploads:
            action = ChatAction.UPLOAD_VIDEO if any(
                e.item.kind is MediaKind.VIDEO for e in entries) else ChatAction.UPLOAD_PHOTO
            await self._chat_action(target, action)
        where = target.kwargs()
        if len(entries) == 1:
            entry = entries[0]
            source = uploads.get(entry.item.id, entry.variant.url)
            if entry.item.kind is MediaKind.PHOTO:
                await self._call(lambda: self._bot.send_photo(
                    photo=source, caption=entry.caption, filename=_filename(entry), **where))
            else:
                await self._call(lambda: self._bot.send_video(
                    video=source, caption=entry.caption, filename=_filename(entry),
                    supports_streaming=True, **_video_shape(entry), **where))
            return
        album = [_input_media(entry, uploads.get(entry.item.id)) for entry in entries]
        await self._call(lambda: self._bot.send_media_group(media=album, **where))

    async def _send_texts(self, target: Target, texts: Sequence[str]) -> None:
        """Post texts, packed into as few messages as Telegram's 4096 characters allow."""
        for chunk in _pack(texts):
            await self._call(lambda chunk=chunk: self._bot.send_message(  # type: ignore[misc]
                text=chunk, **target.kwargs()))

    async def _chat_action(self, target: Target, action: str) -> None:
        try:
            await self._bot.send_chat_action(action=action, **target.kwargs())
        except TelegramError as exc:  # only a courtesy
            log.debug("chat action failed: %s", exc)

    async def _call(self, send: Callable[[], Awaitable[T]]) -> T:
        return await call_patiently(send, max_wait=self._max_flood_wait)


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


def _input_media(entry: Planned, data: bytes | None) -> InputMediaPhoto | InputMediaVideo:
    source: str | bytes = data if data is not None else entry.variant.url
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
