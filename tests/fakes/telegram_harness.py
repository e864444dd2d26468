"""The whole bot on Telegram, for tests: the fake Bot API, the real `App` with its Telegram
adapter long-polling that fake, and the stories emulator as the API.

    async with TelegramWorld(tmp_path, emulator) as world:
        command = await world.command(GROUP, "/stories natgeo", user=MEMBER)
        await world.settle()
        world.fake.bot_messages(GROUP)

`command()` waits for the bot's first answer (any message it sends to that chat after the
command), `settle()` for the core to have nothing pending. No sleeps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.app import App
from bot.emulator import Emulator
from tests.conftest import API_KEY, KNOWN_SECRETS, assert_no_secret_in_file, make_settings
from tests.fakes.telegram_api import ChatMessage, FakeTelegram, FakeUser

GROUP = -1001000000001
FORUM = -1001000000002
OWNER, ADMIN, MEMBER, BOT_OWNER, PRIVATE_USER = 11, 12, 13, 99, 21


class TelegramWorld:
    def __init__(self, tmp_path: Path, emulator: Emulator, **settings: Any) -> None:
        self.tmp_path = tmp_path
        self.emulator = emulator
        self.settings_overrides = settings
        self.fake = FakeTelegram()
        self.app: App | None = None
        for user_id, name in ((OWNER, "Olivia"), (ADMIN, "Adam"), (MEMBER, "Mia"),
                              (BOT_OWNER, "Operator"), (PRIVATE_USER, "Pat")):
            self.fake.add_user(user_id, name, name.lower())
        self.fake.add_chat(GROUP, title="Stories fans",
                           members={OWNER: "creator", ADMIN: "administrator"})
        self.fake.add_chat(FORUM, title="Forum", is_forum=True,
                           members={OWNER: "creator", ADMIN: "administrator"})
        self.fake.add_private_chat(self.fake.users[PRIVATE_USER])

    @property
    def database_path(self) -> Path:
        return self.tmp_path / "bot.sqlite3"

    async def __aenter__(self) -> TelegramWorld:
        await self.fake.start()
        await self.start_app()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start_app(self) -> App:
        settings = make_settings(self.tmp_path, self.emulator,
                                 telegram_bot_token=self.fake.token,
                                 telegram_api_url=self.fake.url,
                                 bot_owner_ids=f"telegram:{BOT_OWNER}",
                                 **self.settings_overrides)
        # Quick retries of a failed delivery: tests must not wait out production backoffs.
        self.app = App(settings, public_url="auto", service_options={"delivery_backoff": 0.01})
        await self.app.start()
        return self.app

    async def stop_app(self) -> None:
        if self.app is not None and self.app._started:
            await self.app.stop(timeout=2)

    async def close(self) -> None:
        try:
            await self.stop_app()
        finally:
            await self.fake.close()
        # No secret in the database file, nor in anything the bot posted.
        KNOWN_SECRETS.add(self.fake.token)
        assert_no_secret_in_file(self.database_path)
        for message in self.fake.messages.values():
            if message.from_bot:
                text = f"{message.text or ''} {message.caption or ''} {message.edits}"
                assert not any(s in text for s in KNOWN_SECRETS), message.message_id

    @property
    def adapter(self) -> Any:
        assert self.app is not None
        return self.app.adapters[0]

    async def command(self, chat_id: int, text: str, *, user: FakeUser | int | None = None,
                      thread_id: int | None = None, anonymous_admin: bool = False,
                      timeout: float = 5.0) -> ChatMessage:
        """Post a command and wait for the bot's first answer to it."""
        message = await self.fake.post(chat_id, text, user=user, thread_id=thread_id,
                                       anonymous_admin=anonymous_admin)
        await self.fake.wait_for(lambda: self.answers_to(message), timeout)
        return message

    def answers_to(self, command: ChatMessage) -> list[ChatMessage]:
        """What the bot sent to the command's chat after it."""
        return [m for m in self.fake.bot_messages(command.chat_id)
                if m.message_id > command.message_id]

    async def settle(self, timeout: float = 10.0) -> None:
        assert self.app is not None
        await self.app.wait_idle(timeout)

    async def set_key(self, chat_id: int = GROUP, key: str = API_KEY) -> None:
        user = None if chat_id > 0 else ADMIN
        await self.command(chat_id, f"/setkey {key}", user=user)
