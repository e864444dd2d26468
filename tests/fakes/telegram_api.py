"""A fake Telegram Bot API server, for driving a real python-telegram-bot `Application` in tests.

It speaks the Bot API over HTTP on 127.0.0.1 (port from the OS): `/bot{token}/{method}` with
JSON, form or multipart bodies (as python-telegram-bot sends them) and `/file/bot{token}/{path}`.
It is meant to be as strict as the real service where our bot could get things wrong:

- 401 for a wrong token, 404 for an unknown method;
- real long polling: `getUpdates` waits up to `timeout`, wakes as soon as a test injects an
  update, and a newer `getUpdates` terminates an older one with 409, as Telegram does;
- replies to a missing message fail unless `allow_sending_without_reply`; edits that change
  nothing fail with "message is not modified"; MarkdownV2 is validated (`telegram_markdown`);
- forum topics: `message_thread_id` must name a topic of a forum chat, and is recorded;
- media by URL is really downloaded (over HTTP, e.g. from the stories emulator), within the
  by-URL limits (5 MB photos, 20 MB other); uploads within 10 MB photos / 50 MB other; the
  content is sniffed (JPEG / PNG / MP4 magic bytes). `refuse_urls` makes every URL fail the way
  Telegram's fetcher does at random ("wrong file identifier/HTTP URL specified");
- `fail_next(method, ...)` injects one failure, e.g. a 429 with `retry_after`.

Everything the bot sends is recorded as `ChatMessage`s; `await fake.wait_for(predicate)` wakes
on every change (an `asyncio.Condition`), so tests never sleep.

A `sendMediaGroup` is atomic here (all or nothing), which is the easy case of the real service.
The records, limits and body decoding live in `telegram_records.py`, MarkdownV2 in
`telegram_markdown.py`; the names tests need are re-exported here.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import Counter, defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import aiohttp
from aiohttp import web

from tests.fakes.telegram_markdown import MarkdownError, check_markdown_v2
from tests.fakes.telegram_records import (
    ANONYMOUS_ADMIN_ID,
    BOT_COMMAND_RE,
    CANT_DELETE,
    CAPTION_MAX,
    CHAT_ACTIONS,
    COMMAND_RE,
    DEFAULT_TOKEN,
    FILE_TOO_BIG,
    IMAGE_CONTENT,
    MB,
    MEDIA_GROUP_MAX,
    NOT_MODIFIED,
    REPLY_NOT_FOUND,
    TEXT_MAX,
    UPLOAD_PHOTO_LIMIT,
    URL_FETCH_FAILED,
    URL_OTHER_LIMIT,
    URL_PHOTO_LIMIT,
    URL_REFUSED,
    URL_WRONG_TYPE,
    ApiError,
    Call,
    ChatMessage,
    FakeChat,
    FakeUser,
    MediaRecord,
    Params,
    Upload,
    bad_request,
    read_params,
    sniff,
    utf16_len,
)

__all__ = [
    "ANONYMOUS_ADMIN_ID", "MB", "ApiError", "Call", "ChatMessage", "FakeChat", "FakeTelegram",
    "FakeUser", "MediaRecord", "texts",
]

T = TypeVar("T")

# --- the server ----------------------------------------------------------------------------


class FakeTelegram:
    """The fake Bot API. Use as `async with FakeTelegram() as fake:`; `fake.url` is the root to
    give the bot as `TELEGRAM_API_URL`."""

    def __init__(self, *, token: str = DEFAULT_TOKEN, bot_username: str = "StoriesTestBot",
                 host: str = "127.0.0.1") -> None:
        self.token = token
        bot_id = int(token.split(":", 1)[0])
        self.bot = FakeUser(bot_id, "Stories", bot_username, is_bot=True)
        self.host = host
        self.url = ""
        self.chats: dict[int, FakeChat] = {}
        self.users: dict[int, FakeUser] = {
            ANONYMOUS_ADMIN_ID: FakeUser(ANONYMOUS_ADMIN_ID, "Group", "GroupAnonymousBot", True),
        }
        self.messages: dict[tuple[int, int], ChatMessage] = {}
        self.sent: list[ChatMessage] = []  # the bot's messages, in the order it sent them
        self.calls: list[Call] = []
        self.commands: dict[str, list[dict[str, str]]] = {}
        self.chat_actions: list[tuple[int, str, int | None]] = []
        self.refuse_urls = False
        self.files: dict[str, tuple[MediaRecord, bytes]] = {}
        self.fetched_urls: list[str] = []
        self._failures: dict[str, deque[ApiError]] = defaultdict(deque)
        # Seconds to wait before answering a method (lower-case name): a slow Telegram.
        self.latency: dict[str, float] = {}
        # Calls of a method (lower-case name) to answer by dropping the connection instead.
        self.drops: Counter[str] = Counter()
        self._updates: list[dict[str, Any]] = []  # not yet confirmed by an offset
        self._update_ids = itertools.count(1)
        self._delivered_update_ids: set[int] = set()
        self._last_update_id = 0
        self._message_ids: dict[int, itertools.count[int]] = defaultdict(
            lambda: itertools.count(1)
        )
        self._file_ids = itertools.count(1)
        self._group_ids = itertools.count(1)
        self._poll_generation = 0
        self._closing = False
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self._methods: dict[str, Callable[[Params], Awaitable[Any]]] = {
            name.removeprefix("_m_").lower(): getattr(self, name)
            for name in dir(self) if name.startswith("_m_")
        }

    # --- lifecycle ---

    async def start(self) -> FakeTelegram:
        app = web.Application(client_max_size=2 * MB)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_method)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://{self.host}:{port}"
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        return self

    async def close(self) -> None:
        self._closing = True
        await self._notify()  # long polls answer at once
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def __aenter__(self) -> FakeTelegram:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- setting the scene (for tests) ---

    def add_user(self, user_id: int, first_name: str = "User",
                 username: str | None = None) -> FakeUser:
        user = FakeUser(user_id, first_name, username)
        self.users[user_id] = user
        return user

    def add_chat(self, chat_id: int, type: str = "supergroup", *, title: str | None = None,
                 is_forum: bool = False, bot_can_delete: bool = True,
                 members: dict[int, str] | None = None) -> FakeChat:
        chat = FakeChat(chat_id, type, title=title, is_forum=is_forum,
                        bot_can_delete=bot_can_delete, members=dict(members or {}))
        self.chats[chat_id] = chat
        return chat

    def add_private_chat(self, user: FakeUser) -> FakeChat:
        chat = FakeChat(user.id, "private", first_name=user.first_name, username=user.username)
        self.chats[user.id] = chat
        return chat

    def set_member(self, chat_id: int, user_id: int, status: str) -> None:
        self.chats[chat_id].members[user_id] = status

    async def add_topic(self, chat_id: int, name: str) -> int:
        """Create a forum topic; like Telegram, its id is the id of its creation message."""
        chat = self.chats[chat_id]
        if not chat.is_forum:
            raise ValueError("topics exist in forum chats only")
        message = self._store(ChatMessage(chat_id, self._next_message_id(chat_id), False,
                                          "service", int(time.time())))
        message.thread_id = message.message_id
        chat.topics[message.message_id] = name
        await self._notify()
        return message.message_id

    def fail_next(self, method: str, *, retry_after: int | None = None, status: int = 400,
                  description: str | None = None) -> None:
        """Make the next call of `method` fail (queued: call again for more failures)."""
        if retry_after is not None:
            error = ApiError(429, f"Too Many Requests: retry after {retry_after}",
                             {"retry_after": retry_after})
        else:
            error = ApiError(status, description or "Bad Request: injected failure")
        self._failures[method.lower()].append(error)

    # --- injecting updates ---

    async def post(self, chat_id: int, text: str, *, user: FakeUser | int | None = None,
                   thread_id: int | None = None, anonymous_admin: bool = False,
                   reply_to: int | None = None, edited: bool = False) -> ChatMessage:
        """A user writes `text` in a chat; the bot receives it as an update.

        `anonymous_admin` sends it on behalf of the group (sender_chat = the chat, from =
        @GroupAnonymousBot). In a private chat, the chat id is the user's id."""
        chat = self.chats.get(chat_id)
        if chat is None:
            raise KeyError(f"no chat {chat_id}: add it first")
        if anonymous_admin:
            sender = self.users[ANONYMOUS_ADMIN_ID]
        elif isinstance(user, FakeUser):
            sender = user
        elif isinstance(user, int):
            sender = self.users.get(user) or self.add_user(user)
        elif chat.type == "private":
            sender = self.users.get(chat.id) or self.add_user(chat.id)
        else:
            raise ValueError("say who writes: user=... or anonymous_admin=True")
        if thread_id is not None and thread_id not in chat.topics:
            raise KeyError(f"no topic {thread_id} in chat {chat_id}")
        message = self._store(ChatMessage(
            chat_id, self._next_message_id(chat_id), False, "text", int(time.time()),
            user_id=sender.id, sender_chat_id=chat.id if anonymous_admin else None,
            thread_id=thread_id, is_topic_message=thread_id is not None, text=text,
            reply_to=reply_to if reply_to is not None else thread_id,
        ))
        key = "edited_message" if edited else "message"
        await self.inject_update({key: self.message_json(message)})
        return message

    async def inject_update(self, update: dict[str, Any]) -> int:
        update_id = next(self._update_ids)
        self._updates.append({"update_id": update_id, **update})
        self._last_update_id = update_id
        await self._notify()
        return update_id

    # --- looking at what happened (for tests) ---

    def bot_messages(self, chat_id: int | None = None, *,
                     include_deleted: bool = True) -> list[ChatMessage]:
        return [m for m in self.sent
                if (chat_id is None or m.chat_id == chat_id)
                and (include_deleted or not m.deleted)]

    def calls_of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method.lower() == method.lower()]

    def message(self, chat_id: int, message_id: int) -> ChatMessage:
        return self.messages[(chat_id, message_id)]

    def commands_for(self, scope: dict[str, Any] | None = None,
                     language_code: str = "") -> list[dict[str, str]] | None:
        return self.commands.get(self._scope_key(scope or {"type": "default"}, language_code))

    @property
    def all_updates_delivered(self) -> bool:
        return self._last_update_id in self._delivered_update_ids or not self._last_update_id

    async def wait_for(self, predicate: Callable[[], T], timeout: float = 5.0) -> T:
        """Wait until `predicate()` is truthy (re-checked on every change); return its value."""
        async with self._changed:
            try:
                return await asyncio.wait_for(self._changed.wait_for(predicate), timeout)
            except TimeoutError:
                raise AssertionError(
                    f"condition not met within {timeout} s; bot sent: {self.describe()}"
                ) from None

    async def wait_sent(self, count: int, chat_id: int | None = None,
                        timeout: float = 5.0) -> list[ChatMessage]:
        """Wait until the bot has sent at least `count` messages (to `chat_id`)."""
        await self.wait_for(lambda: len(self.bot_messages(chat_id)) >= count, timeout)
        return self.bot_messages(chat_id)

    def describe(self) -> str:
        lines = []
        for m in self.sent:
            body = m.text if m.kind == "text" else f"{m.kind} {m.caption!r}"
            lines.append(f"[{m.chat_id}/{m.thread_id}#{m.message_id}] {body}")
        return "\n  " + "\n  ".join(lines) if lines else "nothing"

    # --- HTTP ---

    async def _handle_method(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response(ApiError(401, "Unauthorized").payload(), status=401)
        name = request.match_info["method"].lower()
        handler = self._methods.get(name)
        if handler is None:
            return web.json_response(ApiError(404, "Not Found").payload(), status=404)
        try:
            params = await read_params(request)
            self.calls.append(Call(request.match_info["method"], dict(params.values),
                                   tuple(params.uploads)))
            await self._notify()  # a call has arrived (tests may look while it is answered)
            failures = self._failures.get(name)
            if failures:
                raise failures.popleft()
            if self.latency.get(name):  # a slow Telegram, for shutdown and crash tests
                await asyncio.sleep(self.latency[name])
            if self.drops[name] > 0:  # the connection dies before any answer
                self.drops[name] -= 1
                if request.transport is not None:
                    request.transport.abort()
                await self._notify()
                return web.Response(status=500)
            result = await handler(params)
        except ApiError as error:
            await self._notify()
            return web.json_response(error.payload(), status=error.status)
        await self._notify()
        return web.json_response({"ok": True, "result": result})

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return web.json_response(ApiError(401, "Unauthorized").payload(), status=401)
        path = request.match_info["path"]
        for record, data in self.files.values():
            if self._file_path(record) == path:
                return web.Response(body=data)
        return web.json_response(ApiError(404, "Not Found").payload(), status=404)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # --- helpers ---

    def _next_message_id(self, chat_id: int) -> int:
        return next(self._message_ids[chat_id])

    def _store(self, message: ChatMessage) -> ChatMessage:
        self.messages[(message.chat_id, message.message_id)] = message
        if message.from_bot:
            self.sent.append(message)
        return message

    def _chat(self, params: Params, name: str = "chat_id") -> FakeChat:
        raw = params.values.get(name)
        if raw in (None, ""):
            raise bad_request("Bad Request: chat_id is empty")
        if isinstance(raw, str) and raw.startswith("@"):
            for chat in self.chats.values():
                if chat.username and chat.username.lower() == raw[1:].lower():
                    return chat
            raise bad_request("Bad Request: chat not found")
        chat_id = params.int(name)
        chat = self.chats.get(chat_id)  # type: ignore[arg-type]
        if chat is None:
            raise bad_request("Bad Request: chat not found")
        return chat

    def _thread(self, chat: FakeChat, params: Params) -> int | None:
        thread_id = params.int("message_thread_id")
        if thread_id is None:
            return None
        if not chat.is_forum or thread_id not in chat.topics:
            raise bad_request("Bad Request: message thread not found")
        return thread_id

    def _reply(self, chat: FakeChat, params: Params) -> int | None:
        """Resolve reply_parameters (or the older reply_to_message_id)."""
        reply = params.json("reply_parameters") if params.has("reply_parameters") else None
        if reply is not None:
            if not isinstance(reply, dict) or "message_id" not in reply:
                raise bad_request("Bad Request: can't parse reply parameters JSON object")
            message_id = int(reply["message_id"])
            allow = bool(reply.get("allow_sending_without_reply"))
            if reply.get("chat_id") not in (None, chat.id, str(chat.id)):
                raise bad_request("Bad Request: replies to other chats are not supported here")
        elif params.has("reply_to_message_id"):
            message_id = params.int("reply_to_message_id")  # type: ignore[assignment]
            allow = params.bool("allow_sending_without_reply")
        else:
            return None
        target = self.messages.get((chat.id, message_id))
        if target is None or target.deleted:
            if allow:
                return None
            raise bad_request(REPLY_NOT_FOUND)
        return message_id

    def _check_text(self, text: str | None, parse_mode: str | None, *,
                    limit: int, empty_error: str | None, too_long: str) -> None:
        if not text:
            if empty_error:
                raise bad_request(empty_error)
            return
        if parse_mode:
            mode = parse_mode.lower()
            if mode == "markdownv2":
                try:
                    check_markdown_v2(text)
                except MarkdownError as error:
                    raise bad_request(f"Bad Request: can't parse entities: {error}") from None
            elif mode not in ("markdown", "html"):
                raise bad_request(f"Bad Request: unsupported parse_mode {parse_mode!r}")
        if utf16_len(text) > limit:
            raise bad_request(too_long)

    def _new_bot_message(self, chat: FakeChat, kind: str, method: str, *,
                         thread_id: int | None, reply_to: int | None) -> ChatMessage:
        if thread_id is None and reply_to is not None:
            thread_id = self.messages[(chat.id, reply_to)].thread_id if chat.is_forum else None
        return ChatMessage(chat.id, self._next_message_id(chat.id), True, kind,
                           int(time.time()), method=method, user_id=self.bot.id,
                           thread_id=thread_id, is_topic_message=thread_id is not None,
                           reply_to=reply_to)

    def message_json(self, message: ChatMessage, *, nested: bool = False) -> dict[str, Any]:
        chat = self.chats[message.chat_id]
        data: dict[str, Any] = {
            "message_id": message.message_id, "date": message.date, "chat": chat.to_api(),
        }
        if message.user_id is not None:
            user = self.bot if message.from_bot else self.users[message.user_id]
            data["from"] = user.to_api()
        if message.sender_chat_id is not None:
            data["sender_chat"] = self.chats[message.sender_chat_id].to_api()
        if message.thread_id is not None:
            data["message_thread_id"] = message.thread_id
        if message.is_topic_message:
            data["is_topic_message"] = True
        if message.kind == "service":
            data["forum_topic_created"] = {
                "name": chat.topics.get(message.message_id, "topic"), "icon_color": 7322096,
            }
        if message.text is not None:
            data["text"] = message.text
            command = COMMAND_RE.match(message.text)
            if command and not message.from_bot:
                data["entities"] = [{"type": "bot_command", "offset": 0,
                                     "length": utf16_len(command.group(0))}]
        if message.caption is not None:
            data["caption"] = message.caption
        if message.media is not None:
            data.update(self._media_json(message.media))
        if message.media_group_id:
            data["media_group_id"] = message.media_group_id
        if message.edit_date:
            data["edit_date"] = message.edit_date
        if message.reply_to is not None and not nested:
            target = self.messages.get((message.chat_id, message.reply_to))
            if target is not None and not target.deleted:
                data["reply_to_message"] = self.message_json(target, nested=True)
        return data

    def _media_json(self, media: MediaRecord) -> dict[str, Any]:
        unique = f"u{media.file_id}"
        width, height = media.width or 1080, media.height or 1920
        if media.kind == "photo":
            return {"photo": [
                {"file_id": media.file_id + "-s", "file_unique_id": unique + "s",
                 "width": max(1, width // 4), "height": max(1, height // 4)},
                {"file_id": media.file_id, "file_unique_id": unique, "width": width,
                 "height": height, "file_size": media.size},
            ]}
        return {"video": {"file_id": media.file_id, "file_unique_id": unique, "width": width,
                          "height": height, "duration": media.duration or 0,
                          "file_size": media.size, "mime_type": "video/mp4"}}

    @staticmethod
    def _file_path(record: MediaRecord) -> str:
        folder = "photos" if record.kind == "photo" else "videos"
        extension = {"jpeg": "jpg", "png": "png", "webp": "webp", "mp4": "mp4"}.get(
            record.content, "bin")
        return f"{folder}/file_{record.file_id}.{extension}"

    @staticmethod
    def _scope_key(scope: dict[str, Any], language_code: str) -> str:
        return json.dumps(scope, sort_keys=True) + "|" + (language_code or "")

    # --- media ---

    async def _media(self, kind: str, ref: Any, params: Params, *,
                     width: int | None = None, height: int | None = None,
                     duration: int | None = None) -> MediaRecord:
        """Resolve a photo/video parameter: `attach://name`, an uploaded part, a URL or a
        file_id. Checks limits and content like Telegram."""
        upload: Upload | None = None
        if isinstance(ref, str) and ref.startswith("attach://"):
            upload = params.uploads.get(ref.removeprefix("attach://"))
            if upload is None:
                raise bad_request("Bad Request: can't find attached file")
        if upload is not None:
            return self._record_upload(kind, upload, width, height, duration)
        if not isinstance(ref, str) or not ref:
            raise bad_request(f"Bad Request: there is no {kind} in the request")
        if ref.startswith(("http://", "https://")):
            return await self._record_url(kind, ref, width, height, duration)
        known = self.files.get(ref)
        if known is None or known[0].kind != kind:
            raise bad_request(URL_REFUSED)
        record = known[0]
        return MediaRecord(kind, "file_id", record.size, record.content, record.file_id,
                           width=record.width, height=record.height, duration=record.duration)

    def _record_upload(self, kind: str, upload: Upload, width: int | None, height: int | None,
                       duration: int | None) -> MediaRecord:
        size = len(upload.data)
        if size == 0:
            raise bad_request("Bad Request: file must be non-empty")
        if kind == "photo" and size > UPLOAD_PHOTO_LIMIT:
            raise bad_request(FILE_TOO_BIG)
        content = sniff(upload.data)
        if kind == "photo" and content not in IMAGE_CONTENT:
            raise bad_request("Bad Request: IMAGE_PROCESS_FAILED")
        return self._keep(MediaRecord(kind, "upload", size, content, self._new_file_id(),
                                      filename=upload.filename, width=width, height=height,
                                      duration=duration), upload.data)

    async def _record_url(self, kind: str, url: str, width: int | None, height: int | None,
                          duration: int | None) -> MediaRecord:
        self.fetched_urls.append(url)
        if self.refuse_urls:
            raise bad_request(URL_REFUSED)
        limit = URL_PHOTO_LIMIT if kind == "photo" else URL_OTHER_LIMIT
        assert self._http is not None
        data = bytearray()
        try:
            async with self._http.get(url) as response:
                if response.status >= 400:
                    raise bad_request(URL_FETCH_FAILED)
                if response.content_length is not None and response.content_length > limit:
                    raise bad_request(FILE_TOO_BIG)
                async for chunk in response.content.iter_chunked(256 * 1024):
                    data += chunk
                    if len(data) > limit:
                        raise bad_request(FILE_TOO_BIG)
        except (aiohttp.ClientError, TimeoutError):
            raise bad_request(URL_FETCH_FAILED) from None
        content = sniff(bytes(data[:16]))
        if (kind == "photo" and content not in IMAGE_CONTENT) or (
                kind == "video" and content != "mp4"):
            raise bad_request(URL_WRONG_TYPE)
        return self._keep(MediaRecord(kind, "url", len(data), content, self._new_file_id(),
                                      url=url, width=width, height=height, duration=duration),
                          bytes(data))

    def _new_file_id(self) -> str:
        return f"FILE{next(self._file_ids):06d}"

    def _keep(self, record: MediaRecord, data: bytes) -> MediaRecord:
        self.files[record.file_id] = (record, data)
        return record

    # --- methods (one `_m_<name>` per Bot API method) ---

    async def _m_getMe(self, params: Params) -> dict[str, Any]:
        return {**self.bot.to_api(), "can_join_groups": True,
                "can_read_all_group_messages": False, "supports_inline_queries": False}

    async def _m_deleteWebhook(self, params: Params) -> bool:
        if params.bool("drop_pending_updates"):
            self._updates.clear()
        return True

    async def _m_getUpdates(self, params: Params) -> list[dict[str, Any]]:
        offset = params.int("offset", 0) or 0
        limit = min(max(params.int("limit", 100) or 100, 1), 100)
        timeout = max(params.float("timeout", 0.0), 0.0)
        if offset > 0:  # confirms every update before it
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with self._changed:
            self._poll_generation += 1
            generation = self._poll_generation
            self._changed.notify_all()  # an older long poll is terminated (409), as on Telegram
            while True:
                if self._closing:
                    return []
                if generation != self._poll_generation:
                    raise ApiError(409, "Conflict: terminated by other getUpdates request; "
                                        "make sure that only one bot instance is running")
                pending = [u for u in self._updates if u["update_id"] >= offset][:limit]
                if pending:
                    self._delivered_update_ids.update(u["update_id"] for u in pending)
                    return pending
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return []
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), remaining)

    async def _m_setMyCommands(self, params: Params) -> bool:
        commands = params.json("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise bad_request("Bad Request: can't parse commands JSON object")
        for command in commands:
            if not isinstance(command, dict) or not BOT_COMMAND_RE.match(
                    str(command.get("command", ""))):
                raise bad_request("Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise bad_request("Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
        scope = params.json("scope") if params.has("scope") else {"type": "default"}
        if not isinstance(scope, dict) or "type" not in scope:
            raise bad_request("Bad Request: can't parse scope JSON object")
        key = self._scope_key(scope, params.str("language_code") or "")
        self.commands[key] = [{"command": c["command"], "description": c["description"]}
                              for c in commands]
        return True

    async def _m_getMyCommands(self, params: Params) -> list[dict[str, str]]:
        scope = params.json("scope") if params.has("scope") else {"type": "default"}
        return self.commands.get(self._scope_key(scope, params.str("language_code") or ""), [])

    async def _m_deleteMyCommands(self, params: Params) -> bool:
        scope = params.json("scope") if params.has("scope") else {"type": "default"}
        self.commands.pop(self._scope_key(scope, params.str("language_code") or ""), None)
        return True

    async def _m_getChat(self, params: Params) -> dict[str, Any]:
        chat = self._chat(params)
        return {**chat.to_api(), "accent_color_id": 0, "max_reaction_count": 11,
                "accepted_gift_types": {"unlimited_gifts": False, "limited_gifts": False,
                                        "unique_gifts": False, "premium_subscription": False,
                                        "gifts_from_channels": False}}

    async def _m_getChatMember(self, params: Params) -> dict[str, Any]:
        chat = self._chat(params)
        user_id = params.int("user_id")
        if user_id is None:
            raise bad_request("Bad Request: user_id is empty")
        if user_id == self.bot.id:
            status = "administrator" if chat.bot_can_delete and chat.type != "private" \
                else "member"
            user = self.bot
        else:
            user = self.users.get(user_id) or FakeUser(user_id, "User")
            status = chat.members.get(user_id, "member")
        return self._member_json(user, status, chat)

    @staticmethod
    def _member_json(user: FakeUser, status: str, chat: FakeChat) -> dict[str, Any]:
        data: dict[str, Any] = {"status": status, "user": user.to_api()}
        if status == "creator":
            data["is_anonymous"] = False
        elif status == "administrator":
            rights = ("can_manage_chat", "can_manage_video_chats", "can_restrict_members",
                      "can_promote_members", "can_change_info", "can_invite_users",
                      "can_post_stories", "can_edit_stories", "can_delete_stories")
            data.update({right: False for right in rights})
            data.update(can_be_edited=False, is_anonymous=False,
                        can_delete_messages=chat.bot_can_delete, can_manage_chat=True)
        elif status == "kicked":
            data["until_date"] = 0
        return data

    async def _m_sendChatAction(self, params: Params) -> bool:
        chat = self._chat(params)
        thread_id = self._thread(chat, params)
        action = params.str("action") or ""
        if action not in CHAT_ACTIONS:
            raise bad_request("Bad Request: wrong parameter action in request")
        self.chat_actions.append((chat.id, action, thread_id))
        return True

    async def _m_sendMessage(self, params: Params) -> dict[str, Any]:
        chat = self._chat(params)
        thread_id = self._thread(chat, params)
        text = params.str("text")
        parse_mode = params.str("parse_mode")
        self._check_text(text, parse_mode, limit=TEXT_MAX,
                         empty_error="Bad Request: message text is empty",
                         too_long="Bad Request: message is too long")
        reply_to = self._reply(chat, params)
        message = self._new_bot_message(chat, "text", "sendMessage", thread_id=thread_id,
                                        reply_to=reply_to)
        message.text, message.parse_mode = text, parse_mode
        return self.message_json(self._store(message))

    async def _send_single(self, kind: str, method: str, params: Params) -> dict[str, Any]:
        chat = self._chat(params)
        thread_id = self._thread(chat, params)
        caption = params.str("caption")
        parse_mode = params.str("parse_mode")
        self._check_text(caption, parse_mode, limit=CAPTION_MAX, empty_error=None,
                         too_long="Bad Request: message caption is too long")
        reply_to = self._reply(chat, params)
        media = await self._media(kind, params.values.get(kind) if kind not in params.uploads
                                  else f"attach://{kind}", params,
                                  width=params.int("width"), height=params.int("height"),
                                  duration=params.int("duration"))
        message = self._new_bot_message(chat, kind, method, thread_id=thread_id,
                                        reply_to=reply_to)
        message.caption, message.parse_mode, message.media = caption, parse_mode, media
        return self.message_json(self._store(message))

    async def _m_sendPhoto(self, params: Params) -> dict[str, Any]:
        return await self._send_single("photo", "sendPhoto", params)

    async def _m_sendVideo(self, params: Params) -> dict[str, Any]:
        return await self._send_single("video", "sendVideo", params)

    async def _m_sendMediaGroup(self, params: Params) -> list[dict[str, Any]]:
        chat = self._chat(params)
        thread_id = self._thread(chat, params)
        media = params.json("media")
        if not isinstance(media, list) or not media:
            raise bad_request("Bad Request: media to send are not specified")
        if len(media) > MEDIA_GROUP_MAX:
            raise bad_request("Bad Request: too much messages to send as an album")
        if len(media) < 2:
            raise bad_request("Bad Request: media group must include 2-10 items")
        kinds = [str(item.get("type")) if isinstance(item, dict) else "" for item in media]
        if any(k not in ("photo", "video", "document", "audio") for k in kinds):
            raise bad_request("Bad Request: can't parse InputMedia: media type is invalid")
        if len(set(kinds)) > 1 and not set(kinds) <= {"photo", "video"}:
            raise bad_request(f"Bad Request: {kinds[0]} can't be mixed with other media types")
        reply_to = self._reply(chat, params)
        records: list[tuple[dict[str, Any], MediaRecord]] = []
        for item in media:
            caption = item.get("caption")
            self._check_text(caption, item.get("parse_mode"), limit=CAPTION_MAX,
                             empty_error=None,
                             too_long="Bad Request: message caption is too long")
            record = await self._media(item["type"], item.get("media"), params,
                                       width=item.get("width"), height=item.get("height"),
                                       duration=item.get("duration"))
            records.append((item, record))
        group_id = f"{next(self._group_ids):019d}"
        result = []
        for item, record in records:
            message = self._new_bot_message(chat, record.kind, "sendMediaGroup",
                                            thread_id=thread_id, reply_to=reply_to)
            message.caption, message.parse_mode = item.get("caption"), item.get("parse_mode")
            message.media, message.media_group_id = record, group_id
            result.append(self.message_json(self._store(message)))
        return result

    async def _m_editMessageText(self, params: Params) -> dict[str, Any]:
        if params.has("inline_message_id"):
            raise bad_request("Bad Request: inline messages are not supported by this fake")
        chat = self._chat(params)
        message_id = params.int("message_id")
        message = self.messages.get((chat.id, message_id))  # type: ignore[arg-type]
        if message is None or message.deleted:
            raise bad_request("Bad Request: message to edit not found")
        if not message.from_bot or message.kind != "text":
            raise bad_request("Bad Request: message can't be edited")
        text, parse_mode = params.str("text"), params.str("parse_mode")
        self._check_text(text, parse_mode, limit=TEXT_MAX,
                         empty_error="Bad Request: message text is empty",
                         too_long="Bad Request: message is too long")
        if text == message.text and parse_mode == message.parse_mode:
            raise bad_request(NOT_MODIFIED)
        message.edits.append(message.text or "")
        message.text, message.parse_mode = text, parse_mode
        message.edit_date = int(time.time())
        return self.message_json(message)

    async def _m_deleteMessage(self, params: Params) -> bool:
        chat = self._chat(params)
        message = self.messages.get((chat.id, params.int("message_id")))  # type: ignore[arg-type]
        if message is None or message.deleted:
            raise bad_request("Bad Request: message to delete not found")
        if message.kind == "service" or (
                not message.from_bot and chat.type != "private" and not chat.bot_can_delete):
            raise bad_request(CANT_DELETE)
        message.deleted = True
        return True

    async def _m_getFile(self, params: Params) -> dict[str, Any]:
        known = self.files.get(params.str("file_id") or "")
        if known is None:
            raise bad_request("Bad Request: invalid file_id")
        record = known[0]
        return {"file_id": record.file_id, "file_unique_id": f"u{record.file_id}",
                "file_size": record.size, "file_path": self._file_path(record)}


def texts(messages: Iterable[ChatMessage]) -> list[str]:
    """The visible text of messages (text or caption), for compact assertions."""
    return [(m.text if m.kind == "text" else m.caption) or "" for m in messages]
