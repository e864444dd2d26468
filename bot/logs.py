"""Logging set-up: one line per event on stderr, and no secret in any of them.

Our own code never logs a key, a bot token or a callback token. Some libraries do at INFO or
DEBUG (httpx logs every request URL, and Telegram's URLs carry the bot token), so those are
quietened, and a redacting formatter masks anything shaped like a secret as a last resort.
"""

from __future__ import annotations

import logging
import re
import sys

NOISY_LOGGERS = ("httpx", "httpcore", "telegram.ext.Updater", "telegram.ext.ExtBot",
                 "telegram.ext.Application", "telegram.Bot",
                 "discord.gateway", "discord.http", "aiohttp.access")

_PATTERNS = (
    re.compile(r"\b(\d{6,12}):[A-Za-z0-9_-]{30,}"),  # Telegram bot token
    re.compile(r"(/bot)\d{6,12}:[A-Za-z0-9_-]{30,}"),
    re.compile(r"\b(sk_(?:live|test)_)[A-Za-z0-9_]{6,}"),  # API keys
    re.compile(r"(Bearer )[A-Za-z0-9._~+/-]{8,}=*"),
    re.compile(r"(/callbacks/)[A-Za-z0-9_-]{16,}"),
    re.compile(r"(/webhooks/\d+/)[A-Za-z0-9_.-]{20,}"),  # Discord interaction tokens
)


def redact(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + "***", text)
    return text


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def quiet_noisy_loggers() -> None:
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    quiet_noisy_loggers()
