"""The running adapters, by platform, and the core's ways to speak to a chat.

Every method here logs and swallows a platform failure: a chat that cannot be told something
must never break a request's state machine (the state is in the store; the telling is best
effort, and retried where it matters by the delivery loop).
"""

from __future__ import annotations

import logging

from bot.models import ChatRef, Origin
from bot.ports import ChatAdapter
from bot.store import RequestRecord

log = logging.getLogger(__name__)


class Outbox:
    def __init__(self) -> None:
        self._adapters: dict[str, ChatAdapter] = {}

    def register(self, adapter: ChatAdapter) -> None:
        self._adapters[adapter.platform] = adapter

    @property
    def adapters(self) -> dict[str, ChatAdapter]:
        return dict(self._adapters)

    def adapter_for(self, chat: ChatRef) -> ChatAdapter | None:
        return self._adapters.get(chat.platform)

    async def say(self, origin: Origin, text: str) -> None:
        adapter = self.adapter_for(origin.chat)
        if adapter is None:
            log.warning("no adapter for %s; message dropped", origin.chat.platform)
            return
        try:
            await adapter.send_text(origin, text)
        except Exception:
            log.exception("could not send a message to %s", origin.chat)

    async def post_status(self, origin: Origin, text: str) -> str | None:
        adapter = self.adapter_for(origin.chat)
        if adapter is None:
            return None
        try:
            return await adapter.post_status(origin, text)
        except Exception:
            log.exception("could not post a status in %s", origin.chat)
            return None

    async def edit_status(self, record: RequestRecord, text: str) -> None:
        adapter = self.adapter_for(record.origin.chat)
        if adapter is None:
            return
        try:
            await adapter.edit_status(record.origin, record.status_ref, text)
        except Exception:
            log.exception("could not update the status of request %d", record.id)
