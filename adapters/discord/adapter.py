"""The Discord adapter: a discord.py client in the process's own event loop, speaking for the core.

Start-up logs in over REST (a wrong token fails here, loudly), syncs the slash commands (to
`DISCORD_DEV_GUILD_ID` only, for instant updates while developing, or globally), then runs the
gateway connection as a task; `stop()` closes it promptly. The `ChatAdapter` methods route each
answer through the command's interaction while its token lives and through the channel after
(`sending.Outbox`); rate limits and retries of the Discord API are left to discord.py.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import discord

from adapters.discord.commands import CommandHandlers, build_tree
from adapters.discord.endpoints import apply_endpoints
from adapters.discord.routing import PLATFORM, PendingResponses, ReplyRoute
from adapters.discord.sending import ORIGINAL, Outbox, StoryPoster
from bot.media import MediaFetcher
from bot.models import Origin
from bot.ports import StoryDelivery
from bot.service import StoriesService
from bot.settings import Settings

log = logging.getLogger(__name__)

# The bot never joins voice: do not warn at every start that voice libraries are missing.
discord.VoiceClient.warn_nacl = False
discord.VoiceClient.warn_dave = False


class DiscordAdapter:
    """`bot.ports.ChatAdapter` for Discord. Built by the composition root as
    `DiscordAdapter(settings, service, media)`."""

    platform = PLATFORM
    # How long discord.py waits for the servers' GUILD_CREATE before "ready". The bot uses
    # no guild cache, so a short wait costs nothing; tests shorten it further.
    guild_ready_timeout: ClassVar[float] = 2.0
    stop_timeout: ClassVar[float] = 5.0

    def __init__(self, settings: Settings, service: StoriesService, media: MediaFetcher, *,
                 clock: Callable[[], float] = time.time) -> None:
        if settings.discord_bot_token is None:
            raise ValueError("DISCORD_BOT_TOKEN is not set")
        self._settings = settings
        self._service = service
        self._media = media
        self.clock = clock
        self._pending = PendingResponses(clock)
        self.client = discord.Client(
            intents=discord.Intents(guilds=True),
            allowed_mentions=discord.AllowedMentions.none(),
            chunk_guilds_at_startup=False,
            member_cache_flags=discord.MemberCacheFlags.none(),
            max_messages=None,
            guild_ready_timeout=self.guild_ready_timeout,
        )
        self.tree = build_tree(self.client, CommandHandlers(service, self._pending))
        self._gateway: asyncio.Task[None] | None = None
        self._restore_endpoints: Callable[[], None] | None = None

    # lifecycle ------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return (self._gateway is not None and not self._gateway.done()
                and not self.client.is_closed())

    async def start(self) -> None:
        settings = self._settings
        assert settings.discord_bot_token is not None
        api_url = str(settings.discord_api_url) if settings.discord_api_url else None
        self._restore_endpoints = apply_endpoints(api_url, settings.discord_gateway_url)
        try:
            await self.client.login(settings.discord_bot_token.get_secret_value())
            await self._sync_commands()
        except BaseException:
            await self._close()
            raise
        self._gateway = asyncio.create_task(self._run_gateway(), name="discord-gateway")

    async def _sync_commands(self) -> None:
        guild_id = self._settings.discord_dev_guild_id
        try:
            if guild_id:
                guild = discord.Object(id=guild_id)
                self.tree.copy_global_to(guild=guild)
                synced = await self.tree.sync(guild=guild)
                log.info("synced %d Discord commands to guild %s", len(synced), guild_id)
            else:
                synced = await self.tree.sync()
                log.info("synced %d Discord commands globally", len(synced))
        except discord.HTTPException as exc:
            # Commands registered by an earlier start keep working; do not refuse to run.
            log.error("could not sync the Discord commands: %s %s", exc.status, exc.text)

    async def _run_gateway(self) -> None:
        try:
            await self.client.connect(reconnect=True)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the Discord gateway connection ended")

    async def wait_until_ready(self) -> None:
        await self.client.wait_until_ready()

    async def stop(self) -> None:
        await self._close()
        if self._gateway is not None:
            try:
                await asyncio.wait_for(self._gateway, self.stop_timeout)
            except TimeoutError:
                log.warning("the Discord gateway did not close in time; cancelled")
            self._gateway = None

    async def _close(self) -> None:
        try:
            await self.client.close()
        finally:
            if self._restore_endpoints is not None:
                self._restore_endpoints()
                self._restore_endpoints = None

    # ChatAdapter ----------------------------------------------------------------------------

    def _outbox(self, origin: Origin) -> Outbox:
        return Outbox(self.client, ReplyRoute.from_reply(origin.reply), now=self.clock())

    async def post_status(self, origin: Origin, text: str) -> str | None:
        outbox = self._outbox(origin)
        if self._pending.take(outbox.route.token) and await outbox.edit_original(text):
            return ORIGINAL
        return await outbox.send(text)

    async def edit_status(self, origin: Origin, status_ref: str | None, text: str) -> None:
        outbox = self._outbox(origin)
        if not await outbox.edit(status_ref, text):
            await outbox.send(text)

    async def send_text(self, origin: Origin, text: str) -> None:
        outbox = self._outbox(origin)
        if self._pending.take(outbox.route.token) and await outbox.edit_original(text):
            return
        await outbox.send(text)

    async def send_stories(self, origin: Origin, delivery: StoryDelivery) -> None:
        outbox = self._outbox(origin)
        with tempfile.TemporaryDirectory(prefix="stories-bot-discord-") as workdir:
            await StoryPoster(outbox, self._media, delivery, workdir=Path(workdir)).run()
