"""Who may change a chat's API key or spending caps.

On Telegram: the chat's creator or an administrator (asked of Telegram with `getChatMember`,
never cached, so a demoted admin loses the right at once; for /stories only when the answer
matters, a fresh fetch or a cooldown to skip), an anonymous admin (a message sent
on behalf of the group itself), and the user of a private chat. Bot owners (`BOT_OWNER_IDS`)
are admins everywhere; the core checks that too, so a failed Telegram lookup never locks them
out.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from telegram import Bot, Message
from telegram.constants import ChatMemberStatus, ChatType
from telegram.error import TelegramError

log = logging.getLogger(__name__)

ADMIN_STATUSES = frozenset({ChatMemberStatus.OWNER, ChatMemberStatus.ADMINISTRATOR})


def known_without_asking(message: Message, owner_ids: Collection[str]) -> bool | None:
    """Whether the sender is an admin, when the message itself tells; None when only
    Telegram can (a member of a group)."""
    chat = message.chat
    if chat.type == ChatType.PRIVATE:
        return True
    if message.sender_chat is not None:
        # Sent on behalf of this very group: only its admins can do that. A channel's post
        # (another sender_chat) proves nothing about this chat.
        return message.sender_chat.id == chat.id
    user = message.from_user
    if user is None:
        return False
    if f"telegram:{user.id}" in owner_ids:
        return True
    return None


async def is_admin(bot: Bot, message: Message, owner_ids: Collection[str]) -> bool:
    known = known_without_asking(message, owner_ids)
    if known is not None:
        return known
    chat, user = message.chat, message.from_user
    assert user is not None  # known_without_asking answers for messages without a sender
    try:
        member = await bot.get_chat_member(chat.id, user.id)
    except TelegramError as exc:
        log.warning("getChatMember failed in chat %s: %s", chat.id, exc)
        return False
    return member.status in ADMIN_STATUSES
