"""Shared fixtures: the API emulator, and a factory for the whole app on a temporary database.

Everything listens on 127.0.0.1 with OS-chosen ports, and is closed at the end of each test.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

from bot.app import App
from bot.emulator import Emulator, EmulatorConfig
from bot.models import ChatRef, Origin
from bot.settings import Settings
from tests.fakes.recording_adapter import RecordingAdapter
from tests.fakes.settings import local_settings

# Property tests explore the same examples on every run (deterministic CI); run them with
# HYPOTHESIS_PROFILE=explore to search afresh.
hypothesis_settings.register_profile("repeatable", derandomize=True, database=None)
hypothesis_settings.register_profile("explore", max_examples=2000)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

os.environ["NO_PROXY"] = "127.0.0.1,localhost"
os.environ["no_proxy"] = "127.0.0.1,localhost"
for _name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
    os.environ.pop(_name, None)

API_KEY = "sk_live_testkey0123456789abcdef9f2c"
OTHER_KEY = "sk_live_otherkey987654321"
SECRET = "test-secret-key-for-fernet"

# Every secret the suite uses. No log line, exception text or database file may contain one;
# tests that introduce a secret (a bot token) add it here.
KNOWN_SECRETS: set[str] = {API_KEY, OTHER_KEY, SECRET}


class _CapturingHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += " " + logging.Formatter().formatException(record.exc_info)
        self.lines.append(text)


@pytest.fixture(autouse=True)
def no_secret_in_logs() -> Iterator[_CapturingHandler]:
    """Log as in production (INFO, our own code at DEBUG, noisy libraries quietened, no
    redaction) and fail the test if any secret appears in a log line or exception text."""
    from bot.logs import quiet_noisy_loggers

    root = logging.getLogger()
    handler = _CapturingHandler()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    ours = [logging.getLogger(name) for name in ("bot", "adapters", "storage")]
    for logger in ours:
        logger.setLevel(logging.DEBUG)
    quiet_noisy_loggers()
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
        for logger in ours:
            logger.setLevel(logging.NOTSET)
    leaks = [(secret[:6], line[:200]) for line in handler.lines for secret in KNOWN_SECRETS
             if secret in line]
    assert not leaks, f"secrets in logs: {leaks}"


def db_file_bytes(path: Path) -> bytes:
    """A SQLite database as stored on disk: the file and its WAL side files."""
    data = b""
    for suffix in ("", "-wal", "-shm"):
        candidate = Path(str(path) + suffix)
        if candidate.exists():
            data += candidate.read_bytes()
    return data


def assert_no_secret_in_file(path: Path) -> None:
    data = db_file_bytes(path)
    leaks = [secret[:6] for secret in KNOWN_SECRETS if secret.encode() in data]
    assert not leaks, f"secrets in {path.name}: {leaks}"


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    emu = Emulator(EmulatorConfig(keys={API_KEY: 1000, OTHER_KEY: 1000},
                                  webhook_delay=0.01))
    await emu.start()
    try:
        yield emu
    finally:
        await emu.stop()


def make_settings(tmp_path: Path, emulator: Emulator, **overrides: Any) -> Settings:
    return local_settings(tmp_path, api_url=emulator.base_url, secret=SECRET, **overrides)


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
        assert_no_secret_in_file(app.settings.database_path)
        for shown in (app.service.adapters.values()):
            for line in getattr(shown, "texts", lambda: [])():
                assert not any(secret in line for secret in KNOWN_SECRETS), line


def origin(chat_id: str = "1", user_id: str = "100", *, admin: bool = False,
           platform: str = "test") -> Origin:
    return Origin(chat=ChatRef(platform, chat_id), user_id=user_id, user_name=f"user{user_id}",
                  is_admin=admin)
