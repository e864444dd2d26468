"""Shared fixtures: the API emulator, and a factory for the whole app on a temporary database.

Everything listens on 127.0.0.1 with OS-chosen ports, and is closed at the end of each test.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.app import App
from bot.emulator import Emulator, EmulatorConfig
from bot.models import ChatRef, Origin
from bot.settings import Settings
from tests.fakes.recording_adapter import RecordingAdapter

os.environ["NO_PROXY"] = "127.0.0.1,localhost"
os.environ["no_proxy"] = "127.0.0.1,localhost"
for _name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
    os.environ.pop(_name, None)

API_KEY = "sk_live_testkey0123456789abcdef9f2c"
SECRET = "test-secret-key-for-fernet"


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    emu = Emulator(EmulatorConfig(keys={API_KEY: 1000, "sk_live_otherkey987654321": 1000},
                                  webhook_delay=0.01))
    await emu.start()
    try:
        yield emu
    finally:
        await emu.stop()


def make_settings(tmp_path: Path, emulator: Emulator, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "eternalsocial_api_url": emulator.base_url,
        "database_path": tmp_path / "bot.sqlite3",
        "secret_key": SECRET,
        "callback_host": "127.0.0.1",
        "callback_port": 0,
        "request_timeout": 10,
        "user_cooldown": 0,
        "telegram_bot_token": None,
        "discord_bot_token": None,
        "default_api_key": None,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


AppFactory = Callable[..., Awaitable[tuple[App, RecordingAdapter]]]


@pytest.fixture
async def make_app(tmp_path: Path, emulator: Emulator) -> AsyncIterator[AppFactory]:
    """`app, chat = await make_app(**settings)`: the real app with a recording adapter."""
    started: list[App] = []

    async def factory(*, public_url: str | None = "auto", adapter: RecordingAdapter | None = None,
                      service_options: dict[str, Any] | None = None,
                      **overrides: Any) -> tuple[App, RecordingAdapter]:
        recording = adapter or RecordingAdapter()
        settings = make_settings(tmp_path, emulator, **overrides)
        app = App(settings, adapters=[lambda *_: recording], public_url=public_url,
                  service_options=service_options)
        await app.start()
        started.append(app)
        return app, recording

    yield factory
    for app in started:
        if app._started:
            await app.stop(timeout=2)


def origin(chat_id: str = "1", user_id: str = "100", *, admin: bool = False,
           platform: str = "test") -> Origin:
    return Origin(chat=ChatRef(platform, chat_id), user_id=user_id, user_name=f"user{user_id}",
                  is_admin=admin)
