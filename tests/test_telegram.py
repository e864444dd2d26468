"""The Telegram adapter's commands, end to end: the real `Application` long-polls the fake Bot
API, the real core answers, the emulator plays the stories API."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from telegram.error import InvalidToken

from adapters.telegram import TelegramAdapter
from adapters.telegram.client import UPDATES_PER_POLL
from bot import messages
from bot.emulator import Emulator
from bot.models import RequestState
from bot.turns import TurnBudget
from tests.conftest import API_KEY, db_file_bytes
from tests.fakes.telegram_api import ANONYMOUS_ADMIN_ID
from tests.fakes.telegram_harness import (
    ADMIN,
    BOT_OWNER,
    FORUM,
    GROUP,
    MEMBER,
    OWNER,
    PRIVATE_USER,
    TelegramWorld,
)

NO_KEY = "This chat has no API key yet"
NOT_ALLOWED = "Only the chat's admins can do that."


@pytest.fixture
async def world(tmp_path: Path, emulator: Emulator) -> AsyncIterator[TelegramWorld]:
    async with TelegramWorld(tmp_path, emulator) as started:
        yield started


async def test_menus_registered_by_scope(world: TelegramWorld) -> None:
    public = [c["command"] for c in world.fake.commands_for()]
    admins = [c["command"] for c in world.fake.commands_for({"type": "all_chat_administrators"})]
    private = [c["command"] for c in world.fake.commands_for({"type": "all_private_chats"})]
    assert public == ["stories", "usage", "help"]
    assert admins == private == ["stories", "usage", "help", "setkey", "removekey", "limits"]
    assert world.fake.calls_of("deleteWebhook")  # polling bootstraps by removing any webhook


async def test_help_and_start(world: TelegramWorld) -> None:
    for text in ("/help", "/start", "/help@StoriesTestBot"):
        command = await world.command(GROUP, text, user=MEMBER)
        [answer] = world.answers_to(command)
        assert answer.text == messages.help_text("telegram")
        assert answer.reply_to == command.message_id
    other_bot = await world.fake.post(GROUP, "/help@SomeOtherBot", user=MEMBER)
    probe = await world.command(GROUP, "/help", user=MEMBER)
    assert [m.reply_to for m in world.answers_to(other_bot)] == [probe.message_id]


async def test_setkey_by_admin_deletes_the_key_message(world: TelegramWorld,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    command = await world.command(GROUP, f"/setkey {API_KEY}", user=ADMIN)
    assert world.fake.message(GROUP, command.message_id).deleted
    [answer] = world.answers_to(command)
    assert answer.text == f"API key saved for this chat: {messages.mask_key(API_KEY)}"
    assert API_KEY not in answer.text
    assert answer.reply_to is None  # the command is gone; the answer still went out

    stories = await world.command(GROUP, "/stories nostories", user=MEMBER)
    await world.settle()
    assert world.answers_to(stories)[-1].text == "@nostories has no active stories right now."
    assert API_KEY.encode() not in db_file_bytes(world.database_path)
    assert API_KEY not in caplog.text
    assert world.fake.token not in caplog.text  # httpx logs URLs, and they carry the token
    await world.stop_app()
    assert API_KEY.encode() not in db_file_bytes(world.database_path)


async def test_setkey_by_member_is_refused_and_still_deleted(world: TelegramWorld) -> None:
    command = await world.command(GROUP, f"/setkey {API_KEY}", user=MEMBER)
    assert world.fake.message(GROUP, command.message_id).deleted  # leaked either way
    assert [m.text for m in world.answers_to(command)] == [NOT_ALLOWED]
    stories = await world.command(GROUP, "/stories natgeo", user=MEMBER)
    assert NO_KEY in world.answers_to(stories)[0].text
    assert world.emulator.requests == []


async def test_setkey_says_when_it_cannot_delete(world: TelegramWorld) -> None:
    world.fake.chats[GROUP].bot_can_delete = False
    command = await world.command(GROUP, f"/setkey {API_KEY}", user=OWNER)
    assert not world.fake.message(GROUP, command.message_id).deleted
    [answer] = world.answers_to(command)
    assert answer.text.startswith("API key saved for this chat: sk_live_…9f2c")
    assert messages.key_message_not_deleted() in answer.text
    assert answer.reply_to == command.message_id


async def test_setkey_without_a_key(world: TelegramWorld) -> None:
    command = await world.command(GROUP, "/setkey", user=ADMIN)
    assert not world.fake.message(GROUP, command.message_id).deleted
    assert world.answers_to(command)[0].text == "Send the key with the command: /setkey <key>"


@pytest.mark.parametrize("who", ["owner", "administrator", "anonymous", "private", "bot_owner"])
async def test_who_counts_as_admin(world: TelegramWorld, who: str) -> None:
    chat, user, anonymous = {
        "owner": (GROUP, OWNER, False), "administrator": (GROUP, ADMIN, False),
        "anonymous": (GROUP, None, True), "private": (PRIVATE_USER, None, False),
        "bot_owner": (GROUP, BOT_OWNER, False),
    }[who]
    command = await world.command(chat, f"/setkey {API_KEY}", user=user,
                                  anonymous_admin=anonymous)
    assert world.fake.message(chat, command.message_id).deleted
    assert world.answers_to(command)[0].text.startswith("API key saved")
    removed = await world.command(chat, "/removekey", user=user, anonymous_admin=anonymous)
    assert world.answers_to(removed)[0].text.startswith("API key removed")


async def test_anonymous_admin_is_identified_by_the_chat(world: TelegramWorld) -> None:
    await world.set_key()
    await world.command(GROUP, "/stories nostories", anonymous_admin=True)
    await world.settle()
    assert world.app is not None
    [request] = await world.app.store.requests_in_state(RequestState.DELIVERED)
    # Not @GroupAnonymousBot's id, shared by every group: cooldowns would be global.
    assert request.origin.user_id == str(GROUP)
    assert request.origin.is_admin
    assert str(ANONYMOUS_ADMIN_ID) not in {c.params.get("user_id")
                                           for c in world.fake.calls_of("getChatMember")}


async def test_member_cannot_remove_key_or_set_limits(world: TelegramWorld) -> None:
    await world.set_key()
    removed = await world.command(GROUP, "/removekey", user=MEMBER)
    limits = await world.command(GROUP, "/limits nonsense here", user=MEMBER)
    assert world.answers_to(removed)[0].text == NOT_ALLOWED
    assert [m.text for m in world.answers_to(limits)] == [NOT_ALLOWED]
    usage = await world.command(GROUP, "/usage", user=MEMBER)
    assert "sk_live_…9f2c" in world.answers_to(usage)[0].text  # the key is still there


async def test_limits_and_usage(world: TelegramWorld) -> None:
    await world.set_key()
    capped = await world.command(GROUP, "/limits daily 50 monthly 1000", user=ADMIN)
    assert world.answers_to(capped)[0].text == \
        "Spending caps: 50 credits per day, 1000 credits per month."
    monthly_only = await world.command(GROUP, "/limits daily off", user=OWNER)
    assert world.answers_to(monthly_only)[0].text == \
        "Spending caps: no daily cap, 1000 credits per month."
    bad = await world.command(GROUP, "/limits weekly 5", user=ADMIN)
    assert "Unknown cap" in world.answers_to(bad)[0].text

    stories = await world.command(GROUP, "/stories natgeo", user=MEMBER)
    await world.settle()
    usage = await world.command(GROUP, "/usage", user=MEMBER)
    text = world.answers_to(usage)[0].text
    assert text.startswith("Usage of this chat (API key: sk_live_…9f2c)")
    assert "Today: 1 requests, 1 credits" in text
    assert "1000 credits per month" in text
    assert world.answers_to(stories)  # the stories were posted meanwhile

    off = await world.command(GROUP, "/limits off", user=ADMIN)
    assert world.answers_to(off)[0].text == "Spending caps: no daily cap, no monthly cap."


async def test_caps_refuse_before_the_api_is_called(world: TelegramWorld) -> None:
    await world.set_key()
    await world.command(GROUP, "/limits daily 0", user=ADMIN)
    refused = await world.command(GROUP, "/stories natgeo", user=MEMBER)
    assert "daily cap of 0 credits" in world.answers_to(refused)[0].text
    assert world.emulator.requests == []


async def test_failures_are_told(world: TelegramWorld) -> None:
    no_key = await world.command(GROUP, "/stories natgeo", user=MEMBER)
    assert NO_KEY in world.answers_to(no_key)[0].text
    await world.set_key()
    for name, expected in (("privateuser", "That Instagram account is private"),
                           ("nobody_here_at_all", "No Instagram account has that username."),
                           ("bad name!", "not an Instagram username")):
        command = await world.command(GROUP, f"/stories {name}", user=MEMBER)
        await world.settle()
        answers = world.answers_to(command)
        assert expected in answers[0].text, world.fake.describe()
        assert answers[0].reply_to == command.message_id
    world.emulator.set_balance(API_KEY, 0)
    broke = await world.command(GROUP, "/stories natgeo", user=MEMBER)
    await world.settle()
    assert "out of credits" in world.answers_to(broke)[0].text


async def test_usernames_are_normalised_by_the_core(world: TelegramWorld) -> None:
    await world.set_key()
    for argument in ("@NatGeo", "https://www.instagram.com/NoStories/?igsh=abc"):
        await world.command(GROUP, f"/stories@StoriesTestBot {argument}", user=MEMBER)
        await world.settle()
    assert [r.username for r in world.emulator.requests] == ["natgeo", "nostories"]


async def test_admins_can_force_a_fresh_fetch(world: TelegramWorld) -> None:
    await world.set_key()
    await world.command(GROUP, "/stories natgeo", user=MEMBER)
    await world.settle()
    refused = await world.command(GROUP, "/stories natgeo fresh", user=MEMBER)
    assert world.answers_to(refused)[0].text == NOT_ALLOWED
    await world.command(GROUP, "/stories natgeo fresh", user=ADMIN)
    await world.settle()
    assert [r.username for r in world.emulator.requests] == ["natgeo", "natgeo"]


async def test_admins_are_asked_of_telegram_only_when_it_matters(
        tmp_path: Path, emulator: Emulator) -> None:
    """getChatMember costs a call: a plain /stories makes none; a second one within the
    cooldown asks, and lets an admin through; a fresh fetch asks."""
    async with TelegramWorld(tmp_path, emulator, user_cooldown=600) as world:
        await world.set_key()

        def asked() -> list[str]:
            return [str(c.params.get("user_id")) for c in world.fake.calls_of("getChatMember")]

        before = len(asked())
        await world.command(GROUP, "/stories natgeo", user=MEMBER)
        await world.command(GROUP, "/stories nostories", user=ADMIN)
        await world.settle()
        assert asked()[before:] == []
        again = await world.command(GROUP, "/stories natgeo", user=MEMBER)
        assert world.answers_to(again)[0].text.startswith("Please wait")
        await world.command(GROUP, "/stories manystories", user=ADMIN)  # skips the cooldown
        await world.settle()
        await world.command(GROUP, "/stories natgeo fresh", user=ADMIN)
        await world.settle()
        assert asked()[before:] == [str(MEMBER), str(ADMIN), str(ADMIN)]
        assert [r.username for r in world.emulator.requests] == [
            "natgeo", "nostories", "manystories", "natgeo"]


async def test_forum_topic_answers_stay_in_the_topic(world: TelegramWorld) -> None:
    topic = await world.fake.add_topic(FORUM, "Stories")
    await world.command(FORUM, f"/setkey {API_KEY}", user=ADMIN, thread_id=topic)
    command = await world.command(FORUM, "/stories natgeo", user=MEMBER, thread_id=topic)
    await world.settle()
    answers = world.answers_to(command)
    assert len(answers) == 6  # the status, then 5 stories in one album
    assert {m.thread_id for m in world.fake.bot_messages(FORUM)} == {topic}
    assert answers[0].reply_to == command.message_id
    assert answers[0].text == "@natgeo: 5 stories."
    assert {c.params.get("message_thread_id") for c in world.fake.calls_of("sendMediaGroup")} \
        == {topic}


async def test_a_backlog_is_polled_a_few_updates_at_a_time(world: TelegramWorld) -> None:
    """python-telegram-bot decodes a whole getUpdates batch in one event-loop step: the bot
    asks for `UPDATES_PER_POLL` (10) at most, so 45 waiting commands take several polls, and
    all are answered."""
    polls_before = len(world.fake.calls_of("getUpdates"))
    # a private chat: a group's answers would be held to Telegram's 20 a minute
    commands = [await world.fake.post(PRIVATE_USER, "/help") for _ in range(45)]
    chat = commands[0].chat_id
    # every command answered once (a later answer would count for all in `answers_to`)
    await world.fake.wait_for(
        lambda: {m.reply_to for m in world.fake.bot_messages(chat)}
        >= {c.message_id for c in commands}, timeout=10)
    await world.settle()
    polls = world.fake.calls_of("getUpdates")[polls_before:]
    assert {c.params.get("limit") for c in polls} == {UPDATES_PER_POLL}
    assert len(polls) >= 45 // UPDATES_PER_POLL  # one may have been waiting already


async def test_edited_commands_are_ignored(world: TelegramWorld) -> None:
    await world.set_key()
    await world.fake.post(GROUP, "/stories natgeo", user=MEMBER, edited=True)
    probe = await world.command(GROUP, "/help", user=MEMBER)
    assert len(world.answers_to(probe)) == 1
    assert world.emulator.requests == []


async def test_stop_is_prompt_while_polling(world: TelegramWorld) -> None:
    await world.fake.wait_for(lambda: world.fake.calls_of("getUpdates"))
    started = time.monotonic()
    await world.stop_app()
    assert time.monotonic() - started < 3
    assert not world.adapter.running


async def test_commands_of_one_chat_run_in_order(world: TelegramWorld) -> None:
    await world.fake.post(GROUP, f"/setkey {API_KEY}", user=ADMIN)  # no waiting in between
    stories = await world.fake.post(GROUP, "/stories nostories", user=MEMBER)
    await world.fake.wait_for(lambda: len(world.answers_to(stories)) >= 2)
    await world.settle()
    texts = [m.text for m in world.answers_to(stories)]
    assert texts == ["API key saved for this chat: sk_live_…9f2c",
                     "@nostories has no active stories right now."]


async def test_a_slow_chat_does_not_hold_up_the_others(world: TelegramWorld) -> None:
    await world.set_key()
    world.emulator.hang_next()
    stuck = await world.command(GROUP, "/stories natgeo", user=MEMBER)  # "Fetching…", then hangs
    await world.emulator.wait_for_requests(1)
    queued = await world.fake.post(GROUP, "/help", user=MEMBER)
    other = await world.command(PRIVATE_USER, "/help")  # another chat: answered meanwhile
    assert world.answers_to(other)
    assert [m.text for m in world.answers_to(queued)] == []  # this chat: after /stories
    world.emulator.release_hung()  # the API answers 504 at last
    await world.fake.wait_for(lambda: world.answers_to(queued))
    await world.settle()
    status = world.answers_to(stuck)[0]
    assert status.text == "The stories API is unavailable right now. Please try again in a " \
        "few minutes."


async def test_stop_right_after_start_is_prompt(world: TelegramWorld) -> None:
    """A stop landing while the first long poll is being set up: python-telegram-bot cancels
    that poll and sends a closing getUpdates, which must not wait for the cancelled poll's
    connection (with a one-connection pool it waited out the 10 s pool timeout). The stop is
    tried after each of the first event-loop steps, since the window is a step or two wide."""

    class Unused:
        """A service the adapter never calls in these tests (it only shares its turns)."""

        turns = TurnBudget()

    assert world.app is not None
    await world.stop_app()
    slow = []
    for steps in range(16):
        adapter = TelegramAdapter(world.app.settings, Unused(),  # type: ignore[arg-type]
                                  world.app.media)
        await adapter.start()
        for _ in range(steps):
            await asyncio.sleep(0)
        started = time.monotonic()
        await adapter.stop()
        if (took := time.monotonic() - started) > 0.9:
            slow.append((steps, round(took, 1)))
    assert slow == []


async def test_a_wrong_token_fails_start_cleanly(world: TelegramWorld) -> None:
    class Unused:
        """A service the adapter never calls in these tests (it only shares its turns)."""

        turns = TurnBudget()

    assert world.app is not None
    settings = world.app.settings.model_copy(update={"telegram_bot_token": SecretStr("1:wrong")})
    adapter = TelegramAdapter(settings, Unused(), world.app.media)  # type: ignore[arg-type]
    with pytest.raises(InvalidToken):
        await adapter.start()
    assert not adapter.running
    assert all(request.is_closed for request in adapter._requests)


async def test_limits_without_argument_shows_the_caps(world: TelegramWorld) -> None:
    await world.set_key()
    await world.command(GROUP, "/limits daily 5", user=ADMIN)
    shown = await world.command(GROUP, "/limits", user=ADMIN)
    answer = world.answers_to(shown)[0].text
    assert "5 credits per day, no monthly cap." in answer
    assert "Used today: 0 of 5 credits." in answer


async def test_group_upgraded_to_supergroup_keeps_its_key(world: TelegramWorld) -> None:
    """Telegram moves a group to a new id when it becomes a supergroup; the bot follows."""
    from bot.models import ChatRef

    old, new = -4000000001, -1004000000001
    world.fake.add_chat(old, "group", title="Small group",
                        members={OWNER: "creator", ADMIN: "administrator"})
    await world.set_key(old)
    await world.fake.inject_update({"message": {
        "message_id": 900, "date": int(time.time()),
        "chat": {"id": old, "type": "group", "title": "Small group"},
        "from": {"id": OWNER, "is_bot": False, "first_name": "Olivia"},
        "migrate_to_chat_id": new}})
    await world.command(old, "/help", user=MEMBER)  # handled after the migration (same chat)
    assert world.app is not None
    moved = await world.app.store.get_chat(ChatRef("telegram", str(new)))
    assert moved is not None and moved.api_key == API_KEY
    assert await world.app.store.get_chat(ChatRef("telegram", str(old))) is None
