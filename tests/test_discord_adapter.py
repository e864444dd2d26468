"""The Discord adapter end to end: the real discord.py client, driven through the real app
(`bot.app.App`: core, store, callback server) against the fake Discord and the API emulator.

Every server listens on 127.0.0.1 with a port from the OS and is closed after each test; the
tests wait for events (fake Discord's and the app's), never for time.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import discord
import pytest

from adapters.discord import DiscordAdapter
from bot.app import App
from bot.emulator import Emulator
from tests.conftest import API_KEY, KNOWN_SECRETS, assert_no_secret_in_file, make_settings
from tests.fakes.discord_api import (
    ADMINISTRATOR,
    MANAGE_GUILD,
    CommandNotAvailable,
    FakeChannel,
    FakeDiscord,
    FakeGuild,
    FakeInteraction,
    FakeMessage,
    FakeUser,
)

GUILD_ID = 870_000_000_000_000_001
CHANNEL_ID = 870_000_000_000_000_002
GUILD = FakeGuild(id=GUILD_ID, channels=(FakeChannel(CHANNEL_ID, "stories"),))
ADMIN = FakeUser(601, "alice")  # has Manage Server
MEMBER = FakeUser(602, "bob")  # has nothing
OWNER = FakeUser(603, "olga")  # BOT_OWNER_IDS
MiB = 1024 * 1024

NATGEO_MEDIA = ["photo-aurora-540x960.jpg", "video-reef-360x640.mp4", "photo-desert-540x960.jpg",
                "video-lava-360x640.mp4", "photo-ocean-540x960.jpg"]


@dataclass
class Stack:
    app: App
    fake: FakeDiscord
    emulator: Emulator
    adapter: DiscordAdapter

    async def run(self, command: str, options: dict[str, Any] | None = None, *,
                  user: FakeUser = MEMBER, dm: bool = False, **kwargs: Any) -> FakeInteraction:
        """Invoke a command and wait until its answer is visible and the core is idle."""
        interaction = await self.fake.invoke(command, options, user=user,
                                             guild_id=None if dm else GUILD_ID, **kwargs)
        await self.settled(interaction)
        return interaction

    async def settled(self, interaction: FakeInteraction) -> None:
        await self.fake.wait_until(lambda: interaction.modal is not None or (
            interaction.original is not None and not interaction.original.loading))
        await self.app.wait_idle(timeout=10)

    async def stories(self, username: str, **kwargs: Any) -> FakeInteraction:
        return await self.run("stories", {"username": username}, **kwargs)

    async def set_key(self, key: str = API_KEY, *, user: FakeUser = ADMIN, dm: bool = False,
                      permissions: int = MANAGE_GUILD, **kwargs: Any) -> FakeInteraction:
        opened = await self.run("apikey set", user=user, dm=dm, permissions=permissions,
                                **kwargs)
        assert opened.modal is not None, self.texts(opened)
        submitted = await self.fake.submit_modal(opened, {"api_key": key})
        await self.settled(submitted)
        return submitted

    def texts(self, interaction: FakeInteraction) -> list[str]:
        return [m.content for m in self.fake.messages_for(interaction)]

    def followups(self, interaction: FakeInteraction) -> list[FakeMessage]:
        return [m for m in self.fake.messages_for(interaction) if m.kind == "followup"]


StackFactory = Callable[..., Awaitable[Stack]]


@pytest.fixture
async def make_stack(tmp_path: Path, emulator: Emulator,
                     monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[StackFactory]:
    monkeypatch.setattr(DiscordAdapter, "guild_ready_timeout", 0.01)
    started: list[tuple[App, FakeDiscord]] = []

    async def factory(*, fake: FakeDiscord | None = None, **overrides: Any) -> Stack:
        fake = fake or FakeDiscord(guilds=[GUILD])
        await fake.start()
        values: dict[str, Any] = {
            "discord_bot_token": fake.token, "discord_api_url": fake.api_url,
            "discord_gateway_url": fake.gateway_url, "bot_owner_ids": f"discord:{OWNER.id}"}
        values.update(overrides)
        app = App(make_settings(tmp_path, emulator, **values), adapters=[DiscordAdapter],
                  public_url="auto")
        started.append((app, fake))
        await app.start()
        adapter = app.adapters[0]
        assert isinstance(adapter, DiscordAdapter)
        await fake.wait_ready()
        return Stack(app, fake, emulator, adapter)

    yield factory
    for app, fake in started:
        await app.stop(timeout=2)  # also after a failed start: it closes what was opened
        await fake.stop()
        # Checked against every log line of the test once this fixture is torn down.
        KNOWN_SECRETS.update({fake.token, *(i.token for i in fake.interactions.values())})
        # ...and now against the database file and every message the bot posted.
        assert_no_secret_in_file(app.settings.database_path)
        for message in fake.messages:
            text = message.content + repr(message.embeds)
            assert not any(secret in text for secret in KNOWN_SECRETS), message.id


@pytest.fixture
async def stack(make_stack: StackFactory) -> Stack:
    return await make_stack()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- start-up ---------------------------------------------------------------------------------


async def test_login_ready_and_global_command_sync(stack: Stack) -> None:
    fake, adapter = stack.fake, stack.adapter
    assert fake.identifies[0]["token"] == fake.token
    assert fake.identifies[0]["intents"] == discord.Intents(guilds=True).value
    await adapter.wait_until_ready()
    assert adapter.running
    assert stack.app._adapters_running() == {"discord": True}

    assert fake.command_syncs == [None]
    commands = {c["name"]: c for c in fake.commands[None]}
    assert set(commands) == {"stories", "apikey", "usage", "limits", "help"}
    for name in ("apikey", "usage", "limits"):
        assert int(commands[name]["default_member_permissions"]) == MANAGE_GUILD
    for name in ("stories", "help"):
        assert commands[name]["default_member_permissions"] is None
    assert all(c["contexts"] == [0, 1] for c in commands.values())
    assert [o["name"] for o in commands["apikey"]["options"]] == ["set", "remove"]
    assert [o["name"] for o in commands["stories"]["options"]] == ["username", "fresh"]


async def test_dev_guild_gets_the_commands_instantly(make_stack: StackFactory) -> None:
    stack = await make_stack(discord_dev_guild_id=GUILD_ID)
    assert stack.fake.command_syncs == [GUILD_ID]
    assert {c["name"] for c in stack.fake.commands[GUILD_ID]} >= {"stories", "apikey"}
    assert stack.fake.commands.get(None) is None
    await stack.set_key()
    interaction = await stack.stories("natgeo")
    assert stack.texts(interaction)[0] == "@natgeo: 5 stories."


async def test_a_wrong_token_stops_start_up(make_stack: StackFactory) -> None:
    with pytest.raises(discord.LoginFailure):
        await make_stack(discord_bot_token="not-the-token")


# --- /stories -----------------------------------------------------------------------------------


async def test_stories_in_a_server(stack: Stack) -> None:
    await stack.set_key()
    interaction = await stack.stories("@NatGeo")

    assert interaction.callbacks[0] == {"type": 5}  # deferred, visible to all
    assert not interaction.original.ephemeral
    # The deferred response shows the status, then the outcome; the stories follow it.
    assert interaction.original.content == "@natgeo: 5 stories."
    assert interaction.original.edits == 2  # "Fetching…", then the outcome
    [message] = stack.followups(interaction)
    assert [f.filename for f in message.attachments] == [
        "natgeo_01.jpg", "natgeo_02.mp4", "natgeo_03.jpg", "natgeo_04.mp4", "natgeo_05.jpg"]
    assert [(f.size, f.sha256) for f in message.attachments] == [
        (len(data), digest(data)) for data in map(stack.emulator.media_bytes, NATGEO_MEDIA)]
    lines = message.content.splitlines()
    assert len(lines) == 5 and all(line.startswith("@natgeo · ") for line in lines)
    assert "1/5" in lines[0] and "video 0:" in lines[1]
    assert message.allowed_mentions == {"parse": []}
    assert stack.emulator.total_charged == 1


async def test_stories_in_a_dm(stack: Stack) -> None:
    refused = await stack.stories("natgeo", dm=True)
    assert stack.texts(refused) == [
        "This chat has no API key yet. A chat admin can set one with /apikey set. "
        "Keys come from https://eternalsocial.dev."]

    await stack.set_key(user=MEMBER, dm=True, permissions=0)  # a DM is the user's own chat
    interaction = await stack.stories("natgeo", dm=True)
    dm_channel = stack.fake.dm_channel(MEMBER)
    assert interaction.guild_id is None and interaction.channel_id == dm_channel.id
    assert interaction.callbacks[0] == {"type": 5}
    [message] = stack.followups(interaction)
    assert message.channel_id == dm_channel.id
    assert len(message.attachments) == 5
    assert all(0 < f.size <= 10 * MiB for f in message.attachments)
    # The server has no key of its own: the DM's key is the DM's.
    in_server = await stack.stories("natgeo", user=ADMIN)
    assert "no API key" in stack.texts(in_server)[0]


async def test_23_stories_are_split_10_10_3(stack: Stack) -> None:
    await stack.set_key()
    interaction = await stack.stories("manystories")
    messages = stack.followups(interaction)
    assert [len(m.attachments) for m in messages] == [10, 10, 3]
    names = [f.filename for m in messages for f in m.attachments]
    assert names == [f"manystories_{n:02d}.{'mp4' if n % 3 == 0 else 'jpg'}"
                     for n in range(1, 24)]
    assert [len(m.content.splitlines()) for m in messages] == [10, 10, 3]
    assert "23/23" in messages[-1].content.splitlines()[-1]
    assert stack.texts(interaction)[0] == "@manystories: 23 stories."


async def test_a_video_over_the_limit_is_sent_smaller_with_a_link(stack: Stack) -> None:
    await stack.set_key()
    interaction = await stack.stories("bigvideo")
    [message] = stack.followups(interaction)
    small_video = stack.emulator.media_bytes("video-reef-180x320.mp4")
    assert [(f.filename, f.size) for f in message.attachments] == [
        ("bigvideo_01.jpg", len(stack.emulator.media_bytes("photo-ocean-540x960.jpg"))),
        ("bigvideo_02.mp4", len(small_video))]
    assert "larger than the 10 MB upload limit" in message.content
    assert "smaller version is attached" in message.content
    assert "/media/" in message.content.splitlines()[-1]  # the link to the full quality


async def test_an_item_too_large_in_every_size_becomes_a_link(stack: Stack) -> None:
    await stack.set_key()
    # A server whose upload limit is 20 kB: no rendition of the video fits, its preview does.
    interaction = await stack.stories("bigvideo", attachment_size_limit=20_000)
    [message] = stack.followups(interaction)
    assert [(f.filename, f.size) for f in message.attachments] == [
        ("bigvideo_01.jpg", len(stack.emulator.media_bytes("photo-ocean-270x480.jpg"))),
        ("bigvideo_02_preview.jpg",
         len(stack.emulator.media_bytes("preview-reef-360x640.jpg")))]
    video_line = message.content.splitlines()[-1]
    assert video_line.startswith("This video is larger than the ")
    assert "upload limit, so here is a link: http://127.0.0.1:" in video_line
    assert all(f.size <= 20_000 for f in message.attachments)


async def test_files_discord_refuses_are_sent_one_by_one(make_stack: StackFactory) -> None:
    # This Discord takes 40 kB per request: the five files together are refused (413), so
    # they go one by one, and the one too large even alone (a 53 kB video) becomes a link.
    stack = await make_stack(fake=FakeDiscord(guilds=[GUILD], max_request_bytes=40_000))
    await stack.set_key()
    interaction = await stack.stories("natgeo")
    messages = stack.followups(interaction)
    assert [len(m.attachments) for m in messages] == [1, 0, 1, 1, 1]
    assert "This video is larger than the 10 MB upload limit, so here is a link: " \
        in messages[1].content
    assert stack.texts(interaction)[0] == "@natgeo: 5 stories."


async def test_a_duplicate_callback_posts_nothing_new(stack: Stack) -> None:
    stack.emulator.config.duplicate_callbacks = True
    await stack.set_key()
    interaction = await stack.stories("natgeo")
    await stack.emulator.wait_until(lambda: len(stack.emulator.callback_attempts) >= 2)
    await stack.app.wait_idle(timeout=10)
    assert [a.status for a in stack.emulator.callback_attempts] == [200, 200]
    assert len(stack.followups(interaction)) == 1
    assert len(stack.fake.visible_messages(CHANNEL_ID)) == 2  # the response and the stories
    assert stack.emulator.total_charged == 1


async def test_refusals_replace_the_thinking_message(stack: Stack) -> None:
    await stack.set_key()
    invalid = await stack.stories("not a name!")
    assert stack.texts(invalid) == [
        "That is not an Instagram username. Use 1–30 letters, digits, '.' or '\\_', "
        "e.g. /stories natgeo"]
    private = await stack.stories("privateuser")
    assert stack.texts(private) == [
        "That Instagram account is private, so its stories cannot be fetched."]
    empty = await stack.stories("nostories")
    assert stack.texts(empty) == ["@nostories has no active stories right now."]
    assert stack.fake.channel_messages(CHANNEL_ID) == []


async def test_fresh_fetch_is_for_admins(stack: Stack) -> None:
    await stack.set_key()
    await stack.stories("natgeo")
    refused = await stack.run("stories", {"username": "natgeo", "fresh": True})
    assert stack.texts(refused) == ["Only the chat's admins can do that."]
    fresh = await stack.run("stories", {"username": "natgeo", "fresh": True}, user=ADMIN,
                            permissions=MANAGE_GUILD)
    assert stack.texts(fresh)[0] == "@natgeo: 5 stories."
    assert stack.emulator.total_charged == 2


# --- where answers go when the interaction token is gone --------------------------------------


async def test_after_15_minutes_stories_go_to_the_channel(stack: Stack) -> None:
    await stack.set_key()
    stack.emulator.pause_callbacks()
    interaction = await stack.fake.invoke("stories", {"username": "natgeo"}, user=MEMBER,
                                          guild_id=GUILD_ID)
    await stack.fake.wait_until(lambda: interaction.original is not None
                                and interaction.original.content.startswith("Fetching"))
    stack.adapter.clock = lambda: time.time() + 14.5 * 60
    stack.emulator.resume_callbacks()
    await stack.emulator.wait_for_callbacks(1)
    await stack.app.wait_idle(timeout=10)

    posted = stack.fake.channel_messages(CHANNEL_ID)
    assert [len(m.attachments) for m in posted] == [5, 0]
    assert posted[-1].content == "@natgeo: 5 stories."  # the status could not be edited
    assert interaction.original.content.startswith("Fetching")
    assert not any(r.startswith("POST /api/v10/webhooks") for r in stack.fake.requests)


async def test_a_token_discord_refuses_falls_back_to_the_channel(stack: Stack) -> None:
    await stack.set_key()
    stack.emulator.pause_callbacks()
    interaction = await stack.fake.invoke("stories", {"username": "natgeo"}, user=MEMBER,
                                          guild_id=GUILD_ID)
    await stack.fake.wait_until(lambda: interaction.original is not None
                                and not interaction.original.loading)
    stack.fake.expire(interaction)
    stack.emulator.resume_callbacks()
    await stack.emulator.wait_for_callbacks(1)
    await stack.app.wait_idle(timeout=10)
    posted = stack.fake.channel_messages(CHANNEL_ID)
    assert [len(m.attachments) for m in posted] == [5, 0]
    assert posted[-1].content == "@natgeo: 5 stories."


async def test_discord_rate_limits_are_waited_out(stack: Stack) -> None:
    await stack.set_key()
    stack.fake.inject_rate_limit("POST /api/v10/webhooks/", retry_after=0.02)
    interaction = await stack.stories("natgeo")
    assert len(stack.fake.rate_limited) == 1
    assert [len(m.attachments) for m in stack.followups(interaction)] == [5]


# --- admin commands -------------------------------------------------------------------------------


async def test_admin_commands_are_hidden_and_checked_again(stack: Stack) -> None:
    fake = stack.fake
    for command in ("apikey set", "apikey remove", "usage", "limits"):
        with pytest.raises(CommandNotAvailable):
            await fake.invoke(command, user=MEMBER, guild_id=GUILD_ID)
    # A server may let everyone see them; the bot still refuses, privately.
    for command in ("apikey set", "apikey remove", "usage", "limits"):
        interaction = await stack.run(command, user=MEMBER, server_override=True)
        assert interaction.modal is None
        [answer] = fake.messages_for(interaction)
        assert answer.ephemeral and answer.content == "Only the chat's admins can do that."
    assert await stack.app.store.get_chat(_chat()) is None


async def test_setting_the_key_shows_it_masked_and_privately(stack: Stack) -> None:
    submitted = await stack.set_key()
    [answer] = stack.fake.messages_for(submitted)
    assert answer.ephemeral
    assert answer.content == "API key saved for this chat: sk\\_live\\_…9f2c"
    assert all(API_KEY not in (m.content or "") for m in stack.fake.messages)
    chat = await stack.app.store.get_chat(_chat())
    assert chat is not None and chat.api_key == API_KEY


async def test_who_may_administer(stack: Stack) -> None:
    # Administrator implies Manage Server; a bot owner may anywhere, even when hidden by default.
    await stack.set_key(user=ADMIN, permissions=ADMINISTRATOR)
    owner = await stack.run("usage", user=OWNER, server_override=True)
    assert fake_text(stack, owner).startswith("Usage of this chat (API key: sk_live_…9f2c)")
    # A member who lost the permission between opening the form and submitting it.
    opened = await stack.run("apikey set", user=ADMIN, permissions=MANAGE_GUILD)
    submitted = await stack.fake.submit_modal(opened, {"api_key": "sk_live_another_key_1234"},
                                              permissions=0)
    await stack.settled(submitted)
    assert fake_text(stack, submitted) == "Only the chat's admins can do that."
    chat = await stack.app.store.get_chat(_chat())
    assert chat is not None and chat.api_key == API_KEY


async def test_usage_limits_and_key_removal(stack: Stack) -> None:
    await stack.set_key()
    await stack.stories("natgeo")
    admin = {"user": ADMIN, "permissions": MANAGE_GUILD}

    usage = await stack.run("usage", **admin)
    assert "Today: 1 requests, 1 credits" in fake_text(stack, usage)
    capped = await stack.run("limits", {"daily": 5, "monthly": 100}, **admin)
    assert fake_text(stack, capped) == (
        "Spending caps: 5 credits per day, 100 credits per month.")
    shown = await stack.run("limits", **admin)  # no option: shown, not rewritten
    assert fake_text(stack, shown) == ("Spending caps: 5 credits per day, 100 credits per month."
                                       "\nUsed today: 1 of 5 credits."
                                       "\nUsed this month: 1 of 100 credits.")
    removed = await stack.run("limits", {"remove": "daily"}, **admin)
    assert fake_text(stack, removed) == "Spending caps: no daily cap, 100 credits per month."
    assert all(m.ephemeral for i in (usage, capped, shown, removed)
               for m in stack.fake.messages_for(i))

    gone = await stack.run("apikey remove", **admin)
    assert fake_text(stack, gone).startswith("API key removed.")
    refused = await stack.stories("natgeo")
    assert "no API key" in stack.texts(refused)[0]


async def test_help_is_private(stack: Stack) -> None:
    interaction = await stack.run("help")
    [answer] = stack.fake.messages_for(interaction)
    assert answer.ephemeral and interaction.callbacks[0]["type"] == 4
    assert "/stories <username>" in answer.content and "/apikey set" in answer.content


def fake_text(stack: Stack, interaction: FakeInteraction) -> str:
    [message] = stack.fake.messages_for(interaction)
    return message.content.replace("\\", "")


def _chat() -> Any:
    from bot.models import ChatRef

    return ChatRef("discord", str(GUILD_ID))
