"""`TelegramClient`: python-telegram-bot's `ExtBot` with the two changes the bot needs under
load, both measured with `python -m benchmarks.run` (see docs/performance.md).

- getUpdates asks for at most `UPDATES_PER_POLL` updates (Telegram's default is 100):
  python-telegram-bot decodes a whole batch in one step of the event loop, ~15 ms for 100
  commands, while everything else waits. A backlog is fetched in more polls.
- `send_album` is sendMediaGroup without decoding Telegram's answer, which describes every
  posted message: python-telegram-bot builds a `Message` for each (~1.5 ms of the event loop
  per album of 10) and the bot reads none of them. The call itself is python-telegram-bot's
  own (`_post`: defaults, files to attach, the rate limiter, Telegram's errors as exceptions).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from telegram import InputMediaPhoto, InputMediaVideo, Update
from telegram.ext import ExtBot

UPDATES_PER_POLL = 20


class TelegramClient(ExtBot[None]):
    async def get_updates(self, *args: Any, **kwargs: Any) -> tuple[Update, ...]:
        if len(args) < 2 and kwargs.get("limit") is None:
            kwargs["limit"] = UPDATES_PER_POLL
        return await super().get_updates(*args, **kwargs)

    async def send_album(self, media: Sequence[InputMediaPhoto | InputMediaVideo],
                         **where: Any) -> None:
        """Post `media` (2-10 items) as one album; `where` as for `send_media_group`
        (chat_id, message_thread_id, reply_parameters, …)."""
        if not 2 <= len(media) <= 10:
            raise ValueError("an album holds 2 to 10 items")
        await self._post("sendMediaGroup", {"media": list(media), **where})
