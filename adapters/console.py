"""The console adapter: chat lines from stdin, what a chat would show on stdout.

It is the third platform, used by `stories-bot demo` so a newcomer sees the whole flow with no
account. The person at the terminal is the chat's admin. Story items are listed one line each
(kind, size, taken time) with the file they were saved to, or their URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
from pathlib import Path
from typing import TextIO

from bot import messages
from bot.errors import StoriesBotError
from bot.media import MediaError, MediaFetcher
from bot.models import ChatRef, MediaKind, Origin, StoryItem
from bot.ports import StoryDelivery
from bot.service import StoriesService
from bot.settings import Settings
from bot.spending import parse_limits

log = logging.getLogger(__name__)

CHAT = ChatRef("console", "local")
MAX_DOWNLOAD = 100 * 1024 * 1024


class ConsoleAdapter:
    platform = "console"

    def __init__(self, settings: Settings, service: StoriesService, media: MediaFetcher, *,
                 stdin: TextIO | None = None, stdout: TextIO | None = None,
                 download_dir: Path | None = None, wait_each: bool = False) -> None:
        self._service = service
        self._media = media
        self._in = stdin or sys.stdin
        self._out = stdout or sys.stdout
        self._download_dir = download_dir
        # Piped input: finish each command before reading the next, as a person would.
        self._wait_each = wait_each
        self._lines: asyncio.Queue[str | None] = asyncio.Queue()
        self._reader: threading.Thread | None = None
        self._status_seq = 0
        self.running = False
        self.finished = asyncio.Event()

    # ChatAdapter -------------------------------------------------------------------------

    def _print(self, text: str) -> None:
        self._out.write(text + "\n")
        self._out.flush()

    async def post_status(self, origin: Origin, text: str) -> str | None:
        self._status_seq += 1
        self._print(f"bot> {text}")
        return str(self._status_seq)

    async def edit_status(self, origin: Origin, status_ref: str | None, text: str) -> None:
        self._print(f"bot> {text}")

    async def send_text(self, origin: Origin, text: str) -> None:
        for line in text.splitlines() or [""]:
            self._print(f"bot> {line}")

    async def send_stories(self, origin: Origin, delivery: StoryDelivery) -> None:
        for offset, item in enumerate(delivery.items):
            index = delivery.first_index + offset
            await delivery.tracker.sending([item])
            size = f"{item.width}x{item.height}" if item.width and item.height else "size ?"
            kind = "video" if item.kind is MediaKind.VIDEO else "photo"
            where = await self._save(delivery, item, index)
            caption = messages.caption(delivery.profile, item, index, delivery.total,
                                       cached_at=delivery.cached_at)
            self._print(f"  [{index + 1}/{delivery.total}] {kind} {size} · {caption}\n"
                        f"        {where}")
            await delivery.tracker.sent([item])

    async def _save(self, delivery: StoryDelivery, item: StoryItem, index: int) -> str:
        if self._download_dir is None:
            return item.url
        extension = "mp4" if item.kind is MediaKind.VIDEO else "jpg"
        name = f"{delivery.profile.username}-{delivery.request_id}-{index + 1:02d}.{extension}"
        try:
            saved = await self._media.download(item.url, max_bytes=MAX_DOWNLOAD,
                                               to_dir=self._download_dir, filename=name)
        except MediaError as exc:
            return f"not saved ({exc}); URL: {item.url}"
        return f"saved to {saved.path} ({saved.size:,} bytes)"

    # input -------------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()

        def read() -> None:
            # A daemon thread: an interactive readline cannot be cancelled, and must not
            # keep the process alive at exit.
            for line in self._in:
                loop.call_soon_threadsafe(self._lines.put_nowait, line)
            loop.call_soon_threadsafe(self._lines.put_nowait, None)

        self._reader = threading.Thread(target=read, name="console-stdin", daemon=True)
        self._reader.start()
        self.running = True
        self._task = asyncio.create_task(self._loop(), name="console-adapter")

    async def stop(self) -> None:
        self.running = False
        if not self._task.done():
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _loop(self) -> None:
        try:
            while (line := await self._lines.get()) is not None:
                line = line.strip()
                if not line:
                    continue
                if line in ("/quit", "/exit"):
                    break
                await self.handle(line)
                if self._wait_each:
                    await self._service.wait_idle()
            await self._service.wait_idle()
        finally:
            self.finished.set()

    async def handle(self, line: str) -> None:
        origin = Origin(chat=CHAT, user_id="local", user_name="you", is_admin=True)
        command, _, argument = line.partition(" ")
        command = command.lower()
        argument = argument.strip()
        try:
            if command == "/stories":
                await self._service.request_stories(origin, argument)
            elif command == "/setkey":
                await self.send_text(origin, await self._service.set_key(origin, argument))
            elif command == "/removekey":
                await self.send_text(origin, await self._service.remove_key(origin))
            elif command == "/usage":
                await self.send_text(origin, await self._service.usage_text(origin))
            elif command == "/limits":
                if argument:
                    text = await self._service.set_limits(origin, **parse_limits(argument))
                else:
                    text = await self._service.usage_text(origin)
                await self.send_text(origin, text)
            elif command in ("/help", "/start"):
                await self.send_text(origin, messages.help_text(self.platform))
            else:
                await self.send_text(origin, "Unknown command. Try /help")
        except StoriesBotError as exc:
            await self.send_text(origin, exc.user_message)
