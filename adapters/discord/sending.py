"""Posting to Discord: texts and stories, through the interaction while it lives, then the channel.

`Outbox` knows where one command's answers go (see `routing.ReplyRoute`) and falls back to the
channel when the interaction token is too old or Discord says it is gone. `StoryPoster` turns a
`StoryDelivery` into as few messages as Discord allows: each item downloaded (streamed, capped
at the interaction's `attachment_size_limit`) in the largest rendition that fits, up to 10 files
and 25 MiB per message, in the order taken, one caption line per item. An item with no
rendition that fits becomes a link with a word why (its preview attached where that fits); an
item that cannot be downloaded becomes a link too, so one bad item never loses the others.
Delivery progress is reported to the core's tracker around every message.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import discord

from adapters.discord.routing import ReplyRoute
from bot import messages
from bot.media import MediaError, MediaFetcher, MediaTooLarge, short_url
from bot.models import MediaKind, MediaVariant, StoryItem
from bot.ports import StoryDelivery

log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()
MAX_FILES = 10
MAX_CONTENT = 2000
MAX_REQUEST_BYTES = 25 * 1024 * 1024  # Discord's cap on one request, whatever the file limit
DOWNLOADS_AT_ONCE = 4
ORIGINAL = "original"  # the ref of an interaction's original response
_ORIGINAL_ID = "@original"  # how the API addresses that message

# Discord error codes meaning "this interaction token can no longer be used".
_TOKEN_GONE = frozenset({10015, 10062, 50027})
_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp",
               "image/heic": "heic", "video/mp4": "mp4", "video/quicktime": "mov"}


def clean(text: str) -> str:
    """Plain core text → Discord content: markdown escaped (links kept), at most 2,000 chars."""
    text = discord.utils.escape_markdown(text)
    return text if len(text) <= MAX_CONTENT else text[: MAX_CONTENT - 1] + "…"


def _token_gone(exc: discord.HTTPException) -> bool:
    return exc.status == 401 or exc.code in _TOKEN_GONE


@dataclass(frozen=True, slots=True)
class Upload:
    """A downloaded file waiting to be attached (discord.py closes a `File` once sent, so a
    fresh one is made for every attempt)."""

    path: Path
    filename: str
    size: int

    def to_file(self) -> discord.File:
        return discord.File(self.path, filename=self.filename)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


class NoRoute(Exception):
    """Neither a usable interaction token nor a channel to post in."""


class Outbox:
    """Posts the answers of one command. Refs returned by `send` are strings the core keeps:
    `original`, `webhook:<message id>` or `channel:<channel id>:<message id>`."""

    def __init__(self, client: discord.Client, route: ReplyRoute, *, now: float) -> None:
        self._client = client
        self.route = route
        self._token_alive = route.token_usable(now)

    def _webhook(self) -> discord.Webhook:
        assert self.route.application_id is not None and self.route.token is not None
        return discord.Webhook.partial(self.route.application_id, self.route.token,
                                       client=self._client)

    def _lost_token(self, exc: discord.HTTPException) -> None:
        log.info("interaction token no longer usable (%s %s); posting in the channel instead",
                 exc.status, exc.code)
        self._token_alive = False

    async def edit_original(self, content: str) -> bool:
        """Fill or replace the interaction's original response; False if that is not possible."""
        if not self._token_alive:
            return False
        try:
            # discord.py types message ids as int, but passes this one through unchanged.
            await self._webhook().edit_message(_ORIGINAL_ID,  # type: ignore[arg-type]
                                               content=clean(content),
                                               allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as exc:
            if _token_gone(exc):
                self._lost_token(exc)
                return False
            if exc.status == 404:
                return False  # the user deleted it
            raise
        return True

    async def send(self, content: str | None, uploads: Sequence[Upload] = ()) -> str:
        """Post a new message; returns its ref."""
        text = clean(content) if content else None
        if self._token_alive:
            try:
                message = await self._webhook().send(
                    content=text or discord.utils.MISSING,
                    files=[u.to_file() for u in uploads] or discord.utils.MISSING,
                    allowed_mentions=NO_MENTIONS, wait=True)
                return f"webhook:{message.id}"
            except discord.HTTPException as exc:
                if not _token_gone(exc):
                    raise
                self._lost_token(exc)
        if self.route.channel_id is None:
            raise NoRoute("no interaction token and no channel to post in")
        channel = self._client.get_partial_messageable(self.route.channel_id)
        message = await channel.send(content=text, files=[u.to_file() for u in uploads] or None,
                                     allowed_mentions=NO_MENTIONS)
        return f"channel:{message.channel.id}:{message.id}"

    async def edit(self, ref: str | None, content: str) -> bool:
        """Replace the text of a message this outbox (or an earlier one) sent; False when it
        cannot be edited any more (token expired, message deleted, unknown ref)."""
        if not ref:
            return False
        if ref == ORIGINAL:
            return await self.edit_original(content)
        kind, _, rest = ref.partition(":")
        try:
            if kind == "webhook" and self._token_alive:
                await self._webhook().edit_message(int(rest), content=clean(content),
                                                   allowed_mentions=NO_MENTIONS)
                return True
            if kind == "channel":
                channel_id, _, message_id = rest.partition(":")
                channel = self._client.get_partial_messageable(int(channel_id))
                await channel.get_partial_message(int(message_id)).edit(
                    content=clean(content), allowed_mentions=NO_MENTIONS)
                return True
        except ValueError:
            log.warning("unknown status ref %r", ref)
        except discord.HTTPException as exc:
            if _token_gone(exc):
                self._lost_token(exc)
            elif exc.status not in (403, 404):
                raise
        return False


# --- stories ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Piece:
    """One story item as it will appear: a caption line (and a note) and maybe a file."""

    item: StoryItem
    text: str
    upload: Upload | None = None
    fallback: str = ""  # the text to send instead if Discord refuses the file


@dataclass(slots=True)
class Batch:
    limit: int
    pieces: list[Piece] = field(default_factory=list)

    @property
    def uploads(self) -> list[Upload]:
        return [p.upload for p in self.pieces if p.upload is not None]

    @property
    def content(self) -> str:
        return "\n".join(p.text for p in self.pieces)

    def fits(self, piece: Piece) -> bool:
        if not self.pieces:
            return True
        uploads = self.uploads
        extra = [piece.upload] if piece.upload else []
        if len(uploads) + len(extra) > MAX_FILES:
            return False
        if sum(u.size for u in [*uploads, *extra]) > max(MAX_REQUEST_BYTES, self.limit):
            return False
        return len(clean(self.content + "\n" + piece.text)) < MAX_CONTENT

    def discard(self) -> None:
        for upload in self.uploads:
            upload.discard()


class StoryPoster:
    """Posts one delivery through an `Outbox`; files live in `workdir` only until sent."""

    def __init__(self, outbox: Outbox, media: MediaFetcher, delivery: StoryDelivery, *,
                 workdir: Path) -> None:
        self._outbox = outbox
        self._media = media
        self._delivery = delivery
        self._workdir = workdir
        self._limit = outbox.route.size_limit

    async def run(self) -> None:
        semaphore = asyncio.Semaphore(DOWNLOADS_AT_ONCE)

        async def prepare(offset: int, item: StoryItem) -> Piece:
            async with semaphore:
                return await self._prepare(item, self._delivery.first_index + offset)

        # Downloads run ahead of the sending (at most one message's worth), in order.
        todo = list(enumerate(self._delivery.items))
        ahead: deque[asyncio.Task[Piece]] = deque()
        batch = Batch(self._limit)
        try:
            while todo or ahead:
                while todo and len(ahead) < MAX_FILES:
                    ahead.append(asyncio.create_task(prepare(*todo.pop(0))))
                piece = await ahead.popleft()
                if not batch.fits(piece):
                    await self._flush(batch)
                    batch = Batch(self._limit)
                batch.pieces.append(piece)
            if batch.pieces:
                await self._flush(batch)
        finally:
            batch.discard()
            for task in ahead:
                task.cancel()
            for result in await asyncio.gather(*ahead, return_exceptions=True):
                if isinstance(result, Piece) and result.upload is not None:
                    result.upload.discard()

    async def _prepare(self, item: StoryItem, index: int) -> Piece:
        delivery = self._delivery
        caption = messages.caption(delivery.profile, item, index, delivery.total,
                                   cached_at=delivery.cached_at)
        name = f"{delivery.profile.username}_{index + 1:02d}"
        too_large = False
        # Best first; Instagram lists some renditions twice.
        variants = list({v.url: v for v in item.variants}.values())
        for position, variant in enumerate(variants):
            try:
                upload = await self._download(variant, name, item.kind)
            except MediaTooLarge:
                too_large = True
                continue
            except MediaError as exc:
                log.info("story %s: %s", item.id, exc)
                continue
            link = messages.too_large_link(item, self._limit)
            if position == 0:
                return Piece(item, caption, upload, fallback=f"{caption}\n{link}")
            note = messages.smaller_version_note(item, self._limit)
            return Piece(item, f"{caption}\n{note}", upload, fallback=f"{caption}\n{link}")
        note = (messages.too_large_link(item, self._limit) if too_large
                else messages.unavailable_link(item))
        preview = await self._preview(item, name)
        return Piece(item, f"{caption}\n{note}", preview, fallback=f"{caption}\n{note}")

    async def _preview(self, item: StoryItem, name: str) -> Upload | None:
        if item.preview is None or item.preview.url in {v.url for v in item.variants}:
            return None
        try:
            return await self._download(item.preview, f"{name}_preview", MediaKind.PHOTO)
        except MediaError:
            return None

    async def _download(self, variant: MediaVariant, name: str, kind: MediaKind) -> Upload:
        got = await self._media.download(variant.url, max_bytes=self._limit, to_dir=self._workdir)
        assert got.path is not None
        # Discord shows a file by its extension: keep the one the content type names, and
        # fall back on the item's kind for anything vague (application/octet-stream...).
        content_type = (got.content_type or "").split(";")[0].strip().lower()
        guessed = (mimetypes.guess_extension(content_type) or "").lstrip(".") \
            if content_type.startswith(("image/", "video/")) else ""
        extension = (_EXTENSIONS.get(content_type) or guessed
                     or ("mp4" if kind is MediaKind.VIDEO else "jpg"))
        log.debug("downloaded %s (%d bytes)", short_url(variant.url), got.size)
        return Upload(got.path, f"{name}.{extension}", got.size)

    async def _flush(self, batch: Batch) -> None:
        tracker = self._delivery.tracker
        items = [p.item for p in batch.pieces]
        await tracker.sending(items)
        try:
            await self._outbox.send(batch.content, batch.uploads)
        except (discord.HTTPException, aiohttp.ClientConnectorError) as exc:
            if not isinstance(exc, discord.HTTPException) or exc.status not in (400, 413) \
                    or not batch.uploads:
                await tracker.unsent(items)  # Discord answered (or was never reached): not posted
                raise
            # Discord refused the files (smaller limit than announced, a format it rejects):
            # post the items one by one so that only the refused ones become links.
            log.warning("Discord refused a message of %d files (%s %s); sending them one by one",
                        len(batch.uploads), exc.status, exc.code)
            for piece in batch.pieces:
                await self._send_alone(piece)
        else:
            await tracker.sent(items)
        finally:
            batch.discard()

    async def _send_alone(self, piece: Piece) -> None:
        tracker = self._delivery.tracker
        await tracker.sending([piece.item])
        try:
            try:
                await self._outbox.send(piece.text, [piece.upload] if piece.upload else [])
            except discord.HTTPException as exc:
                if exc.status not in (400, 413) or piece.upload is None:
                    raise
                await self._outbox.send(piece.fallback or piece.text)
        except (discord.HTTPException, aiohttp.ClientConnectorError):
            await tracker.unsent([piece.item])  # an answer (or no connection): not posted
            raise
        await tracker.sent([piece.item])
