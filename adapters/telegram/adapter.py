"""`TelegramAdapter`: a python-telegram-bot `Application` run inside the bot's own event loop.

The composition root builds it with `(settings, service, media)` and calls `start()`/`stop()`.
It polls Telegram for updates (long polling: no public HTTPS endpoint needed) and implements the
core's `ChatAdapter`: status messages, texts, and stories (see `sending.py`). All Bot API calls
go through python-telegram-bot's `AIORateLimiter`, which spaces messages per chat and pauses
everything while Telegram's flood control says so.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from telegram import Update
from telegram.error import BadRequest, TelegramError
from telegram.ext import AIORateLimiter, Application, ContextTypes

from adapters.telegram import redaction
from adapters.telegram.client import TelegramClient
from adapters.telegram.commands import Commands, register_menus
from adapters.telegram.ordering import PerChatUpdateProcessor
from adapters.telegram.routing import PLATFORM, Target
from adapters.telegram.sending import Limits, StorySender, call_patiently
from adapters.telegram.transport import AiohttpRequest
from bot.media import MediaFetcher
from bot.models import Origin
from bot.ports import StoryDelivery
from bot.service import StoriesService
from bot.settings import Settings

log = logging.getLogger(__name__)

POLL_TIMEOUT = timedelta(seconds=30)
STOP_TIMEOUT = 10.0  # seconds to let commands in progress finish on stop
TEXT_MAX = 4096


class TelegramAdapter:
    platform = PLATFORM

    def __init__(self, settings: Settings, service: StoriesService, media: MediaFetcher) -> None:
        if settings.telegram_bot_token is None:
            raise ValueError("TELEGRAM_BOT_TOKEN is not set")
        token = settings.telegram_bot_token.get_secret_value()
        redaction.protect(token)
        root = str(settings.telegram_api_url).rstrip("/")
        # The adapter owns its HTTP clients, so that a start that fails half-way (a wrong
        # token) still closes them.
        self._requests = (
            # Deliveries are not bounded, and Telegram answers an album only once it has
            # fetched its media: with 32 connections, 100 chats' first albums queued for one
            # (measured: first album p50 570 -> 300 ms with 128, 100 results at once).
            AiohttpRequest(connection_pool_size=128, connect_timeout=10, pool_timeout=10,
                           read_timeout=60,  # Telegram fetches up to 10 URLs for an album
                           write_timeout=30, media_write_timeout=300),
            # Long polling: one getUpdates at a time (python-telegram-bot adds the poll's
            # own timeout to the read timeout); a second connection for the closing
            # getUpdates sent on stop while the cancelled poll's connection is closed.
            AiohttpRequest(connection_pool_size=2, connect_timeout=10, pool_timeout=1,
                           read_timeout=10),
        )
        bot = TelegramClient(
            token, base_url=f"{root}/bot", base_file_url=f"{root}/file/bot",
            local_mode=settings.telegram_local_bot_api,
            request=self._requests[0], get_updates_request=self._requests[1],
            # Retries 429s itself (twice), holding back other calls meanwhile.
            rate_limiter=AIORateLimiter(max_retries=2))
        builder = Application.builder().bot(bot).concurrent_updates(
            PerChatUpdateProcessor(turns=service.turns))
        self._app = builder.build()
        self._commands = Commands(settings, service)
        self._commands.install(self._app)
        self._app.add_error_handler(self._on_error)
        self._bot = bot
        self._sender = StorySender(bot, media,
                                   Limits.for_server(local=settings.telegram_local_bot_api))
        self.running = False

    # lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (getMe), publish the command menus, and start long polling."""
        try:
            await self._app.initialize()
            try:
                await register_menus(self._app.bot)
            except TelegramError as exc:
                log.warning("could not register the command menus: %s", exc)
            await self._app.start()
            assert self._app.updater is not None
            await self._app.updater.start_polling(
                timeout=POLL_TIMEOUT, allowed_updates=[Update.MESSAGE],
                error_callback=self._on_poll_error)
        except BaseException:
            await self._shutdown()
            raise
        self.running = True
        log.info("Telegram: polling as @%s", self._app.bot.username)

    async def stop(self) -> None:
        """Stop polling, let commands in progress finish (briefly), close the connections."""
        self.running = False
        await self._shutdown()

    async def _shutdown(self) -> None:
        updater = self._app.updater
        if updater is not None and updater.running:
            try:
                await updater.stop()
            except Exception:
                log.exception("Telegram: the updater did not stop cleanly")
        if self._app.running:
            try:
                await asyncio.wait_for(self._app.stop(), STOP_TIMEOUT)
            except TimeoutError:
                log.warning("Telegram: commands still running after %.0f s were cancelled",
                            STOP_TIMEOUT)
        try:
            await self._app.shutdown()
        except Exception:
            log.exception("Telegram: shutdown failed")
        for request in self._requests:  # no-ops when the shutdown above closed them
            await request.shutdown()

    # ChatAdapter ------------------------------------------------------------------------

    async def post_status(self, origin: Origin, text: str) -> str | None:
        message_id = await call_patiently(lambda: self._bot.send_text(
            text[:TEXT_MAX], **Target.of(origin).kwargs(reply=True)))
        return str(message_id)

    async def edit_status(self, origin: Origin, status_ref: str | None, text: str) -> None:
        target = Target.of(origin)
        if status_ref is not None and status_ref.isdigit():
            try:
                await call_patiently(lambda: self._bot.edit_text(
                    text[:TEXT_MAX], chat_id=target.chat_id, message_id=int(status_ref)))
                return
            except BadRequest as exc:
                if "not modified" in exc.message.lower():
                    return
                log.info("status message could not be edited (%s); posting it anew", exc)
        await self.send_text(origin, text)

    async def send_text(self, origin: Origin, text: str) -> None:
        await call_patiently(lambda: self._bot.send_text(
            text[:TEXT_MAX], **Target.of(origin).kwargs(reply=True)))

    async def send_stories(self, origin: Origin, delivery: StoryDelivery) -> None:
        await self._sender.send(Target.of(origin), delivery)

    # errors -----------------------------------------------------------------------------

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("Telegram: unhandled error", exc_info=context.error)

    @staticmethod
    def _on_poll_error(exc: TelegramError) -> None:
        log.warning("Telegram: polling failed (%s: %s); retrying", type(exc).__name__, exc)
