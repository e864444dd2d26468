"""The slash commands, and how each one becomes a call on the core.

    /stories username [fresh]      everyone (fresh: admins) — deferred at once, answered later
    /apikey set                    admins — the key is typed into a modal, never shown in chat
    /apikey remove                 admins
    /usage                         admins
    /limits [daily] [monthly] [remove]   admins — credit caps (none given: show them)
    /help                          everyone

Admin commands are hidden from members without Manage Server (`default_member_permissions`),
and checked again when run, since a server can override who sees them: Manage Server (or
Administrator) in the member's resolved permissions, the user in a DM with the bot, or a bot
owner (BOT_OWNER_IDS). Answers about keys, caps and usage are ephemeral. Texts come from the
core; nothing here shows a traceback to anyone.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import discord
from discord import app_commands

from adapters.discord.routing import PendingResponses, ReplyRoute, origin_of
from adapters.discord.sending import NO_MENTIONS, clean
from bot import messages
from bot.errors import NotAllowed, StoriesBotError
from bot.models import Origin
from bot.service import StoriesService

log = logging.getLogger(__name__)

ADMIN_PERMISSIONS = discord.Permissions(manage_guild=True)
CONTEXTS = app_commands.AppCommandContext(guild=True, dm_channel=True, private_channel=False)
INSTALLS = app_commands.AppInstallationType(guild=True, user=False)
MODAL_TIMEOUT = 600.0
_GENERIC_ERROR = StoriesBotError().user_message


class ApiKeyModal(discord.ui.Modal):
    """The form that takes an API key: typed here, it never appears in the channel."""

    def __init__(self, on_key: Callable[[discord.Interaction, str], Awaitable[None]], *,
                 title: str) -> None:
        super().__init__(title=title, timeout=MODAL_TIMEOUT)
        self._on_key = on_key
        self.key: discord.ui.TextInput[ApiKeyModal] = discord.ui.TextInput(
            custom_id="api_key", placeholder="sk_live_…", min_length=8, max_length=512)
        self.add_item(discord.ui.Label(text="API key", component=self.key,
                                       description="From your eternalsocial.dev dashboard"))

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await self._on_key(interaction, self.key.value.strip())

    async def on_error(self, interaction: discord.Interaction, error: Exception) -> None:
        await report_error(interaction, error)


async def report_error(interaction: discord.Interaction, error: BaseException) -> None:
    """Log an unexpected failure and tell the user a plain sentence (privately)."""
    name = interaction.command.qualified_name if interaction.command else interaction.type.name
    log.error("Discord command %s failed", name, exc_info=error)
    try:
        if interaction.response.is_done():
            await interaction.followup.send(_GENERIC_ERROR, ephemeral=True)
        else:
            await interaction.response.send_message(_GENERIC_ERROR, ephemeral=True)
    except discord.HTTPException:
        log.warning("could not tell the user about the failure of %s", name)


class CommandHandlers:
    """What each command does. `pending` learns of every deferred /stories response, so the
    first text for it replaces the "thinking…" placeholder."""

    def __init__(self, service: StoriesService, pending: PendingResponses) -> None:
        self._service = service
        self._pending = pending

    def _may_admin(self, origin: Origin) -> bool:
        return origin.is_admin or self._service.is_owner(origin)

    async def _refuse(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(NotAllowed().user_message, ephemeral=True)

    async def _answer_privately(self, interaction: discord.Interaction,
                                work: Callable[[], Awaitable[str]]) -> None:
        """Acknowledge at once (ephemeral), then show what `work` says, or its error sentence."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            text = await work()
        except StoriesBotError as exc:
            text = exc.user_message
        except Exception:
            log.exception("Discord command failed in the core")
            text = _GENERIC_ERROR
        await interaction.edit_original_response(content=clean(text),
                                                 allowed_mentions=NO_MENTIONS)

    async def stories(self, interaction: discord.Interaction, username: str,
                      fresh: bool = False) -> None:
        route = ReplyRoute.from_interaction(interaction)
        try:
            await interaction.response.defer(thinking=True)
            self._pending.add(interaction.token)
        except discord.HTTPException as exc:
            # Past Discord's 3 seconds: the token is useless, but the request can still be
            # served (and answered in the channel).
            log.warning("/stories could not be acknowledged (%s %s); answering in the channel",
                        exc.status, exc.code)
            route = route.without_token()
        origin = origin_of(interaction, route)
        await self._service.request_stories(origin, username, force=fresh)

    async def apikey_set(self, interaction: discord.Interaction) -> None:
        origin = origin_of(interaction)
        if not self._may_admin(origin):
            await self._refuse(interaction)
            return
        where = "this server" if interaction.guild_id else "this chat"
        await interaction.response.send_modal(
            ApiKeyModal(self._key_submitted, title=f"API key for {where}"))

    async def _key_submitted(self, interaction: discord.Interaction, key: str) -> None:
        # Permissions come from the submit itself: checked again, by the core this time.
        origin = origin_of(interaction)
        await self._answer_privately(interaction, lambda: self._service.set_key(origin, key))

    async def apikey_remove(self, interaction: discord.Interaction) -> None:
        await self._admin_answer(interaction, self._service.remove_key)

    async def usage(self, interaction: discord.Interaction) -> None:
        await self._admin_answer(interaction, self._service.usage_text)

    async def _admin_answer(self, interaction: discord.Interaction,
                            action: Callable[[Origin], Awaitable[str]]) -> None:
        """Refuse a non-admin, else answer privately with what `action` says."""
        origin = origin_of(interaction)
        if not self._may_admin(origin):
            await self._refuse(interaction)
            return
        await self._answer_privately(interaction, lambda: action(origin))

    async def limits(self, interaction: discord.Interaction, daily: int | None,
                     monthly: int | None, remove: str | None) -> None:
        origin = origin_of(interaction)
        if not self._may_admin(origin):
            await self._refuse(interaction)
            return
        changes: dict[str, Any] = {}  # what is not named keeps its value in the core
        if daily is not None:
            changes["daily"] = daily
        if monthly is not None:
            changes["monthly"] = monthly
        if remove in ("daily", "both"):
            changes["daily"] = None
        if remove in ("monthly", "both"):
            changes["monthly"] = None
        if not changes:  # no option given: show the caps, change nothing
            await self._answer_privately(interaction,
                                         lambda: self._service.limits_text(origin))
            return
        await self._answer_privately(interaction,
                                     lambda: self._service.set_limits(origin, **changes))

    async def help(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(clean(messages.help_text("discord")),
                                                ephemeral=True)


def build_tree(client: discord.Client, handlers: CommandHandlers) -> app_commands.CommandTree:
    """The command tree of the bot, every command bound to `handlers`."""
    tree: app_commands.CommandTree = app_commands.CommandTree(
        client, allowed_contexts=CONTEXTS, allowed_installs=INSTALLS)

    async def on_error(interaction: discord.Interaction,
                       error: app_commands.AppCommandError) -> None:
        await report_error(interaction, getattr(error, "original", error))

    tree.on_error = on_error  # type: ignore[method-assign]

    @tree.command(name="stories", description="Post an Instagram account's current stories here")
    @app_commands.describe(username="Instagram username, @name or profile link",
                           fresh="Fetch again even if fetched a moment ago (admins)")
    async def stories(interaction: discord.Interaction,
                      username: app_commands.Range[str, 1, 200], fresh: bool = False) -> None:
        await handlers.stories(interaction, username, fresh)

    apikey = app_commands.Group(name="apikey", description="This chat's eternalsocial API key",
                                default_permissions=ADMIN_PERMISSIONS)

    @apikey.command(name="set", description="Set the API key (typed into a private form)")
    async def apikey_set(interaction: discord.Interaction) -> None:
        await handlers.apikey_set(interaction)

    @apikey.command(name="remove", description="Remove the API key")
    async def apikey_remove(interaction: discord.Interaction) -> None:
        await handlers.apikey_remove(interaction)

    tree.add_command(apikey)

    @tree.command(name="usage", description="Requests and credits of this chat (admins)")
    @app_commands.default_permissions(manage_guild=True)
    async def usage(interaction: discord.Interaction) -> None:
        await handlers.usage(interaction)

    @tree.command(name="limits", description="Cap the credits spent per day / month (admins)")
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.describe(daily="Credits per day at most", monthly="Credits per month at most",
                           remove="Remove a cap")
    async def limits(interaction: discord.Interaction,
                     daily: app_commands.Range[int, 0, 1_000_000] | None = None,
                     monthly: app_commands.Range[int, 0, 10_000_000] | None = None,
                     remove: Literal["daily", "monthly", "both"] | None = None) -> None:
        await handlers.limits(interaction, daily, monthly, remove)

    @tree.command(name="help", description="What this bot does and its commands")
    async def help_(interaction: discord.Interaction) -> None:
        await handlers.help(interaction)

    return tree
