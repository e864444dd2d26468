"""Settings for a bot that runs entirely on this machine: for the tests and the benchmarks.

A temporary database, an OS-chosen callback port, no cooldown, no chat platform, and no
`.env` read (an operator's file must not leak into a test).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.settings import Settings


def local_settings(workdir: Path, *, api_url: str, secret: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "eternalsocial_api_url": api_url,
        "database_path": workdir / "bot.sqlite3",
        "secret_key": secret,
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
