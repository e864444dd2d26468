"""The chat commands, translated into calls on the core, and the command menus.

Every handler answers: a result, a refusal, or the `.user_message` of a `StoriesBotError`;
never silence, never a traceback. Answers reply to the command in its forum topic.

/setkey deletes the message carrying the key before anything else — whoever sent it, since a
key posted by a non-admin is just as leaked — and says so when the bot lacks the right.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from telegram import (
    Bot,
    BotCommand,
    BotCommandScopeAllChatAdministrators,
    BotCommandScopeAllPrivateChats,
    BotCommandScopeDefault,
    Message,
    Update,
)
from telegram.error import BadRequest, Forbidden, TelegramError
from telegram.ext import Application, CommandHandler, ContextTypes, MessageHandler, filters

from adapters.telegram import admin
from adapters.telegram.client import TelegramClient
from adapters.telegram.routing import Target, chat_ref, origin_from
from adapters.telegram.sending import call_patiently
from bot import messages
from bot.errors import NotAllowed, StoriesBotError
from bot.models import Origin
from bot.service import StoriesService
from bot.settings import Settings
from bot.spending import parse_limits

log = logging.getLogger(__name__)

FORCE_WORDS = frozenset({"fresh", "--fresh", "refresh"})

PUBLIC_COMMANDS = (
    BotCommand("stories", "Post the current stories of an Instagram account"),
    BotCommand("usage", "This chat's requests and credits"),
    BotCommand("help", "What this bot does"),
)
ADMIN_COMMANDS = (
    BotCommand("setkey", "Set this chat's API key (the message is deleted)"),
    BotCommand("removekey", "Remove this chat's API key"),
    BotCommand("limits", "Cap credits per day / month: daily N monthly N, or off"),
)

Handler = Callable[[Message], Awaitable[None]]


def argument_of(message: Message) -> str:
    """Everything after the command word, as typed (URLs and spaces intact)."""
    parts = (message.text or "").split(maxsplit=1)
    return parts[1].strip() if len(parts) > 1 else ""


async def register_menus(bot: Bot) -> None:
    """Members see the public commands; admins (and private chats, whose user is the admin)
    see the admin commands too."""
    everything = [*PUBLIC_COMMANDS, *ADMIN_COMMANDS]
    await bot.set_my_commands(list(PUBLIC_COMMANDS), scope=BotCommandScopeDefault())
    await bot.set_my_commands(everything, scope=BotCommandScopeAllPrivateChats())
    await bot.set_my_commands(everything, scope=BotCommandScopeAllChatAdministrators())


class Commands:
    def __init__(self, settings: Settings, service: StoriesService) -> None:
        self._settings = settings
        self._service = service

    def install(self, app: Application) -> None:  # type: ignore[type-arg]
        table: dict[str, Handler] = {
            "stories": self.stories, "setkey": self.setkey, "removekey": self.removekey,
            "usage": self.usage, "limits": self.limits, "help": self.help,
            "start": self.help,
        }
        for name, handler in table.items():
            # New messages only: an edited "/stories a" → "/stories b" must not fetch again.
            app.add_handler(CommandHandler(name, self._wrap(handler),
                                           filters=filters.UpdateType.MESSAGE))
        # A group upgraded to a supergroup changes id: its key and history move with it.
        app.add_handler(MessageHandler(filters.StatusUpdate.MIGRATE, self._migrated))

    async def _migrated(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None or not message.migrate_to_chat_id:
            return  # the new supergroup's own "migrated from" message: nothing to do
        await self._service.migrate_chat(chat_ref(message.chat_id),
                                         chat_ref(message.migrate_to_chat_id))

    def _wrap(self, handler: Handler) -> Callable[[Update, ContextTypes.DEFAULT_TYPE],
                                                  Awaitable[None]]:
        async def run(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
            message = update.effective_message
            if message is None:
                return
            try:
                await handler(message)
            except StoriesBotError as exc:
                await self._answer(message, exc.user_message)
            except (Forbidden, BadRequest) as exc:
                log.warning("could not answer in chat %s: %s", message.chat_id, exc)
            except Exception:
                log.exception("command failed in chat %s", message.chat_id)
                await self._answer(message, StoriesBotError().user_message)

        return run

    async def _origin(self, message: Message, *, check_admin: bool = True) -> Origin:
        is_admin = check_admin and await admin.is_admin(
            message.get_bot(), message, self._settings.bot_owner_ids)
        return origin_from(message, is_admin=is_admin)

    def _may_admin(self, origin: Origin) -> bool:
        return origin.is_admin or self._service.is_owner(origin)

    async def _answer(self, message: Message, text: str) -> None:
        target = Target(message.chat_id,
                        message.message_thread_id if message.is_topic_message else None,
                        message.message_id)
        bot = message.get_bot()
        assert isinstance(bot, TelegramClient)
        try:
            await call_patiently(lambda: bot.send_text(text[:4096], **target.kwargs(reply=True)))
        except TelegramError as exc:
            log.warning("could not answer in chat %s: %s", message.chat_id, exc)

    # the commands -----------------------------------------------------------------------

    async def stories(self, message: Message) -> None:
        words = argument_of(message).split()
        force = len(words) > 1 and words[-1].lower() in FORCE_WORDS
        if force:
            words = words[:-1]
        argument = " ".join(words)
        # Asking Telegram who is an admin costs a call (getChatMember): only when it matters.
        known = admin.known_without_asking(message, self._settings.bot_owner_ids)
        origin = origin_from(message, is_admin=bool(known))
        if known is None and self._service.admin_matters(origin, argument, force=force):
            origin = await self._origin(message)
        await self._service.request_stories(origin, argument, force=force)

    async def setkey(self, message: Message) -> None:
        key = argument_of(message)
        deleted = await self._delete(message) if key else True
        origin = await self._origin(message)
        try:
            text = await self._service.set_key(origin, key)  # it checks the admin right
        except StoriesBotError as exc:
            text = exc.user_message
        if not deleted:
            text += "\n\n" + messages.key_message_not_deleted()
        await self._answer(message, text)

    async def removekey(self, message: Message) -> None:
        origin = await self._origin(message)
        await self._answer(message, await self._service.remove_key(origin))

    async def usage(self, message: Message) -> None:
        origin = await self._origin(message, check_admin=False)
        await self._answer(message, await self._service.usage_text(origin))

    async def limits(self, message: Message) -> None:
        origin = await self._origin(message)
        if not self._may_admin(origin):  # refuse before parsing: no usage lesson for non-admins
            raise NotAllowed(f"{origin.user_ref} may not set the caps of {origin.chat}")
        argument = argument_of(message)
        if not argument.strip():  # no argument: show the caps, change nothing
            await self._answer(message, await self._service.limits_text(origin))
            return
        changes = parse_limits(argument)
        await self._answer(message, await self._service.set_limits(origin, **changes))

    async def help(self, message: Message) -> None:
        await self._answer(message, messages.help_text("telegram"))

    async def _delete(self, message: Message) -> bool:
        try:
            await message.delete()
        except TelegramError as exc:
            log.warning("could not delete a /setkey message in chat %s: %s", message.chat_id,
                        exc)
            return False
        return True
