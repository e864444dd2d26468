"""Where an answer goes: Telegram messages to `Origin`s and back.

An `Origin` is persisted with the request, so everything needed to answer after a restart lives
in its JSON `reply` dict: the command's message id (to reply to it) and the forum topic
(`message_thread_id`) when the command was posted in one. Nothing else of Telegram's objects
leaves this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from telegram import Message, ReplyParameters

from bot.models import ChatRef, Origin

PLATFORM = "telegram"


def chat_ref(chat_id: int) -> ChatRef:
    return ChatRef(PLATFORM, str(chat_id))


def sender_of(message: Message) -> tuple[str, str | None]:
    """(user id, display name) of whoever sent `message`.

    A message sent on behalf of a chat (an anonymous admin, or a channel) has `sender_chat`;
    its `from` is a placeholder shared by every group (@GroupAnonymousBot), so the sending chat
    is the identity — per-user cooldowns then apply per chat, not to all anonymous admins at once.
    """
    if message.sender_chat is not None:
        return str(message.sender_chat.id), message.sender_chat.title
    user = message.from_user
    if user is None:
        return "unknown", None
    name = f"@{user.username}" if user.username else user.full_name
    return str(user.id), name


def origin_from(message: Message, *, is_admin: bool) -> Origin:
    user_id, user_name = sender_of(message)
    reply: dict[str, Any] = {"message_id": message.message_id}
    if message.is_topic_message and message.message_thread_id is not None:
        reply["thread_id"] = message.message_thread_id
    return Origin(chat=chat_ref(message.chat.id), user_id=user_id, user_name=user_name,
                  is_admin=is_admin, reply=reply, command_id=str(message.message_id))


@dataclass(frozen=True, slots=True)
class Target:
    """A chat, maybe a forum topic, maybe a message to reply to."""

    chat_id: int
    thread_id: int | None = None
    reply_to: int | None = None

    @classmethod
    def of(cls, origin: Origin) -> Target:
        if origin.chat.platform != PLATFORM:
            raise ValueError(f"not a Telegram chat: {origin.chat}")
        reply = origin.reply or {}
        thread_id = reply.get("thread_id")
        message_id = reply.get("message_id")
        return cls(int(origin.chat.chat_id),
                   int(thread_id) if thread_id is not None else None,
                   int(message_id) if message_id is not None else None)

    def kwargs(self, *, reply: bool = False) -> dict[str, Any]:
        """Keyword arguments for a `Bot.send_*` call. A reply tolerates a deleted command
        message (`allow_sending_without_reply`): /setkey messages are deleted on purpose."""
        values: dict[str, Any] = {"chat_id": self.chat_id}
        if self.thread_id is not None:
            values["message_thread_id"] = self.thread_id
        if reply and self.reply_to is not None:
            values["reply_parameters"] = ReplyParameters(
                message_id=self.reply_to, allow_sending_without_reply=True)
        return values
