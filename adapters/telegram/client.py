"""`TelegramClient`: python-telegram-bot's `ExtBot` with the changes the bot needs under
load, measured with `python -m benchmarks.run` (see docs/performance.md).

- getUpdates asks for at most `UPDATES_PER_POLL` updates (Telegram's default is 100):
  python-telegram-bot decodes a whole batch in one step of the event loop (~15 ms for 100
  commands, ~5 ms for 20 under load) while everything else waits. A backlog is fetched in
  more polls: 1,000 commands took ~6 % longer with 10 than with 20, for fewer and shorter
  stalls (A/B, 4 pairs: p99 gap 9.9-11.5 → 9.8-10.1 ms, gaps over 10 ms 12-49 → 13-16).
- The calls the bot makes most — `send_album` (sendMediaGroup), `send_one` (sendPhoto,
  sendVideo), `send_text` (sendMessage), `edit_text` (editMessageText) — do not decode
  Telegram's answer into `Message` objects (~0.3 ms of the event loop per message; ~1.5 ms
  for an album of 10): the bot reads at most the new message's id. The call itself is
  python-telegram-bot's own (`_post`: defaults, files to attach, the rate limiter,
  Telegram's errors raised as exceptions).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from telegram import InputFile, InputMediaPhoto, InputMediaVideo, Update
from telegram.ext import ExtBot

UPDATES_PER_POLL = 10

# An album item: an InputMedia object, or its Bot API fields as a dict (how the bot sends an
# album of URLs: `adapters.telegram.sending._url_media`). An album is all of one or the other.
InputMedia = InputMediaPhoto | InputMediaVideo | dict[str, object]


class TelegramClient(ExtBot[None]):
    async def get_updates(self, *args: Any, **kwargs: Any) -> tuple[Update, ...]:
        if len(args) < 2 and kwargs.get("limit") is None:
            kwargs["limit"] = UPDATES_PER_POLL
        return await super().get_updates(*args, **kwargs)

    def _insert_defaults(self, data: dict[str, object]) -> None:
        # python-telegram-bot copies every InputMedia of an album to set its parse_mode (the
        # bot sets no `Defaults`); an album given as dicts is sent as it is.
        media = data.get("media")
        if isinstance(media, list) and media and isinstance(media[0], dict):
            del data["media"]
            super()._insert_defaults(data)
            data["media"] = media
            return
        super()._insert_defaults(data)

    async def send_album(self, media: Sequence[InputMedia], **where: Any) -> None:
        """Post `media` (2-10 items) as one album; `where` as for `send_media_group`
        (chat_id, message_thread_id, reply_parameters, …)."""
        if not 2 <= len(media) <= 10:
            raise ValueError("an album holds 2 to 10 items")
        await self._post("sendMediaGroup", {"media": list(media), **where})

    async def send_one(self, kind: Literal["photo", "video"], media: str | InputFile,
                       **fields: Any) -> None:
        """sendPhoto or sendVideo of one URL or upload; `fields` as for `send_photo` /
        `send_video` (caption, width, height, duration, supports_streaming, chat_id,
        reply_parameters, …)."""
        await self._post("sendPhoto" if kind == "photo" else "sendVideo", {kind: media, **fields})

    async def send_text(self, text: str, **where: Any) -> int:
        """sendMessage (`where` as for `send_message`); the new message's id."""
        result = await self._post("sendMessage", {"text": text, **where})
        return int(result["message_id"])

    async def edit_text(self, text: str, *, chat_id: int, message_id: int) -> None:
        """editMessageText of a message of the bot's."""
        await self._post("editMessageText",
                         {"text": text, "chat_id": chat_id, "message_id": message_id})
