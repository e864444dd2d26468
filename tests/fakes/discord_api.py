"""A fake Discord — REST under `/api/v10` and a gateway websocket — for driving discord.py in tests.

Why it exists: the Discord adapter must be tested with the real discord.py client (its HTTP
layer, rate-limit handling, gateway loop and app-command tree), and the only honest way is a
server that speaks the same protocol. It listens on 127.0.0.1 on a port from the OS:

    fake = FakeDiscord(guilds=[FakeGuild(...)])
    async with fake:
        settings: DISCORD_API_URL=fake.api_url, DISCORD_GATEWAY_URL=fake.gateway_url
        await fake.wait_ready()
        interaction = await fake.invoke("stories", {"username": "natgeo"}, guild_id=...)
        await fake.wait_until(lambda: len(fake.messages_for(interaction)) == 3)

It is as strict as the real service where a bot can get it wrong: 401 for a wrong bot token,
3 s to acknowledge an interaction, 400 when acknowledging twice, 404 Unknown Webhook for a
follow-up before the acknowledgement, 401 Invalid Webhook Token once a token has expired,
413 for a file over the interaction's `attachment_size_limit` (or a request over 25 MiB),
400 for more than 10 attachments or 2,000 characters, 429s on demand (with the `Via` header
discord.py needs to believe them). Commands are validated when synced, and a member without a
command's `default_member_permissions` cannot invoke it unless the test says the server
overrode it. Everything sent is recorded; `wait_until` wakes on every change (no sleeps).

JSON is answered with a Content-Type of exactly `application/json`: discord.py parses nothing
else. The gateway honours `compress=zlib-stream` like the real one.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import re
import secrets
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

API_PREFIX = "/api/v10"
DISCORD_EPOCH_MS = 1_420_070_400_000
MiB = 1024 * 1024

# Permission bits and flags the fake needs to know about.
ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5
EPHEMERAL = 1 << 6

# Interaction types (incoming) and callback types (answers).
APPLICATION_COMMAND = 2
MODAL_SUBMIT = 5
CHANNEL_MESSAGE = 4
DEFERRED_CHANNEL_MESSAGE = 5
MODAL = 9

# Application command option types.
SUB_COMMAND, SUB_COMMAND_GROUP, STRING, INTEGER, BOOLEAN, NUMBER = 1, 2, 3, 4, 5, 10

_COMMAND_NAME = re.compile(r"^[-_\w]{1,32}$")


class CommandNotAvailable(Exception):
    """The user could not have run this command in the real client (unknown, hidden, wrong
    context): raised by `FakeDiscord.invoke` instead of dispatching."""


class _ApiError(Exception):
    def __init__(self, status: int, code: int, message: str,
                 errors: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors


def json_response(data: Any, status: int = 200,
                  headers: dict[str, str] | None = None) -> web.Response:
    """JSON with a Content-Type of exactly `application/json` (no charset), as Discord does."""
    return web.Response(status=status, body=json.dumps(data).encode(),
                        content_type="application/json", headers=headers)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1e6):06d}+00:00"


# --- the world the fake serves --------------------------------------------------------------


@dataclass(frozen=True)
class FakeUser:
    id: int
    username: str
    bot: bool = False

    def payload(self) -> dict[str, Any]:
        return {"id": str(self.id), "username": self.username, "discriminator": "0",
                "global_name": self.username, "avatar": None, "bot": self.bot,
                "public_flags": 0, "flags": 0}


@dataclass(frozen=True)
class FakeChannel:
    id: int
    name: str = "general"
    type: int = 0  # 0 guild text, 1 DM

    def payload(self, guild_id: int | None = None,
                recipient: FakeUser | None = None) -> dict[str, Any]:
        if self.type == 1:
            return {"id": str(self.id), "type": 1, "last_message_id": None, "flags": 0,
                    "recipients": [recipient.payload()] if recipient else []}
        return {"id": str(self.id), "type": self.type, "guild_id": str(guild_id),
                "name": self.name, "position": 0, "permission_overwrites": [], "nsfw": False,
                "parent_id": None, "topic": None, "rate_limit_per_user": 0,
                "last_message_id": None, "flags": 0}


@dataclass(frozen=True)
class FakeGuild:
    id: int
    name: str = "Test server"
    channels: tuple[FakeChannel, ...] = (FakeChannel(id=0),)
    owner_id: int = 1

    def payload(self, bot: FakeUser) -> dict[str, Any]:
        return {
            "id": str(self.id), "name": self.name, "icon": None, "splash": None,
            "owner_id": str(self.owner_id), "afk_timeout": 300, "verification_level": 0,
            "default_message_notifications": 0, "explicit_content_filter": 0,
            "roles": [{"id": str(self.id), "name": "@everyone", "permissions": "0",
                       "position": 0, "color": 0, "hoist": False, "managed": False,
                       "mentionable": False, "flags": 0}],
            "emojis": [], "stickers": [], "features": [], "mfa_level": 0, "system_channel_id": None,
            "system_channel_flags": 0, "rules_channel_id": None, "vanity_url_code": None,
            "description": None, "banner": None, "premium_tier": 0, "preferred_locale": "en-US",
            "public_updates_channel_id": None, "nsfw_level": 0, "unavailable": False,
            "large": False, "member_count": 2, "joined_at": _iso(time.time()),
            "channels": [c.payload(self.id) for c in self.channels],
            "threads": [], "voice_states": [], "presences": [], "stage_instances": [],
            "guild_scheduled_events": [], "soundboard_sounds": [],
            "members": [{"user": bot.payload(), "roles": [], "joined_at": _iso(time.time()),
                         "deaf": False, "mute": False, "flags": 0}],
        }


# --- what the fake records ------------------------------------------------------------------


@dataclass(frozen=True)
class SentFile:
    filename: str
    size: int
    sha256: str
    content_type: str | None = None


@dataclass
class FakeMessage:
    """A message as the fake stored it. `kind`: "response" (an interaction's original
    response), "followup", or "channel" (posted with the bot token)."""

    id: int
    channel_id: int
    kind: str
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[SentFile] = field(default_factory=list)
    flags: int = 0
    allowed_mentions: dict[str, Any] | None = None
    interaction_id: int | None = None
    loading: bool = False  # a deferred response nobody has filled in yet
    edits: int = 0

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    def payload(self, bot: FakeUser, application_id: int) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id), "channel_id": str(self.channel_id),
            "type": 20 if self.kind == "response" else 0, "content": self.content,
            "author": bot.payload(), "embeds": self.embeds, "mentions": [],
            "mention_roles": [], "mention_everyone": False, "pinned": False, "tts": False,
            "timestamp": _iso(snowflake_time(self.id)),
            "edited_timestamp": _iso(time.time()) if self.edits else None,
            "flags": self.flags | (1 << 7 if self.loading else 0), "components": [],
            "attachments": [
                {"id": str(self.id + n + 1), "filename": f.filename, "size": f.size,
                 "url": f"https://cdn.invalid/{self.id}/{f.filename}",
                 "proxy_url": f"https://media.invalid/{self.id}/{f.filename}",
                 "content_type": f.content_type}
                for n, f in enumerate(self.attachments)
            ],
        }
        if self.kind != "channel":
            data["webhook_id"] = str(application_id)
            data["application_id"] = str(application_id)
        return data


@dataclass
class FakeInteraction:
    """An interaction the fake dispatched, and what the bot did with it."""

    id: int
    token: str
    type: int
    data: dict[str, Any]
    user: FakeUser
    channel_id: int
    guild_id: int | None
    attachment_size_limit: int
    dispatched_at: float  # loop time
    callbacks: list[dict[str, Any]] = field(default_factory=list)  # every attempt, accepted or not
    response_type: int | None = None  # the accepted callback's type
    original: FakeMessage | None = None
    modal: dict[str, Any] | None = None
    expired: bool = False

    @property
    def acknowledged(self) -> bool:
        return self.response_type is not None

    @property
    def deferred(self) -> bool:
        return self.response_type == DEFERRED_CHANNEL_MESSAGE


def bot_token(user_id: int) -> str:
    """A random token shaped like Discord's: base64 user id, timestamp, signature."""
    head = base64.urlsafe_b64encode(str(user_id).encode()).decode().rstrip("=")
    return f"{head}.{secrets.token_urlsafe(4)}.{secrets.token_urlsafe(28)}"


def snowflake_time(snowflake: int) -> float:
    return ((snowflake >> 22) + DISCORD_EPOCH_MS) / 1000


class _Snowflakes:
    def __init__(self) -> None:
        self._counter = itertools.count(1)

    def next(self) -> int:
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        return (ms << 22) | (next(self._counter) & 0x3FFFFF)


@dataclass
class _RateLimit:
    match: str
    retry_after: float
    remaining: int
    is_global: bool


class _GatewaySession:
    """One gateway connection, with zlib-stream transport compression when asked for."""

    def __init__(self, ws: web.WebSocketResponse, compress: bool) -> None:
        self.ws = ws
        self.session_id = secrets.token_hex(16)
        self.seq = 0
        self.identified = False
        self.intents: int | None = None
        self._zlib = zlib.compressobj() if compress else None

    async def send(self, payload: dict[str, Any]) -> None:
        if payload.get("op") == 0:
            self.seq += 1
            payload["s"] = self.seq
        text = json.dumps(payload)
        if self._zlib is None:
            await self.ws.send_str(text)
        else:
            data = self._zlib.compress(text.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
            await self.ws.send_bytes(data)


# --- the server -------------------------------------------------------------------------------


class FakeDiscord:
    """Fake Discord REST + gateway. Use as `async with FakeDiscord(...) as fake:`."""

    def __init__(
        self,
        *,
        token: str | None = None,
        application_id: int = 710_000_000_000_000_001,
        bot_user: FakeUser | None = None,
        guilds: Iterable[FakeGuild] = (),
        attachment_size_limit: int = 10 * MiB,
        max_request_bytes: int = 25 * MiB,
        ack_deadline: float = 3.0,
        token_lifetime: float = 15 * 60,
        heartbeat_interval: float = 41.25,
        forbidden_channels: Iterable[int] = (),
    ) -> None:
        self.token = token or bot_token(application_id)
        self.application_id = application_id
        self.bot_user = bot_user or FakeUser(application_id, "stories-bot", bot=True)
        self.guilds = {g.id: g for g in guilds}
        self.attachment_size_limit = attachment_size_limit
        self.max_request_bytes = max_request_bytes
        self.ack_deadline = ack_deadline
        self.token_lifetime = token_lifetime
        self.heartbeat_interval = heartbeat_interval
        self.forbidden_channels = set(forbidden_channels)

        self.commands: dict[int | None, list[dict[str, Any]]] = {}
        self.command_syncs: list[int | None] = []  # guild id (None = global) of each sync
        self.messages: list[FakeMessage] = []
        self.interactions: dict[int, FakeInteraction] = {}
        self.identifies: list[dict[str, Any]] = []
        self.heartbeats = 0
        self.requests: list[str] = []  # "METHOD /path" of every REST call
        self.rate_limited: list[str] = []  # the calls answered with an injected 429
        self.dm_channels: dict[int, FakeChannel] = {}  # user id -> DM channel
        self._last_permissions: dict[int, int] = {}  # interaction id -> member permissions

        self._ids = _Snowflakes()
        self._sessions: list[_GatewaySession] = []
        self._sockets: set[web.WebSocketResponse] = set()
        self._rate_limits: list[_RateLimit] = []
        self._changed: asyncio.Condition | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> FakeDiscord:
        self._changed = asyncio.Condition()
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * MiB)
        app.router.add_get("/gateway", self._gateway)
        p = API_PREFIX
        routes: list[tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]] = [
            ("GET", "/gateway", self._get_gateway),
            ("GET", "/gateway/bot", self._get_gateway_bot),
            ("GET", "/users/@me", self._get_me),
            ("GET", "/oauth2/applications/@me", self._get_application),
            ("GET", "/applications/@me", self._get_application),
            ("PUT", "/applications/{app}/commands", self._put_commands),
            ("GET", "/applications/{app}/commands", self._get_commands),
            ("PUT", "/applications/{app}/guilds/{guild}/commands", self._put_commands),
            ("GET", "/applications/{app}/guilds/{guild}/commands", self._get_commands),
            ("POST", "/interactions/{iid}/{token}/callback", self._callback),
            ("POST", "/webhooks/{app}/{token}", self._followup),
            ("GET", "/webhooks/{app}/{token}/messages/{mid}", self._get_webhook_message),
            ("PATCH", "/webhooks/{app}/{token}/messages/{mid}", self._edit_webhook_message),
            ("DELETE", "/webhooks/{app}/{token}/messages/{mid}", self._delete_webhook_message),
            ("POST", "/channels/{cid}/messages", self._post_channel_message),
            ("PATCH", "/channels/{cid}/messages/{mid}", self._edit_channel_message),
            ("GET", "/channels/{cid}", self._get_channel),
            ("GET", "/guilds/{gid}", self._get_guild),
            ("POST", "/users/@me/channels", self._create_dm),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, p + path, handler)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[union-attr]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"fake discord stopping")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """The REST root, as a REST proxy would expose it (discord.py adds `/api/v10`)."""
        return self.base_url

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    # -- waiting -------------------------------------------------------------------------------

    async def _notify(self) -> None:
        assert self._changed is not None
        async with self._changed:
            self._changed.notify_all()

    async def wait_until(self, predicate: Callable[[], object], timeout: float = 10.0) -> None:
        """Wait until `predicate()` is true; it is re-checked after every recorded change."""
        assert self._changed is not None, "start() the fake first"
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: bool(predicate()))

    async def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until a client has identified and received READY."""
        await self.wait_until(lambda: any(s.identified for s in self._sessions), timeout)

    async def wait_acknowledged(self, interaction: FakeInteraction, timeout: float = 10.0) -> None:
        await self.wait_until(lambda: interaction.acknowledged, timeout)

    # -- queries ---------------------------------------------------------------------------------

    def messages_for(self, interaction: FakeInteraction) -> list[FakeMessage]:
        """The interaction's original response (unless still loading) and its follow-ups."""
        return [m for m in self.messages
                if m.interaction_id == interaction.id and not m.loading]

    def channel_messages(self, channel_id: int) -> list[FakeMessage]:
        return [m for m in self.messages if m.channel_id == channel_id and m.kind == "channel"]

    def visible_messages(self, channel_id: int) -> list[FakeMessage]:
        """Everything in a channel that is not ephemeral and not loading."""
        return [m for m in self.messages
                if m.channel_id == channel_id and not m.ephemeral and not m.loading]

    def command(self, name: str, guild_id: int | None = None) -> dict[str, Any] | None:
        for cmd in self.commands.get(guild_id, []):
            if cmd["name"] == name:
                return cmd
        return None

    # -- test controls -----------------------------------------------------------------------------

    def inject_rate_limit(self, match: str = "", *, retry_after: float = 0.05, count: int = 1,
                          is_global: bool = False) -> None:
        """Answer the next `count` REST calls whose "METHOD /path" contains `match` with 429."""
        self._rate_limits.append(_RateLimit(match, retry_after, count, is_global))

    def expire(self, interaction: FakeInteraction) -> None:
        """End the interaction's token now, as 15 minutes would."""
        interaction.expired = True

    def dm_channel(self, user: FakeUser) -> FakeChannel:
        if user.id not in self.dm_channels:
            self.dm_channels[user.id] = FakeChannel(id=self._ids.next(), name="", type=1)
        return self.dm_channels[user.id]

    async def invoke(
        self,
        command: str,
        options: dict[str, Any] | None = None,
        *,
        user: FakeUser,
        guild_id: int | None = None,
        channel_id: int | None = None,
        permissions: int = 0,
        attachment_size_limit: int | None = None,
        server_override: bool = False,
    ) -> FakeInteraction:
        """Dispatch a slash command as `user` would type it: `command` is "stories" or
        "apikey set". In a guild, `permissions` are the member's (in that channel); without
        `server_override`, a member lacking the command's `default_member_permissions` cannot
        see it (CommandNotAvailable). Without `guild_id`, it comes from the user's DM."""
        path = command.split()
        cmd = self._registered(path[0], guild_id)
        self._check_visible(cmd, guild_id, permissions, server_override)
        data: dict[str, Any] = {"id": cmd["id"], "name": cmd["name"], "type": 1}
        if cmd.get("guild_id"):
            data["guild_id"] = cmd["guild_id"]
        data["options"] = self._options_payload(cmd, path[1:], options or {})
        return await self._dispatch_interaction(
            APPLICATION_COMMAND, data, user=user, guild_id=guild_id, channel_id=channel_id,
            permissions=permissions, attachment_size_limit=attachment_size_limit)

    async def submit_modal(self, interaction: FakeInteraction, values: dict[str, str],
                           *, permissions: int | None = None) -> FakeInteraction:
        """Submit the modal the bot answered `interaction` with, filling its text inputs by
        custom_id. Same user, channel and (unless given) permissions."""
        if interaction.modal is None:
            raise AssertionError("the bot did not answer this interaction with a modal")
        modal = interaction.modal
        missing = set(values)

        def fill(component: dict[str, Any]) -> dict[str, Any]:
            kind = component["type"]
            if kind == 1:
                return {"type": 1, "components": [fill(c) for c in component["components"]]}
            if kind == 18:
                return {"type": 18, "component": fill(component["component"])}
            custom_id = component.get("custom_id")
            missing.discard(custom_id)
            return {"type": kind, "custom_id": custom_id, "value": values.get(custom_id, "")}

        data = {"custom_id": modal["custom_id"],
                "components": [fill(c) for c in modal.get("components", [])]}
        if missing:
            raise AssertionError(f"the modal has no inputs named {sorted(missing)}")
        original_perms = self._last_permissions.get(interaction.id, 0)
        return await self._dispatch_interaction(
            MODAL_SUBMIT, data, user=interaction.user, guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            permissions=original_perms if permissions is None else permissions,
            attachment_size_limit=interaction.attachment_size_limit)

    # -- interactions: building and dispatching ---------------------------------------------

    def _registered(self, name: str, guild_id: int | None) -> dict[str, Any]:
        cmd = (self.command(name, guild_id) if guild_id is not None else None) \
            or self.command(name)
        if cmd is None:
            raise CommandNotAvailable(f"/{name} is not registered (sync the commands first)")
        return cmd

    @staticmethod
    def _check_visible(cmd: dict[str, Any], guild_id: int | None, permissions: int,
                       server_override: bool) -> None:
        contexts = cmd.get("contexts")
        if guild_id is None:
            if cmd.get("dm_permission") is False or (contexts is not None and 1 not in contexts):
                raise CommandNotAvailable(f"/{cmd['name']} is not available in DMs")
            return
        if contexts is not None and 0 not in contexts:
            raise CommandNotAvailable(f"/{cmd['name']} is not available in servers")
        required = cmd.get("default_member_permissions")
        if required is None or server_override or permissions & ADMINISTRATOR:
            return
        needed = int(required)
        if needed == 0 or permissions & needed != needed:
            raise CommandNotAvailable(f"/{cmd['name']} is hidden from this member")

    @staticmethod
    def _options_payload(cmd: dict[str, Any], subpath: list[str],
                         values: dict[str, Any]) -> list[dict[str, Any]]:
        defs = cmd.get("options") or []
        if subpath:
            sub = next((o for o in defs if o["name"] == subpath[0]
                        and o["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP)), None)
            if sub is None:
                raise CommandNotAvailable(f"/{cmd['name']} has no subcommand {subpath[0]!r}")
            inner = FakeDiscord._options_payload(sub, subpath[1:], values)
            return [{"name": sub["name"], "type": sub["type"], "options": inner}]
        if any(o["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP) for o in defs):
            raise CommandNotAvailable(f"/{cmd['name']} needs a subcommand")
        unknown = set(values) - {o["name"] for o in defs}
        if unknown:
            raise CommandNotAvailable(f"/{cmd['name']} has no options {sorted(unknown)}")
        out = []
        for option in defs:
            if option["name"] not in values:
                if option.get("required"):
                    raise CommandNotAvailable(f"option {option['name']!r} is required")
                continue
            out.append({"name": option["name"], "type": option["type"],
                        "value": values[option["name"]]})
        return out

    async def _dispatch_interaction(
        self, kind: int, data: dict[str, Any], *, user: FakeUser, guild_id: int | None,
        channel_id: int | None, permissions: int, attachment_size_limit: int | None,
    ) -> FakeInteraction:
        session = next((s for s in reversed(self._sessions) if s.identified), None)
        if session is None:
            raise AssertionError("no client is connected to the fake gateway")
        limit = attachment_size_limit or self.attachment_size_limit
        iid = self._ids.next()
        token = "aW50ZXJhY3Rpb24" + secrets.token_urlsafe(48)
        payload: dict[str, Any] = {
            "id": str(iid), "application_id": str(self.application_id), "type": kind,
            "data": data, "token": token, "version": 1, "locale": "en-US",
            "entitlements": [], "attachment_size_limit": limit,
            "app_permissions": str((1 << 11) | (1 << 15) | (1 << 10)),
        }
        if guild_id is not None:
            guild = self.guilds.get(guild_id)
            if guild is None:
                raise AssertionError(f"guild {guild_id} is not configured in the fake")
            channel = next((c for c in guild.channels if c.id == channel_id), guild.channels[0])
            payload.update({
                "guild_id": str(guild_id), "guild_locale": "en-US", "context": 0,
                "guild": {"id": str(guild_id), "locale": "en-US", "features": []},
                "authorizing_integration_owners": {"0": str(guild_id)},
                "channel_id": str(channel.id), "channel": channel.payload(guild_id),
                "member": {"user": user.payload(), "roles": [], "joined_at": _iso(time.time()),
                           "deaf": False, "mute": False, "flags": 0, "pending": False,
                           "nick": None, "avatar": None, "permissions": str(permissions)},
            })
        else:
            channel = self.dm_channel(user)
            payload.update({
                "context": 1, "authorizing_integration_owners": {"0": "0"},
                "channel_id": str(channel.id),
                "channel": channel.payload(recipient=user), "user": user.payload(),
            })
        interaction = FakeInteraction(
            id=iid, token=token, type=kind, data=data, user=user, channel_id=channel.id,
            guild_id=guild_id, attachment_size_limit=limit,
            dispatched_at=asyncio.get_running_loop().time())
        self.interactions[iid] = interaction
        self._last_permissions[iid] = permissions
        await session.send({"op": 0, "t": "INTERACTION_CREATE", "d": payload})
        await self._notify()
        return interaction

    # -- HTTP plumbing -----------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request,
                          handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                          ) -> web.StreamResponse:
        if request.path == "/gateway":
            return await handler(request)
        call = f"{request.method} {request.path}"
        self.requests.append(call)
        try:
            limited = self._take_rate_limit(call)
            if limited is not None:
                self.rate_limited.append(call)
                await self._notify()
                return json_response(
                    {"message": "You are being rate limited.",
                     "retry_after": limited.retry_after, "global": limited.is_global},
                    status=429,
                    headers={"Via": "1.1 google", "Retry-After": str(limited.retry_after),
                             "X-RateLimit-Scope": "global" if limited.is_global else "user"})
            return await handler(request)
        except _ApiError as exc:
            body: dict[str, Any] = {"message": exc.message, "code": exc.code}
            if exc.errors:
                body["errors"] = exc.errors
            return json_response(body, status=exc.status)
        except web.HTTPException as exc:
            if exc.status == 404 and request.match_info.route.resource is None:
                return json_response({"message": "404: Not Found", "code": 0}, status=404)
            raise

    def _take_rate_limit(self, call: str) -> _RateLimit | None:
        for limit in self._rate_limits:
            if limit.remaining > 0 and limit.match in call:
                limit.remaining -= 1
                return limit
        return None

    def _require_bot(self, request: web.Request) -> None:
        if request.headers.get("Authorization") != f"Bot {self.token}":
            raise _ApiError(401, 0, "401: Unauthorized")

    def _check_app(self, request: web.Request) -> None:
        if request.match_info.get("app") != str(self.application_id):
            raise _ApiError(404, 10015, "Unknown Webhook")

    # -- REST: identity, gateway, commands --------------------------------------------------

    async def _get_gateway(self, request: web.Request) -> web.Response:
        return json_response({"url": self.gateway_url})

    async def _get_gateway_bot(self, request: web.Request) -> web.Response:
        self._require_bot(request)
        return json_response({
            "url": self.gateway_url, "shards": 1,
            "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0,
                                    "max_concurrency": 1}})

    async def _get_me(self, request: web.Request) -> web.Response:
        self._require_bot(request)
        return json_response({**self.bot_user.payload(), "verified": True,
                              "mfa_enabled": False, "locale": "en-US"})

    async def _get_application(self, request: web.Request) -> web.Response:
        self._require_bot(request)
        owner = FakeUser(1, "owner")
        return json_response({
            "id": str(self.application_id), "name": self.bot_user.username,
            "description": "", "icon": None, "bot_public": True,
            "bot_require_code_grant": False, "owner": owner.payload(), "team": None,
            "verify_key": "0" * 64, "flags": 0, "bot": self.bot_user.payload(),
            "interactions_endpoint_url": None,
        })

    async def _put_commands(self, request: web.Request) -> web.Response:
        self._require_bot(request)
        self._check_app(request)
        guild_id = int(request.match_info["guild"]) if "guild" in request.match_info else None
        if guild_id is not None and guild_id not in self.guilds:
            raise _ApiError(403, 50001, "Missing Access")
        payload = await request.json()
        if not isinstance(payload, list) or len(payload) > 100:
            raise _ApiError(400, 50035, "Invalid Form Body")
        stored = []
        names = set()
        for cmd in payload:
            _validate_command(cmd)
            key = (cmd["name"], cmd.get("type", 1))
            if key in names:
                raise _ApiError(400, 50035, "Invalid Form Body",
                                {"_errors": [{"code": "APPLICATION_COMMANDS_DUPLICATE_NAME"}]})
            names.add(key)
            previous = self.command(cmd["name"], guild_id)
            entry = {**cmd, "id": previous["id"] if previous else str(self._ids.next()),
                     "application_id": str(self.application_id), "version": str(self._ids.next()),
                     "type": cmd.get("type", 1)}
            if guild_id is not None:
                entry["guild_id"] = str(guild_id)
            stored.append(entry)
        self.commands[guild_id] = stored
        self.command_syncs.append(guild_id)
        await self._notify()
        return json_response(stored)

    async def _get_commands(self, request: web.Request) -> web.Response:
        self._require_bot(request)
        self._check_app(request)
        guild_id = int(request.match_info["guild"]) if "guild" in request.match_info else None
        return json_response(self.commands.get(guild_id, []))

    async def _get_channel(self, request: web.Request) -> web.Response:
        self._require_bot(request)
        cid = int(request.match_info["cid"])
        for guild in self.guilds.values():
            for channel in guild.channels:
                if channel.id == cid:
                    return json_response(channel.payload(guild.id))
        for uid, channel in self.dm_channels.items():
            if channel.id == cid:
                return json_response(channel.payload(recipient=FakeUser(uid, f"user{uid}")))
        raise _ApiError(404, 10003, "Unknown Channel")

    async def _get_guild(self, request: web.Request) -> web.Response:
        self._require_bot(request)
        guild = self.guilds.get(int(request.match_info["gid"]))
        if guild is None:
            raise _ApiError(404, 10004, "Unknown Guild")
        return json_response(guild.payload(self.bot_user))

    async def _create_dm(self, request: web.Request) -> web.Response:
        self._require_bot(request)
        body = await request.json()
        uid = int(body["recipient_id"])
        user = FakeUser(uid, f"user{uid}")
        return json_response(self.dm_channel(user).payload(recipient=user))

    # -- REST: interactions -------------------------------------------------------------------

    def _interaction_by_token(self, token: str) -> FakeInteraction:
        for interaction in self.interactions.values():
            if interaction.token == token:
                return interaction
        raise _ApiError(404, 10015, "Unknown Webhook")

    def _live(self, interaction: FakeInteraction) -> None:
        age = asyncio.get_running_loop().time() - interaction.dispatched_at
        if interaction.expired or age > self.token_lifetime:
            raise _ApiError(401, 50027, "Invalid Webhook Token")

    async def _callback(self, request: web.Request) -> web.StreamResponse:
        try:
            interaction = self.interactions[int(request.match_info["iid"])]
        except (KeyError, ValueError):
            raise _ApiError(404, 10062, "Unknown interaction") from None
        if interaction.token != request.match_info["token"]:
            raise _ApiError(404, 10062, "Unknown interaction")
        payload, files = await self._read_message_request(request, interaction)
        interaction.callbacks.append(payload)
        await self._notify()
        if interaction.acknowledged:
            raise _ApiError(400, 40060, "Interaction has already been acknowledged.")
        late = asyncio.get_running_loop().time() - interaction.dispatched_at > self.ack_deadline
        if late or interaction.expired:
            raise _ApiError(404, 10062, "Unknown interaction")
        kind = payload.get("type")
        data = payload.get("data") or {}
        if kind == DEFERRED_CHANNEL_MESSAGE:
            interaction.original = self._store(
                FakeMessage(id=self._ids.next(), channel_id=interaction.channel_id,
                            kind="response", flags=int(data.get("flags") or 0) & EPHEMERAL,
                            interaction_id=interaction.id, loading=True))
        elif kind == CHANNEL_MESSAGE:
            message = FakeMessage(id=self._ids.next(), channel_id=interaction.channel_id,
                                  kind="response", interaction_id=interaction.id)
            self._apply(message, data, files, interaction)
            interaction.original = self._store(message)
        elif kind == MODAL:
            if interaction.type == MODAL_SUBMIT:
                raise _ApiError(400, 50035, "Invalid Form Body",
                                {"type": {"_errors": [{"code": "INTERACTION_RESPONSE_TYPE"}]}})
            _validate_modal(data)
            interaction.modal = data
        else:
            raise _ApiError(400, 50035, "Invalid Form Body",
                            {"type": {"_errors": [{"code": "BASE_TYPE_CHOICES"}]}})
        interaction.response_type = kind
        await self._notify()
        if request.query.get("with_response") not in ("1", "true", "True"):
            return web.Response(status=204)
        original = interaction.original
        body: dict[str, Any] = {"interaction": {
            "id": str(interaction.id), "type": interaction.type,
            "response_message_id": str(original.id) if original else None,
            "response_message_loading": bool(original and original.loading),
            "response_message_ephemeral": bool(original and original.ephemeral)}}
        if original is not None:
            body["resource"] = {"type": kind,
                                "message": original.payload(self.bot_user, self.application_id)}
        else:
            body["resource"] = {"type": kind}
        return json_response(body)

    async def _followup(self, request: web.Request) -> web.Response:
        self._check_app(request)
        interaction = self._interaction_by_token(request.match_info["token"])
        self._live(interaction)
        if not interaction.acknowledged:
            raise _ApiError(404, 10015, "Unknown Webhook")
        payload, files = await self._read_message_request(request, interaction)
        original = interaction.original
        if original is not None and original.loading:
            # Discord fills a deferred ("thinking") response with the first follow-up, which
            # keeps the visibility chosen when deferring.
            self._apply(original, payload, files, interaction, keep_flags=True)
            original.loading = False
            message = original
        else:
            message = FakeMessage(id=self._ids.next(), channel_id=interaction.channel_id,
                                  kind="followup", interaction_id=interaction.id)
            self._apply(message, payload, files, interaction)
            self._store(message)
        await self._notify()
        if request.query.get("wait") in ("1", "true", "True"):
            return json_response(message.payload(self.bot_user, self.application_id))
        return web.Response(status=204)

    def _webhook_message(self, request: web.Request) -> tuple[FakeInteraction, FakeMessage]:
        self._check_app(request)
        interaction = self._interaction_by_token(request.match_info["token"])
        self._live(interaction)
        if not interaction.acknowledged:
            raise _ApiError(404, 10015, "Unknown Webhook")
        mid = request.match_info["mid"]
        if mid == "@original":
            if interaction.original is None:
                raise _ApiError(404, 10008, "Unknown Message")
            return interaction, interaction.original
        for message in self.messages:
            if str(message.id) == mid and message.interaction_id == interaction.id:
                return interaction, message
        raise _ApiError(404, 10008, "Unknown Message")

    async def _get_webhook_message(self, request: web.Request) -> web.Response:
        _, message = self._webhook_message(request)
        return json_response(message.payload(self.bot_user, self.application_id))

    async def _edit_webhook_message(self, request: web.Request) -> web.Response:
        interaction, message = self._webhook_message(request)
        payload, files = await self._read_message_request(request, interaction)
        self._apply(message, payload, files, interaction, keep_flags=True, edit=True)
        message.loading = False
        await self._notify()
        return json_response(message.payload(self.bot_user, self.application_id))

    async def _delete_webhook_message(self, request: web.Request) -> web.Response:
        _, message = self._webhook_message(request)
        self.messages.remove(message)
        await self._notify()
        return web.Response(status=204)

    # -- REST: channel messages (bot token) ---------------------------------------------------

    def _known_channel(self, cid: int) -> bool:
        return any(c.id == cid for g in self.guilds.values() for c in g.channels) or any(
            c.id == cid for c in self.dm_channels.values())

    async def _post_channel_message(self, request: web.Request) -> web.Response:
        self._require_bot(request)
        cid = int(request.match_info["cid"])
        if not self._known_channel(cid):
            raise _ApiError(404, 10003, "Unknown Channel")
        if cid in self.forbidden_channels:
            raise _ApiError(403, 50013, "Missing Permissions")
        payload, files = await self._read_message_request(request, None)
        if int(payload.get("flags") or 0) & EPHEMERAL:
            raise _ApiError(400, 50035, "Invalid Form Body",
                            {"flags": {"_errors": [{"code": "MESSAGE_FLAGS_INVALID"}]}})
        message = FakeMessage(id=self._ids.next(), channel_id=cid, kind="channel")
        self._apply(message, payload, files, None)
        self._store(message)
        await self._notify()
        return json_response(message.payload(self.bot_user, self.application_id))

    async def _edit_channel_message(self, request: web.Request) -> web.Response:
        self._require_bot(request)
        cid, mid = int(request.match_info["cid"]), int(request.match_info["mid"])
        message = next((m for m in self.messages if m.id == mid and m.channel_id == cid
                        and m.kind == "channel"), None)
        if message is None:
            raise _ApiError(404, 10008, "Unknown Message")
        payload, files = await self._read_message_request(request, None)
        self._apply(message, payload, files, None, keep_flags=True, edit=True)
        await self._notify()
        return json_response(message.payload(self.bot_user, self.application_id))

    # -- message bodies -------------------------------------------------------------------------

    async def _read_message_request(
        self, request: web.Request, interaction: FakeInteraction | None,
    ) -> tuple[dict[str, Any], list[SentFile]]:
        """Parse a JSON or multipart (payload_json + files[n]) body, enforcing the limits."""
        limit = interaction.attachment_size_limit if interaction else self.attachment_size_limit
        if not request.content_type.startswith("multipart/"):
            if not request.can_read_body:
                return {}, []
            try:
                payload = await request.json()
            except ValueError:
                raise _ApiError(400, 50109, "The request body contains invalid JSON.") from None
            return payload, []
        payload: dict[str, Any] = {}
        files: dict[int, SentFile] = {}
        total = 0
        too_large = False
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            name = part.name or ""  # type: ignore[union-attr]
            if name == "payload_json":
                payload = json.loads(await part.text())  # type: ignore[union-attr]
                continue
            match = re.fullmatch(r"files\[(\d+)\]", name)
            if match is None:
                continue
            digest = hashlib.sha256()
            size = 0
            while chunk := await part.read_chunk(256 * 1024):  # type: ignore[union-attr]
                size += len(chunk)
                digest.update(chunk)
            total += size
            too_large = too_large or size > limit
            files[int(match.group(1))] = SentFile(
                filename=part.filename or f"file{match.group(1)}",  # type: ignore[union-attr]
                size=size, sha256=digest.hexdigest(),
                content_type=part.headers.get("Content-Type"))  # type: ignore[union-attr]
        if too_large or total > self.max_request_bytes:
            raise _ApiError(413, 40005, "Request entity too large")
        if len(files) > 10:
            raise _ApiError(400, 50035, "Invalid Form Body",
                            {"files": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH"}]}})
        ordered = [files[k] for k in sorted(files)]
        declared = (payload.get("data") or payload).get("attachments")
        if declared is not None:
            by_id = {int(a["id"]): a for a in declared if str(a.get("id", "")).isdigit()}
            ordered = [
                SentFile(by_id.get(k, {}).get("filename") or f.filename, f.size, f.sha256,
                         f.content_type)
                for k, f in zip(sorted(files), ordered, strict=True)
            ]
        return payload, ordered

    def _apply(self, message: FakeMessage, payload: dict[str, Any], files: list[SentFile],
               interaction: FakeInteraction | None, *, keep_flags: bool = False,
               edit: bool = False) -> None:
        content = payload.get("content")
        embeds = payload.get("embeds")
        if content is not None and len(str(content)) > 2000:
            raise _ApiError(400, 50035, "Invalid Form Body", {"content": {"_errors": [
                {"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}]}})
        if embeds is not None and len(embeds) > 10:
            raise _ApiError(400, 50035, "Invalid Form Body",
                            {"embeds": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH"}]}})
        if edit:
            if content is not None:
                message.content = str(content)
            if embeds is not None:
                message.embeds = list(embeds)
            if "attachments" in payload or files:
                message.attachments = files
            message.edits += 1
        else:
            if not content and not embeds and not files:
                raise _ApiError(400, 50006, "Cannot send an empty message")
            message.content = str(content or "")
            message.embeds = list(embeds or [])
            message.attachments = files
        if "allowed_mentions" in payload:
            message.allowed_mentions = payload["allowed_mentions"]
        if not keep_flags:
            flags = int(payload.get("flags") or 0)
            if flags & EPHEMERAL and interaction is None:
                raise _ApiError(400, 50035, "Invalid Form Body")
            message.flags = flags & EPHEMERAL

    def _store(self, message: FakeMessage) -> FakeMessage:
        self.messages.append(message)
        return message

    # -- the gateway ----------------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        if request.query.get("encoding", "json") != "json":
            await ws.close(code=4002, message=b"Error while decoding payload.")
            return ws
        session = _GatewaySession(ws, compress=request.query.get("compress") == "zlib-stream")
        self._sockets.add(ws)
        self._sessions.append(session)
        try:
            await session.send({"op": 10, "d": {"heartbeat_interval":
                                                int(self.heartbeat_interval * 1000)}})
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    await ws.close(code=4002, message=b"Error while decoding payload.")
                    break
                await self._on_gateway_message(session, json.loads(msg.data))
        finally:
            self._sockets.discard(ws)
            self._sessions.remove(session)
            await self._notify()
        return ws

    async def _on_gateway_message(self, session: _GatewaySession, msg: dict[str, Any]) -> None:
        op, data = msg.get("op"), msg.get("d")
        if op == 1:  # HEARTBEAT
            self.heartbeats += 1
            await session.send({"op": 11})
            await self._notify()
        elif op == 2:  # IDENTIFY
            if session.identified:
                await session.ws.close(code=4005, message=b"Already authenticated.")
                return
            self.identifies.append(data)
            if data.get("token") != self.token:
                await session.ws.close(code=4004, message=b"Authentication failed.")
                return
            session.identified = True
            session.intents = data.get("intents")
            await session.send({"op": 0, "t": "READY", "d": {
                "v": 10, "user": self.bot_user.payload(), "session_id": session.session_id,
                "resume_gateway_url": self.gateway_url, "shard": [0, 1],
                "guilds": [{"id": str(g), "unavailable": True} for g in self.guilds],
                "application": {"id": str(self.application_id), "flags": 0},
                "private_channels": [], "relationships": [], "presences": [],
            }})
            for guild in self.guilds.values():
                await session.send({"op": 0, "t": "GUILD_CREATE",
                                    "d": guild.payload(self.bot_user)})
            await self._notify()
        elif op == 6:  # RESUME
            await session.send({"op": 9, "d": False})
        elif op in (3, 4, 8):  # presence, voice state, request members: accepted, ignored
            return
        else:
            await session.ws.close(code=4001, message=b"Unknown opcode.")


def _validate_command(cmd: dict[str, Any]) -> None:
    def bad(what: str) -> _ApiError:
        return _ApiError(400, 50035, "Invalid Form Body", {what: {"_errors": [
            {"code": "BASE_TYPE_BAD", "message": f"invalid {what}"}]}})

    name = cmd.get("name", "")
    if not _COMMAND_NAME.fullmatch(name) or name != name.lower():
        raise bad("name")
    if cmd.get("type", 1) == 1 and not 1 <= len(cmd.get("description", "")) <= 100:
        raise bad("description")
    perms = cmd.get("default_member_permissions")
    if perms is not None and not str(perms).isdigit():
        raise bad("default_member_permissions")
    _validate_options(cmd.get("options") or [], bad)


def _validate_options(options: list[dict[str, Any]], bad: Callable[[str], _ApiError]) -> None:
    if len(options) > 25:
        raise bad("options")
    seen_optional = False
    for option in options:
        if not _COMMAND_NAME.fullmatch(option.get("name", "")):
            raise bad("options.name")
        if not 1 <= len(option.get("description", "")) <= 100:
            raise bad("options.description")
        if option["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP):
            _validate_options(option.get("options") or [], bad)
            continue
        if option.get("required"):
            if seen_optional:
                raise bad("options.required")  # required options must come first
        else:
            seen_optional = True


def _validate_modal(data: dict[str, Any]) -> None:
    title = data.get("title") or ""
    components = data.get("components") or []
    if not data.get("custom_id") or not 1 <= len(title) <= 45 or not 1 <= len(components) <= 5:
        raise _ApiError(400, 50035, "Invalid Form Body",
                        {"data": {"_errors": [{"code": "MODAL_INVALID"}]}})
