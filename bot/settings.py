"""Settings, read once from the environment and `.env`, in this one place.

Every other module receives what it needs from the composition root. Secrets are `SecretStr`
so that a stray `repr()` or log line shows `**********`. A bad value stops start-up with one
line naming the variable (`SettingsError`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import (
    AnyHttpUrl,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class SettingsError(Exception):
    """A configuration value is invalid; the message names the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False,
        hide_input_in_errors=True,
    )

    eternalsocial_api_url: AnyHttpUrl = AnyHttpUrl("https://api.eternalsocial.dev")
    default_api_key: SecretStr | None = None
    public_url: AnyHttpUrl | None = None
    callback_host: str = "127.0.0.1"
    callback_port: int = Field(8080, ge=0, le=65535)
    callback_max_body: int = Field(8 * 1024 * 1024, gt=0)
    database_path: Path = Path("./data/stories-bot.sqlite3")
    secret_key: SecretStr | None = None
    request_timeout: float = Field(300, gt=0)
    api_timeout: float = Field(30, gt=0)
    bot_owner_ids: Annotated[frozenset[str], NoDecode] = frozenset()
    log_level: str = "INFO"

    telegram_bot_token: SecretStr | None = None
    telegram_api_url: AnyHttpUrl = AnyHttpUrl("https://api.telegram.org")
    telegram_local_bot_api: bool = False

    discord_bot_token: SecretStr | None = None
    discord_api_url: AnyHttpUrl | None = None
    discord_gateway_url: str | None = None
    discord_dev_guild_id: int | None = None

    # Spending protection (issue 5 builds on these).
    cache_ttl: float = Field(300, ge=0)
    user_cooldown: float = Field(10, ge=0)
    max_in_flight_per_chat: int = Field(3, ge=1)

    @field_validator("bot_owner_ids", mode="before")
    @classmethod
    def _split_owner_ids(cls, value: object) -> object:
        if isinstance(value, str):
            items = [part.strip() for part in value.split(",") if part.strip()]
            for item in items:
                platform, sep, ident = item.partition(":")
                if not sep or not platform or not ident:
                    raise ValueError(f"expected platform:id entries, got {item!r}")
            return frozenset(items)
        return value

    @field_validator(
        "default_api_key", "secret_key", "telegram_bot_token", "discord_bot_token", mode="before"
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("public_url", "discord_api_url", "discord_gateway_url", "discord_dev_guild_id",
                     mode="before")
    @classmethod
    def _blank_url_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def api_url(self) -> str:
        return str(self.eternalsocial_api_url).rstrip("/")

    @property
    def callback_base(self) -> str | None:
        """Root of callback URLs, or None for sync mode."""
        return str(self.public_url).rstrip("/") if self.public_url else None


def load_settings(**overrides: object) -> Settings:
    """Read the settings once; turn a validation error into one clear line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]).upper() if first.get("loc") else "settings"
        raise SettingsError(f"invalid setting {name}: {first['msg']}") from None
