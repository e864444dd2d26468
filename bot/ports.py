"""The interfaces the core defines and the edges implement.

An adapter (Telegram, Discord, console) implements `ChatAdapter`: the core tells it what to show,
addressed by an `Origin`; the adapter only translates. Delivery progress flows back through a
`DeliveryTracker`, so that a crash or a retry never posts an item twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

import msgspec

from bot.models import Origin, Profile, StoryItem


class DeliveryTracker(Protocol):
    """Records delivery progress durably; an adapter calls it around every message it sends."""

    async def sending(self, items: Sequence[StoryItem]) -> None:
        """Call just before sending a message carrying `items`."""

    async def sent(self, items: Sequence[StoryItem]) -> None:
        """Call as soon as the platform confirmed the message carrying `items`."""

    async def unsent(self, items: Sequence[StoryItem]) -> None:
        """Call when the platform answered with an error: the message was definitely not
        posted, so `items` may be sent again. (After a timeout or a dropped connection the
        outcome is unknown: leave them `sending`, and they are not resent.)"""


class StoryDelivery(msgspec.Struct, frozen=True):
    """What an adapter must post: the items still to send, oldest first.

    `items` holds only what was not yet sent (a resumed delivery starts where it stopped);
    `total` is the size of the whole set and `first_index` the 0-based position of `items[0]`
    in it, for captions like "3/23". `cached_at` is set when the result is a shared one
    fetched earlier (captions may say "from N minutes ago").
    """

    request_id: int
    profile: Profile
    items: tuple[StoryItem, ...]
    total: int
    tracker: DeliveryTracker
    first_index: int = 0
    cached_at: datetime | None = None


class ChatAdapter(Protocol):
    """What the core needs from a chat platform. Every method may raise; the core logs it."""

    platform: str

    async def post_status(self, origin: Origin, text: str) -> str | None:
        """Show a status ("fetching…") in reply to the command; return a reference to edit it
        later (JSON-serialisable string), or None if it cannot be edited."""

    async def edit_status(self, origin: Origin, status_ref: str | None, text: str) -> None:
        """Replace the status with `text` (post it anew when `status_ref` is None or gone)."""

    async def send_text(self, origin: Origin, text: str) -> None:
        """Post a plain message to the origin's chat (same thread/topic)."""

    async def send_stories(self, origin: Origin, delivery: StoryDelivery) -> None:
        """Post the stories in order, calling the tracker around each message. Raise if the
        platform failed in a way worth retrying later; items already `sent` are not resent."""
