"""Where an answer to a Discord command goes, kept in `Origin.reply` so a restart can still answer.

A slash command is answered through its interaction token (the deferred response, then
follow-ups) for the token's 15 minutes; after that, or when the token is gone, the bot posts in
the channel with its own token. `ReplyRoute` is that routing data, JSON both ways; this module
also turns a `discord.Interaction` into the core's `Origin` (a server is one chat, a DM another).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import discord

from bot.models import ChatRef, Origin

PLATFORM = "discord"
DEFAULT_SIZE_LIMIT = 10 * 1024 * 1024  # bots' upload limit per file when Discord does not say
TOKEN_LIFETIME = 15 * 60.0
TOKEN_MARGIN = 60.0  # stop using a token a minute early: a batch of uploads takes a while


@dataclass(frozen=True, slots=True)
class ReplyRoute:
    """The JSON-serialisable routing data of one command."""

    channel_id: int | None
    application_id: int | None = None
    token: str | None = None
    created_at: float | None = None  # Unix time the interaction was created
    size_limit: int = DEFAULT_SIZE_LIMIT

    @classmethod
    def from_interaction(cls, interaction: discord.Interaction) -> ReplyRoute:
        return cls(
            channel_id=interaction.channel_id,
            application_id=interaction.application_id,
            token=interaction.token,
            created_at=interaction.created_at.timestamp(),
            size_limit=interaction.filesize_limit or DEFAULT_SIZE_LIMIT,
        )

    @classmethod
    def from_reply(cls, reply: dict[str, Any]) -> ReplyRoute:
        def as_int(value: Any) -> int | None:
            return int(value) if value not in (None, "") else None

        return cls(
            channel_id=as_int(reply.get("channel_id")),
            application_id=as_int(reply.get("application_id")),
            token=reply.get("interaction_token") or None,
            created_at=float(reply["created_at"]) if reply.get("created_at") else None,
            size_limit=int(reply.get("size_limit") or DEFAULT_SIZE_LIMIT),
        )

    def to_reply(self) -> dict[str, Any]:
        # Snowflakes as strings: they exceed 2**53 and must survive any JSON reader.
        return {
            "channel_id": str(self.channel_id) if self.channel_id else None,
            "application_id": str(self.application_id) if self.application_id else None,
            "interaction_token": self.token,
            "created_at": self.created_at,
            "size_limit": self.size_limit,
        }

    def token_usable(self, now: float) -> bool:
        """True while the interaction token can still be used (with a safety margin)."""
        if not self.token or not self.application_id or self.created_at is None:
            return False
        return now - self.created_at < TOKEN_LIFETIME - TOKEN_MARGIN

    def without_token(self) -> ReplyRoute:
        return ReplyRoute(self.channel_id, size_limit=self.size_limit)


def chat_of(interaction: discord.Interaction) -> ChatRef:
    """A server is one chat (one key for all its channels); a DM is the user's own chat."""
    if interaction.guild_id is not None:
        return ChatRef(PLATFORM, str(interaction.guild_id))
    return ChatRef(PLATFORM, f"dm:{interaction.user.id}")


def is_chat_admin(interaction: discord.Interaction) -> bool:
    """Manage Server (or Administrator) in a server, from the permissions Discord resolved for
    this member in this channel; in a DM with the bot, the user owns the chat."""
    if interaction.guild_id is None:
        return isinstance(interaction.channel, discord.DMChannel) or interaction.channel is None
    permissions = interaction.permissions
    return permissions.administrator or permissions.manage_guild


def origin_of(interaction: discord.Interaction, route: ReplyRoute | None = None) -> Origin:
    user = interaction.user
    return Origin(
        chat=chat_of(interaction),
        user_id=str(user.id),
        user_name=user.name,
        is_admin=is_chat_admin(interaction),
        reply=(route or ReplyRoute.from_interaction(interaction)).to_reply(),
        command_id=str(interaction.id),
    )


class PendingResponses:
    """Deferred responses still showing "thinking…": the first text for such an interaction
    replaces the placeholder instead of adding a message below it.

    Kept in memory only. After a restart nothing is known to be pending, and a follow-up is
    posted instead — which Discord uses to fill a placeholder anyway.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._tokens: dict[str, float] = {}

    def add(self, token: str) -> None:
        now = self._clock()
        self._tokens = {t: at for t, at in self._tokens.items() if now - at < TOKEN_LIFETIME}
        self._tokens[token] = now

    def take(self, token: str | None) -> bool:
        """True (once) if `token`'s response is still a placeholder."""
        return token is not None and self._tokens.pop(token, None) is not None
