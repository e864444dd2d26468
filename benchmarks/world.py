"""Everything around the bot, in its own process: the stories API emulator (which also serves
the media) and the fake Telegram Bot API (`tests.fakes.telegram_api`).

Two changes to the fake, for measuring only: media sent by URL is recorded without being
downloaded, and uploaded bytes are not kept (the real Telegram fetches and stores on its own
servers; here that work would only compete for the CPU the bot is measured on). Every call
that posts to a chat is timestamped at its arrival, with the same system-wide monotonic clock
the bot process uses.

Run by the runner as `python -m benchmarks.world` (see `benchmarks.child`).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
from pathlib import Path
from typing import Any

from aiohttp import web

from benchmarks.child import serve
from benchmarks.common import monotonic
from bot.emulator import Emulator, EmulatorConfig
from tests.fakes.telegram_api import FakeTelegram, MediaRecord
from tests.fakes.telegram_records import Params

POSTING = ("sendmessage", "sendphoto", "sendvideo", "sendmediagroup", "editmessagetext")
_arrived: contextvars.ContextVar[float] = contextvars.ContextVar("arrived", default=0.0)


class StampingFakeTelegram(FakeTelegram):
    """The fake Bot API, timestamping calls that post to a chat and not keeping media."""

    def __init__(self) -> None:
        super().__init__()
        self.stamps: list[tuple[float, str, int]] = []  # (arrival, method, chat_id)
        self.stamping = False
        for name in POSTING:
            self._methods[name] = self._stamped(name, self._methods[name])

    def _stamped(self, name: str, method: Any) -> Any:
        async def run(params: Params) -> Any:
            if self.stamping:
                chat = params.int("chat_id")
                self.stamps.append((_arrived.get(), name, chat if chat is not None else 0))
            return await method(params)

        return run

    async def _handle_method(self, request: web.Request) -> web.Response:
        _arrived.set(monotonic())
        return await super()._handle_method(request)

    async def _record_url(self, kind: str, url: str, width: int | None, height: int | None,
                          duration: int | None) -> MediaRecord:
        content = "mp4" if kind == "video" else "jpeg"
        return MediaRecord(kind, "url", 0, content, self._new_file_id(), url=url, width=width,
                           height=height, duration=duration)

    def _keep(self, record: MediaRecord, data: bytes) -> MediaRecord:
        self.files[record.file_id] = (record, b"")
        return record


class World:
    def __init__(self) -> None:
        self.emulator: Emulator | None = None
        self.fake: StampingFakeTelegram | None = None

    async def start(self, *, keys: dict[str, int], emulator: dict[str, Any] | None = None,
                    telegram: bool = True) -> dict[str, Any]:
        logging.basicConfig(level=logging.WARNING)
        self.emulator = Emulator(EmulatorConfig(keys=dict(keys), **(emulator or {})))
        await self.emulator.start()
        answer: dict[str, Any] = {"api_url": self.emulator.base_url}
        if telegram:
            self.fake = StampingFakeTelegram()
            await self.fake.start()
            answer.update(telegram_url=self.fake.url, telegram_token=self.fake.token)
        return answer

    async def stop(self) -> None:
        if self.fake is not None:
            await self.fake.close()
        if self.emulator is not None:
            await self.emulator.stop()

    async def configure(self, **changes: Any) -> None:
        assert self.emulator is not None
        for name, value in changes.items():
            setattr(self.emulator.config, name, value)

    async def add_accounts(self, *, accounts: dict[str, list[Any]]) -> None:
        assert self.emulator is not None
        for username, items in accounts.items():
            self.emulator.add_account(username, items)

    async def add_chats(self, *, chat_ids: list[int]) -> None:
        assert self.fake is not None
        for chat_id in chat_ids:
            self.fake.add_chat(chat_id, title=f"Bench {chat_id}")

    async def post_commands(self, *, commands: list[tuple[int, int, str]]) -> dict[str, Any]:
        """Users write commands: (chat_id, user_id, text), injected as fast as possible."""
        assert self.fake is not None
        began = monotonic()
        for chat_id, user_id, text in commands:
            await self.fake.post(chat_id, text, user=user_id)
        return {"posted_at": began, "seconds": monotonic() - began}

    async def wait_results(self, *, count: int, timeout: float = 300.0) -> dict[str, Any]:
        """Wait until the emulator has produced `count` webhook-mode results."""
        assert self.emulator is not None
        emulator = self.emulator

        def produced() -> bool:
            done = [r for r in emulator.requests if r.mode == "webhook" and r.result]
            return len(done) >= count

        await emulator.wait_until(produced, timeout)
        return {"requests": len(emulator.requests)}

    async def write_callbacks(self, *, path: str) -> dict[str, Any]:
        """The (webhook URL, body) of every produced webhook result, for the runner to POST."""
        assert self.emulator is not None
        pairs = [(r.webhook_url, r.result, r.username) for r in self.emulator.requests
                 if r.mode == "webhook" and r.result]
        await asyncio.to_thread(Path(path).write_text, json.dumps(pairs))
        return {"count": len(pairs)}

    async def wait_callbacks(self, *, count: int, timeout: float = 300.0) -> dict[str, Any]:
        assert self.emulator is not None
        finished = await self.emulator.wait_for_callbacks(count, timeout)
        statuses: dict[str, int] = {}
        for delivery in finished:
            last = delivery.attempts[-1].status if delivery.attempts else None
            statuses[str(last)] = statuses.get(str(last), 0) + 1
        return {"finished": len(finished), "last_status": statuses}

    async def stamp_begin(self) -> None:
        assert self.fake is not None
        self.fake.stamps.clear()
        self.fake.stamping = True

    async def first_calls(self, *, chat_ids: list[int], timeout: float = 120.0) -> dict[str, Any]:
        """The first posting call to each chat since `stamp_begin`: {chat_id: [time, method]}."""
        fake = self.fake
        assert fake is not None
        wanted = set(chat_ids)

        def all_seen() -> bool:
            return wanted <= {chat for _, _, chat in fake.stamps}

        await fake.wait_for(all_seen, timeout)  # re-checked on every call the fake answers
        first: dict[str, list[Any]] = {}
        for at, method, chat in fake.stamps:
            if chat in wanted and str(chat) not in first:
                first[str(chat)] = [at, method]
        return first

    async def summary(self) -> dict[str, Any]:
        assert self.fake is not None
        counts: dict[str, int] = {}
        for call in self.fake.calls:
            counts[call.method] = counts.get(call.method, 0) + 1
        return {"calls": counts, "messages": len(self.fake.sent)}

    async def media_url(self, *, name: str, size: int) -> str:
        assert self.emulator is not None
        return self.emulator.media_url(name, size=size)


async def main() -> None:
    world = World()
    handlers = {
        name: getattr(world, name)
        for name in ("start", "configure", "add_accounts", "add_chats", "post_commands",
                     "wait_results", "write_callbacks", "wait_callbacks", "stamp_begin",
                     "first_calls", "summary", "media_url")
    }
    await serve(handlers, on_stop=world.stop)


if __name__ == "__main__":
    asyncio.run(main())
