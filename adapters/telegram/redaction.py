"""Keep secrets out of the logs of the libraries the adapter drives.

python-telegram-bot logs every update it fetches at DEBUG — a `/setkey sk_live_…` message with
it — and HTTP clients may log request URLs (httpx does at INFO), and Bot API URLs carry the token
(`/bot<token>/sendMessage`). A filter on those loggers rewrites such records before any handler
sees them: the token becomes `<bot-token>`, a /setkey argument `<redacted>`.
"""

from __future__ import annotations

import logging
import re

# The loggers that format updates or request URLs (a logger's filters only see records
# created on that very logger, so each is named).
LOGGERS = (
    "httpx", "aiohttp.client", "telegram.Bot", "telegram.ext.ExtBot", "telegram.ext.Application",
    "telegram.ext.Updater", "telegram.ext.BaseUpdateProcessor",
)
_SETKEY = re.compile(r"(/setkey(?:@\w+)?\s+)[^\s'\"\\]+", re.IGNORECASE)


class SecretFilter(logging.Filter):
    def __init__(self) -> None:
        super().__init__("stories-bot-secrets")
        self._tokens: set[str] = set()

    def add_token(self, token: str) -> None:
        self._tokens.add(token)

    def redact(self, text: str) -> str:
        for token in self._tokens:
            text = text.replace(token, "<bot-token>")
        return _SETKEY.sub(r"\1<redacted>", text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record is the logging module's problem, not ours
            return True
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_FILTER = SecretFilter()


def protect(token: str) -> None:
    """Redact `token` and /setkey arguments from the libraries' log records (idempotent)."""
    _FILTER.add_token(token)
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
