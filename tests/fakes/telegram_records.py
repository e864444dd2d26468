"""What the fake Telegram Bot API keeps and speaks: its limits and error texts, the chats,
users and messages it records, and the decoding of request bodies.

Split from `telegram_api.py` (the server) so that tests can read the records without wading
through the HTTP handling. Error texts are Telegram's own wording.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

MB = 1024 * 1024
URL_PHOTO_LIMIT = 5 * MB
URL_OTHER_LIMIT = 20 * MB
UPLOAD_PHOTO_LIMIT = 10 * MB
UPLOAD_OTHER_LIMIT = 50 * MB
MEDIA_GROUP_MAX = 10
TEXT_MAX = 4096
CAPTION_MAX = 1024

ANONYMOUS_ADMIN_ID = 1087968824  # @GroupAnonymousBot, the "from" of anonymous admins' messages
DEFAULT_TOKEN = "123456789:TEST-fake-telegram-token"

CHAT_ACTIONS = frozenset({
    "typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice",
    "upload_document", "choose_sticker", "find_location", "record_video_note",
    "upload_video_note",
})

URL_REFUSED = "Bad Request: wrong file identifier/HTTP URL specified"
URL_FETCH_FAILED = "Bad Request: failed to get HTTP URL content"
URL_WRONG_TYPE = "Bad Request: wrong type of the web page content"
FILE_TOO_BIG = "Bad Request: file is too big"
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
REPLY_NOT_FOUND = "Bad Request: message to be replied not found"
CANT_DELETE = "Bad Request: message can't be deleted"


class ApiError(Exception):
    """An error answer of the Bot API (`{"ok": false, ...}`)."""

    def __init__(self, status: int, description: str,
                 parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ok": False, "error_code": self.status, "description": self.description,
        }
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def bad_request(description: str) -> ApiError:
    return ApiError(400, description)


# --- the world the fake keeps -------------------------------------------------------------


@dataclass
class FakeUser:
    id: int
    first_name: str
    username: str | None = None
    is_bot: bool = False

    def to_api(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "is_bot": self.is_bot,
                                "first_name": self.first_name}
        if self.username:
            data["username"] = self.username
        return data


@dataclass
class FakeChat:
    """A chat the bot is in. `members` maps user id → status (default "member");
    `bot_can_delete` is the bot's right to delete other people's messages (groups)."""

    id: int
    type: str  # private | group | supergroup | channel
    title: str | None = None
    username: str | None = None
    is_forum: bool = False
    bot_can_delete: bool = True
    members: dict[int, str] = field(default_factory=dict)
    topics: dict[int, str] = field(default_factory=dict)
    first_name: str | None = None

    def to_api(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.type == "private":
            data["first_name"] = self.first_name or "User"
        else:
            data["title"] = self.title or f"Chat {self.id}"
        if self.username:
            data["username"] = self.username
        if self.is_forum:
            data["is_forum"] = True
        return data


@dataclass
class MediaRecord:
    """One photo or video as the fake received it."""

    kind: str  # photo | video
    source: str  # url | upload | file_id
    size: int
    content: str  # jpeg | png | webp | mp4 | unknown (sniffed from the bytes)
    file_id: str
    url: str | None = None
    filename: str | None = None
    width: int | None = None
    height: int | None = None
    duration: int | None = None


@dataclass
class ChatMessage:
    """A message in a chat: injected by a test (`from_bot=False`) or sent by the bot."""

    chat_id: int
    message_id: int
    from_bot: bool
    kind: str  # text | photo | video | service
    date: int
    method: str | None = None
    user_id: int | None = None
    sender_chat_id: int | None = None
    thread_id: int | None = None
    is_topic_message: bool = False
    text: str | None = None
    caption: str | None = None
    parse_mode: str | None = None
    media: MediaRecord | None = None
    media_group_id: str | None = None
    reply_to: int | None = None
    deleted: bool = False
    edits: list[str] = field(default_factory=list)
    edit_date: int | None = None


@dataclass(frozen=True)
class Call:
    """One API call as received (parameters decoded; uploads replaced by their part names)."""

    method: str
    params: dict[str, Any]
    uploads: tuple[str, ...] = ()


@dataclass
class Upload:
    name: str
    filename: str | None
    data: bytes


# --- request parameters --------------------------------------------------------------------


class Params:
    """Parameters from a query string, JSON, a form or multipart fields.

    python-telegram-bot sends every value as a string (objects JSON-encoded) in forms; other
    clients send typed JSON. The accessors accept both, and answer 400 like Telegram on junk.
    """

    def __init__(self, values: dict[str, Any], uploads: dict[str, Upload]) -> None:
        self.values = values
        self.uploads = uploads

    def has(self, name: str) -> bool:
        return self.values.get(name) not in (None, "")

    def str(self, name: str, default: str | None = None) -> str | None:
        value = self.values.get(name)
        if value is None:
            return default
        return value if isinstance(value, str) else json.dumps(value)

    def int(self, name: str, default: int | None = None) -> int | None:
        value = self.values.get(name)
        if value in (None, ""):
            return default
        if isinstance(value, bool):
            raise bad_request(f"Bad Request: invalid {name} specified")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise bad_request(f"Bad Request: invalid {name} specified") from None

    def float(self, name: str, default: float) -> float:
        value = self.values.get(name)
        if value in (None, ""):
            return default
        try:
            return float(value)
        except (TypeError, ValueError):
            raise bad_request(f"Bad Request: invalid {name} specified") from None

    def bool(self, name: str) -> bool:
        value = self.values.get(name)
        if isinstance(value, str):
            return value.strip().lower() in ("true", "1")
        return bool(value)

    def json(self, name: str) -> Any:
        value = self.values.get(name)
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                raise bad_request(f"Bad Request: can't parse {name} JSON object") from None
        return value


async def read_params(request: web.Request) -> Params:
    values: dict[str, Any] = dict(request.query)
    uploads: dict[str, Upload] = {}
    ctype = request.content_type
    if ctype == "application/json":
        try:
            body = await request.json()
        except ValueError:
            raise bad_request("Bad Request: can't parse JSON request body") from None
        if isinstance(body, dict):
            values.update(body)
    elif ctype == "application/x-www-form-urlencoded":
        values.update((await request.post()).items())
    elif ctype == "multipart/form-data":
        reader = await request.multipart()
        too_large = False
        async for part in reader:
            if not isinstance(part, aiohttp.BodyPartReader) or part.name is None:
                continue
            if part.filename is None:
                values[part.name] = await part.text()
                continue
            data = bytearray()
            while chunk := await part.read_chunk(256 * 1024):
                if too_large or len(data) + len(chunk) > UPLOAD_OTHER_LIMIT:
                    too_large = True  # keep reading, so the client gets a clean answer
                    continue
                data += chunk
            uploads[part.name] = Upload(part.name, part.filename, bytes(data))
        if too_large:
            raise ApiError(413, "Request Entity Too Large")
    return Params(values, uploads)


def sniff(data: bytes) -> str:
    """The content kind from magic bytes: what Telegram looks at, not the file name."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[4:8] == b"ftyp":
        return "mp4"
    return "unknown"


IMAGE_CONTENT = frozenset({"jpeg", "png", "webp"})
COMMAND_RE = re.compile(r"^/[A-Za-z0-9_]{1,32}(@[A-Za-z0-9_]+)?")
BOT_COMMAND_RE = re.compile(r"^[a-z0-9_]{1,32}$")


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2
