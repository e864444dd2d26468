"""The chat-settings use cases: API keys, spending caps, usage. Admins only, where it matters.

`StoriesService` builds on this; adapters call these methods through the service.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from bot import messages
from bot.errors import InvalidInput, NotAllowed
from bot.models import ChatRef, Origin
from bot.settings import Settings
from bot.store import Store, Usage

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


class _Keep:
    """Sentinel: leave a setting as it is."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP = _Keep()


class ChatAdmin:
    def __init__(self, settings: Settings, store: Store, clock: Clock) -> None:
        self._settings = settings
        self._store = store
        self._clock = clock

    def is_owner(self, origin: Origin) -> bool:
        return origin.user_ref in self._settings.bot_owner_ids

    def may_admin(self, origin: Origin) -> bool:
        return origin.is_admin or self.is_owner(origin)

    def _require_admin(self, origin: Origin) -> None:
        if not self.may_admin(origin):
            raise NotAllowed(f"{origin.user_ref} is not an admin of {origin.chat}")

    async def set_key(self, origin: Origin, key: str) -> str:
        self._require_admin(origin)
        key = (key or "").strip()
        if not key:
            raise InvalidInput("Send the key with the command: "
                               + messages.set_key_command(origin.chat.platform))
        if len(key) < 8 or len(key) > 512 or any(c.isspace() or not c.isprintable() for c in key):
            raise InvalidInput("That does not look like an API key (8–512 printable characters, "
                               "no spaces).")
        record = await self._store.set_key(origin.chat, key, set_by=origin.user_ref,
                                           now=self._clock())
        log.info("API key set for %s by %s", origin.chat, origin.user_ref)
        return f"API key saved for this chat: {record.key_hint}"

    async def remove_key(self, origin: Origin) -> str:
        self._require_admin(origin)
        if await self._store.remove_key(origin.chat):
            log.info("API key removed for %s by %s", origin.chat, origin.user_ref)
            return "API key removed. This chat can no longer fetch stories until a key is set."
        return "This chat has no API key."

    async def set_limits(self, origin: Origin, *, daily: int | _Keep | None = KEEP,
                         monthly: int | _Keep | None = KEEP) -> str:
        """Set the chat's credit caps; None removes one, KEEP (the default) leaves it."""
        self._require_admin(origin)
        for name, value in (("daily", daily), ("monthly", monthly)):
            if isinstance(value, int) and value < 0:
                raise InvalidInput(f"The {name} cap must be 0 or more.")
        current = await self._store.get_chat(origin.chat)
        if isinstance(daily, _Keep):
            daily = current.daily_cap if current else None
        if isinstance(monthly, _Keep):
            monthly = current.monthly_cap if current else None
        record = await self._store.set_caps(origin.chat, daily=daily, monthly=monthly,
                                            now=self._clock())
        log.info("caps of %s set by %s: daily %s, monthly %s", origin.chat, origin.user_ref,
                 daily, monthly)
        # On the ledger too (0 credits), so the history of a chat's figures explains itself.
        await self._store.add_ledger(origin.chat, None, "caps",
                                     note=f"daily={daily} monthly={monthly} by {origin.user_ref}",
                                     now=self._clock())
        return "Spending caps: " + _caps_text(record.daily_cap, record.monthly_cap)

    async def limits_text(self, origin: Origin) -> str:
        """The chat's caps and how much of them is used (read-only: anyone may look)."""
        usage = await self.usage(origin.chat)
        lines = ["Spending caps: " + _caps_text(usage.daily_cap, usage.monthly_cap)]
        if usage.daily_cap is not None:
            lines.append(f"Used today: {usage.today.credits} of {usage.daily_cap} credits.")
        if usage.monthly_cap is not None:
            lines.append(f"Used this month: {usage.month.credits} of {usage.monthly_cap} "
                         "credits.")
        return "\n".join(lines)

    async def migrate_chat(self, old: ChatRef, new: ChatRef) -> None:
        """A chat changed id (a Telegram group upgraded to a supergroup): keep its key, caps,
        history and ledger under the new id."""
        await self._store.migrate_chat(old, new, now=self._clock())
        log.info("chat %s is now %s", old, new)

    async def usage(self, chat: ChatRef) -> Usage:
        return await self._store.usage(chat, now=self._clock())

    async def usage_text(self, origin: Origin) -> str:
        usage = await self.usage(origin.chat)
        return format_usage(usage, default_key=self._settings.default_api_key is not None)

    def help_text(self, platform: str) -> str:
        return messages.help_text(platform)


def _caps_text(daily: int | None, monthly: int | None) -> str:
    day = f"{daily} credits per day" if daily is not None else "no daily cap"
    month = f"{monthly} credits per month" if monthly is not None else "no monthly cap"
    return f"{day}, {month}."


def format_usage(usage: Usage, *, default_key: bool = False) -> str:
    def line(name: str, period: Any, cap: int | None = None) -> str:
        text = f"{name}: {period.requests} requests, {period.credits} credits"
        if cap is not None:
            text += f" of {cap}"
        if period.shared:
            text += f" ({period.shared} served from shared results, {period.saved} credits saved)"
        return text

    key = usage.key_hint or ("the operator's default key" if default_key
                             else "none (an admin can set one)")
    return "\n".join([
        f"Usage of this chat (API key: {key})",
        line("Today", usage.today, usage.daily_cap),
        line("This month", usage.month, usage.monthly_cap),
        line("All time", usage.total),
        "Caps: " + _caps_text(usage.daily_cap, usage.monthly_cap),
    ])
