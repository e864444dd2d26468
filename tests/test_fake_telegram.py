"""The fake Bot API's own tests: it must be as strict as Telegram where the bot could slip.

Driven with python-telegram-bot's `Bot` (the client the adapter uses) and raw httpx (for what
PTB would never send).
"""

from __future__ import annotations

import asyncio
import re
import time
import warnings
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web
from telegram import (
    Bot,
    BotCommand,
    BotCommandScopeAllChatAdministrators,
    InputMediaPhoto,
    InputMediaVideo,
    ReplyParameters,
)
from telegram.error import BadRequest, Conflict, InvalidToken, NetworkError, RetryAfter

from tests.fakes.telegram_api import (
    ANONYMOUS_ADMIN_ID,
    MB,
    FakeTelegram,
)
from tests.fakes.telegram_markdown import MarkdownError, check_markdown_v2, escape_markdown_v2

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 100 + b"\xff\xd9"
MP4 = b"\x00\x00\x00\x18ftypisom" + b"\x00" * 200
GROUP = -1001234


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        server.add_chat(GROUP, title="Group", members={1: "creator", 2: "administrator"})
        yield server


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(fake.token, base_url=f"{fake.url}/bot",
                   base_file_url=f"{fake.url}/file/bot") as client:
        yield client


@pytest.fixture
async def media_url() -> AsyncIterator[str]:
    """A tiny media host: /photo.jpg, /video.mp4, /big.jpg (6 MB), /page.html, /missing."""
    big = JPEG[:-2] + b"\x00" * (6 * MB) + b"\xff\xd9"
    routes = {"/photo.jpg": JPEG, "/video.mp4": MP4, "/big.jpg": big, "/page.html": b"<html>"}

    async def serve(request: web.Request) -> web.Response:
        body = routes.get(request.path)
        return web.Response(body=body) if body is not None else web.Response(status=404)

    app = web.Application()
    app.router.add_get("/{name}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_wrong_token_and_unknown_method(fake: FakeTelegram) -> None:
    async with httpx.AsyncClient() as http:
        wrong = await http.post(f"{fake.url}/bot123:nope/getMe")
        unknown = await http.post(f"{fake.url}/bot{fake.token}/fly")
    assert wrong.status_code == 401
    assert wrong.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
    assert unknown.status_code == 404
    with pytest.raises(InvalidToken):
        async with Bot("123:nope", base_url=f"{fake.url}/bot"):
            pass


async def test_json_bodies_are_accepted(fake: FakeTelegram) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{fake.url}/bot{fake.token}/sendMessage",
                                   json={"chat_id": GROUP, "text": "typed json"})
    assert response.json()["result"]["text"] == "typed json"
    assert fake.bot_messages(GROUP)[0].text == "typed json"


async def test_long_poll_wakes_on_injected_update(fake: FakeTelegram, bot: Bot) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=10))
    await fake.wait_for(lambda: fake.calls_of("getUpdates"))
    started = time.monotonic()
    sent = await fake.post(GROUP, "/stories@StoriesTestBot natgeo", user=5)
    updates = await poll
    assert time.monotonic() - started < 2
    assert [u.message.message_id for u in updates] == [sent.message_id]
    entity = updates[0].message.entities[0]
    assert (entity.type, entity.offset, entity.length) == ("bot_command", 0, 23)
    # Not confirmed yet: fetched again until an offset moves past it.
    again = await bot.get_updates(timeout=0)
    assert [u.update_id for u in again] == [updates[0].update_id]
    assert await bot.get_updates(offset=updates[0].update_id + 1, timeout=0) == ()


async def test_long_poll_times_out_and_answers_at_close(bot: Bot) -> None:
    started = time.monotonic()
    assert await bot.get_updates(timeout=0.2) == ()
    assert time.monotonic() - started < 2
    server = FakeTelegram()
    await server.start()
    async with Bot(server.token, base_url=f"{server.url}/bot") as other:
        poll = asyncio.create_task(other.get_updates(timeout=30, read_timeout=40))
        await server.wait_for(lambda: server.calls_of("getUpdates"))
        started = time.monotonic()
        await server.close()
        assert await poll == ()
        assert time.monotonic() - started < 2


async def test_newer_poll_terminates_the_older(fake: FakeTelegram, bot: Bot) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=10))
    await fake.wait_for(lambda: fake.calls_of("getUpdates"))
    async with Bot(fake.token, base_url=f"{fake.url}/bot") as second_instance:
        second = asyncio.create_task(second_instance.get_updates(timeout=10))
        with pytest.raises(Conflict):
            await first
        await fake.post(GROUP, "hello", user=5)
        assert len(await second) == 1


async def test_replies_threads_and_edits(fake: FakeTelegram, bot: Bot) -> None:
    with pytest.raises(BadRequest, match="Message to be replied not found"):
        await bot.send_message(GROUP, "hi", reply_parameters=ReplyParameters(999))
    sent = await bot.send_message(
        GROUP, "hi", reply_parameters=ReplyParameters(999, allow_sending_without_reply=True))
    assert fake.message(GROUP, sent.message_id).reply_to is None
    with pytest.raises(BadRequest, match="Message thread not found"):
        await bot.send_message(GROUP, "hi", message_thread_id=5)
    await bot.edit_message_text("hello", GROUP, sent.message_id)
    with pytest.raises(BadRequest, match="Message is not modified"):
        await bot.edit_message_text("hello", GROUP, sent.message_id)
    assert fake.message(GROUP, sent.message_id).edits == ["hi"]


async def test_forum_topics(fake: FakeTelegram, bot: Bot) -> None:
    forum = fake.add_chat(-1005, is_forum=True)
    topic = await fake.add_topic(forum.id, "stories")
    command = await fake.post(forum.id, "/stories natgeo", user=5, thread_id=topic)
    reply = await bot.send_message(forum.id, "ok", message_thread_id=topic,
                                   reply_parameters=ReplyParameters(command.message_id))
    assert reply.message_thread_id == topic and reply.is_topic_message
    assert fake.message(forum.id, reply.message_id).thread_id == topic


async def test_delete_rights(fake: FakeTelegram, bot: Bot) -> None:
    message = await fake.post(GROUP, "/setkey sk_live_x", user=5)
    assert await bot.delete_message(GROUP, message.message_id)
    assert fake.message(GROUP, message.message_id).deleted
    with pytest.raises(BadRequest, match="Message to delete not found"):
        await bot.delete_message(GROUP, message.message_id)
    fake.chats[GROUP].bot_can_delete = False
    other = await fake.post(GROUP, "/setkey sk_live_y", user=5)
    with pytest.raises(BadRequest, match="Message can't be deleted"):
        await bot.delete_message(GROUP, other.message_id)
    own = await bot.send_message(GROUP, "mine")
    assert await bot.delete_message(GROUP, own.message_id)  # its own messages, always


async def test_chat_members_and_anonymous_admin(fake: FakeTelegram, bot: Bot) -> None:
    statuses = [(await bot.get_chat_member(GROUP, user)).status for user in (1, 2, 3)]
    assert statuses == ["creator", "administrator", "member"]
    anonymous = await fake.post(GROUP, "/removekey", anonymous_admin=True)
    updates = await bot.get_updates(timeout=0)
    message = updates[-1].message
    assert message.message_id == anonymous.message_id
    assert message.from_user.id == ANONYMOUS_ADMIN_ID and message.sender_chat.id == GROUP
    chat = await bot.get_chat(GROUP)
    assert chat.id == GROUP


async def test_markdown_v2_is_validated(fake: FakeTelegram, bot: Bot) -> None:
    with pytest.raises(BadRequest, match=r"(?i)character '\.' is reserved"):
        await bot.send_message(GROUP, "Done.", parse_mode="MarkdownV2")
    await bot.send_message(GROUP, "*Done\\.*", parse_mode="MarkdownV2")
    await bot.send_message(GROUP, "Done.")  # plain text: anything goes


@pytest.mark.parametrize("text", [
    "plain", "*bold* _italic_ __under__ ~strike~ ||spoiler||", "a \\. b \\! c",
    "[link](https://example.com/a_(b\\))", "`code with * and _`", "```\npre . ! -\n```",
    ">quote\n>more", "*bold _italic bold_*", escape_markdown_v2("@nat.geo (2/3) - 5+5=10!"),
])
def test_markdown_v2_accepts(text: str) -> None:
    check_markdown_v2(text)


@pytest.mark.parametrize(("text", "error"), [
    ("Done.", "Character '.' is reserved"),
    ("1-2", "Character '-' is reserved"),
    ("(x)", "Character '(' is reserved"),
    ("a > b", "Character '>' is reserved"),
    ("*open", "Can't find end of Bold entity at byte offset 0"),
    ("é _x", "Can't find end of Italic entity at byte offset 3"),
    ("*a _b* c_", "Can't find end of Italic entity"),
    ("a|b", "Character '|' is reserved"),
    ("[text]", "Character ']' is reserved"),
    ("`code", "Can't find end of Code entity"),
])
def test_markdown_v2_rejects(text: str, error: str) -> None:
    with pytest.raises(MarkdownError, match=re.escape(error)):
        check_markdown_v2(text)


async def test_media_by_url_and_upload(fake: FakeTelegram, bot: Bot, media_url: str) -> None:
    messages = await bot.send_media_group(GROUP, [
        InputMediaPhoto(f"{media_url}/photo.jpg", caption="one"),
        InputMediaVideo(MP4, caption="two", filename="two.mp4"),
        InputMediaPhoto(JPEG, caption="three", filename="three.jpg"),
    ])
    assert len({m.media_group_id for m in messages}) == 1
    records = [m.media for m in fake.bot_messages(GROUP)]
    assert [(r.kind, r.source, r.content, r.size) for r in records] == [
        ("photo", "url", "jpeg", len(JPEG)), ("video", "upload", "mp4", len(MP4)),
        ("photo", "upload", "jpeg", len(JPEG)),
    ]
    assert [m.caption for m in fake.bot_messages(GROUP)] == ["one", "two", "three"]
    await bot.send_video(GROUP, f"{media_url}/video.mp4", caption="single")
    assert fake.bot_messages(GROUP)[-1].media.source == "url"


async def test_url_failures(fake: FakeTelegram, bot: Bot, media_url: str) -> None:
    with pytest.raises(BadRequest, match="File is too big"):
        await bot.send_photo(GROUP, f"{media_url}/big.jpg")
    with pytest.raises(BadRequest, match="Failed to get http url content"):
        await bot.send_photo(GROUP, f"{media_url}/missing")
    with pytest.raises(BadRequest, match="Wrong type of the web page content"):
        await bot.send_photo(GROUP, f"{media_url}/page.html")
    fake.refuse_urls = True
    with pytest.raises(BadRequest, match="Wrong file identifier/http url specified"):
        await bot.send_media_group(GROUP, [InputMediaPhoto(f"{media_url}/photo.jpg"),
                                           InputMediaPhoto(JPEG, filename="a.jpg")])
    await bot.send_photo(GROUP, JPEG)  # uploads still work
    with pytest.raises(BadRequest, match="Image_process_failed"):
        await bot.send_photo(GROUP, MP4)
    assert [m.kind for m in fake.bot_messages(GROUP)] == ["photo"]


async def test_upload_limits(fake: FakeTelegram, bot: Bot) -> None:
    big_photo = JPEG + b"\x00" * (10 * MB)
    with pytest.raises(BadRequest, match="File is too big"):
        await bot.send_photo(GROUP, big_photo, write_timeout=30)
    with pytest.raises(NetworkError, match="Request Entity Too Large"):
        await bot.send_video(GROUP, MP4 + b"\x00" * (50 * MB), write_timeout=30)
    with pytest.raises(BadRequest, match="Too much messages"):
        await bot.send_media_group(GROUP, [InputMediaPhoto(JPEG, filename=f"{i}.jpg")
                                           for i in range(11)])
    assert fake.bot_messages(GROUP) == []


async def test_injected_429(fake: FakeTelegram, bot: Bot) -> None:
    fake.fail_next("sendMessage", retry_after=3)
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(GROUP, "first")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PTB 22 warns that retry_after becomes a timedelta
        retry_after = caught.value.retry_after
    assert retry_after == 3 or retry_after.total_seconds() == 3
    await bot.send_message(GROUP, "second")
    assert [m.text for m in fake.bot_messages(GROUP)] == ["second"]


async def test_commands_and_actions_are_recorded(fake: FakeTelegram, bot: Bot) -> None:
    await bot.set_my_commands([BotCommand("stories", "Post stories")])
    await bot.set_my_commands([BotCommand("setkey", "Set the key")],
                              scope=BotCommandScopeAllChatAdministrators())
    assert fake.commands_for() == [{"command": "stories", "description": "Post stories"}]
    assert fake.commands_for({"type": "all_chat_administrators"})[0]["command"] == "setkey"
    with pytest.raises(BadRequest, match="Bot_command_invalid"):
        await bot.set_my_commands([BotCommand("Bad-Name", "x")])
    await bot.send_chat_action(GROUP, "upload_photo")
    assert fake.chat_actions == [(GROUP, "upload_photo", None)]


async def test_wait_for_reports_what_was_sent(fake: FakeTelegram, bot: Bot) -> None:
    await bot.send_message(GROUP, "something")
    with pytest.raises(AssertionError, match="something"):
        await fake.wait_for(lambda: False, timeout=0.05)
    waiter = asyncio.create_task(fake.wait_sent(2, GROUP))
    await bot.send_message(GROUP, "more")
    assert [m.text for m in await waiter] == ["something", "more"]
