"""Updates of one chat in order, different chats concurrently.

python-telegram-bot handles updates one at a time by default, so one slow chat (a stories API
that takes 30 s to accept a request) would hold up every other chat. Fully concurrent handling
would let `/setkey` and the `/stories` typed right after it race. This processor keeps a lock
per chat: order within a chat, parallelism across chats, at most 16 commands in progress
at once (each mostly waits on Telegram and the stories API; more at once only lengthen the
event loop's queue: the benchmark's largest stall was 109 ms with 64, 36-48 ms with 16, for
the same throughput). Each command's first step is paced by the core's `TurnBudget`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from telegram import Update
from telegram.ext import BaseUpdateProcessor

from bot.turns import COMMAND, TurnBudget

COMMAND_START = 0.0015  # seconds: the CPU of a command's first step, booked in `TurnBudget`


class PerChatUpdateProcessor(BaseUpdateProcessor):
    def __init__(self, max_concurrent_updates: int = 16, *,
                 turns: TurnBudget | None = None) -> None:
        super().__init__(max_concurrent_updates)
        self._turns = turns or TurnBudget()
        self._locks: dict[int, asyncio.Lock] = {}
        self._users: dict[int, int] = {}

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        chat = update.effective_chat if isinstance(update, Update) else None
        if chat is None:
            await coroutine
            return
        lock = self._locks.setdefault(chat.id, asyncio.Lock())
        self._users[chat.id] = self._users.get(chat.id, 0) + 1
        try:
            async with lock:
                # A command's first step (the store, the status message's request) is
                # ~1.5 ms: a batch of updates starts a few per turn of the loop.
                await self._turns.take(COMMAND_START, COMMAND)
                await coroutine
        finally:
            self._users[chat.id] -= 1
            if not self._users[chat.id]:  # forget idle chats: the dict stays small
                del self._users[chat.id]
                del self._locks[chat.id]

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to release."""
