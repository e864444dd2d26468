"""An in-process chat adapter that records what the core asks it to show.

It is a real `ChatAdapter` (no socket is involved between the core and an adapter), used by
the core's tests; the Telegram and Discord adapters have their own tests against fake servers.
`block_stories` lets a test hold a delivery mid-way (to stop the process there).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.models import Origin, StoryItem
from bot.ports import StoryDelivery


@dataclass
class Shown:
    kind: str  # 'status' | 'edit' | 'text' | 'stories'
    chat: str
    text: str = ""
    items: list[StoryItem] = field(default_factory=list)
    status_ref: str | None = None


class RecordingAdapter:
    def __init__(self, platform: str = "test", *, album_size: int = 10) -> None:
        self.platform = platform
        self.album_size = album_size
        self.shown: list[Shown] = []
        self.running = True
        self.fail_stories = 0  # raise on the next N send_stories calls
        self.refuse_albums: set[int] = set()  # album numbers the "platform" answers 400 to
        self.block_after_albums: int | None = None  # hang after this many albums
        self.blocked = asyncio.Event()
        self._changed = asyncio.Condition()
        self._seq = 0

    async def _record(self, shown: Shown) -> None:
        async with self._changed:
            self.shown.append(shown)
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[list[Shown]], Any], timeout: float = 10) -> Any:
        async with asyncio.timeout(timeout), self._changed:
            while not (result := predicate(self.shown)):
                await self._changed.wait()
            return result

    def texts(self) -> list[str]:
        return [s.text for s in self.shown if s.kind in ("status", "edit", "text")]

    def items(self) -> list[StoryItem]:
        return [i for s in self.shown if s.kind == "stories" for i in s.items]

    async def start(self) -> None:
        self.running = True

    async def stop(self) -> None:
        self.running = False

    async def post_status(self, origin: Origin, text: str) -> str | None:
        self._seq += 1
        await self._record(Shown("status", str(origin.chat), text, status_ref=str(self._seq)))
        return str(self._seq)

    async def edit_status(self, origin: Origin, status_ref: str | None, text: str) -> None:
        await self._record(Shown("edit", str(origin.chat), text, status_ref=status_ref))

    async def send_text(self, origin: Origin, text: str) -> None:
        await self._record(Shown("text", str(origin.chat), text))

    async def send_stories(self, origin: Origin, delivery: StoryDelivery) -> None:
        if self.fail_stories:
            self.fail_stories -= 1
            raise ConnectionError("platform unavailable")
        items = list(delivery.items)
        for albums, start in enumerate(range(0, len(items), self.album_size)):
            if self.block_after_albums is not None and albums >= self.block_after_albums:
                self.blocked.set()
                await asyncio.Event().wait()  # held until the task is cancelled
            album = items[start:start + self.album_size]
            await delivery.tracker.sending(album)
            if albums in self.refuse_albums:
                self.refuse_albums.discard(albums)
                await delivery.tracker.unsent(album)  # the platform said no: safe to resend
                raise ConnectionRefusedError("platform refused the album")
            await self._record(Shown("stories", str(origin.chat), items=album))
            await delivery.tracker.sent(album)
