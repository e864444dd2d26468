"""A local stand-in of the eternalsocial.dev stories API, for development, `stories-bot demo`
and every end-to-end test.

It answers `POST /api/instagram/stories` like the real service (Bearer keys with credit
balances, rate limits, the documented success / processing / failure / 401 / 402 / 429 shapes,
webhook callbacks with retries) with real-looking Instagram payloads, and serves the stories'
media itself behind Instagram-like signed URLs. See `server.Emulator` for the control API.
"""

from __future__ import annotations

from bot.emulator.accounts import AccountSpec, ItemSpec, builtin_accounts
from bot.emulator.cdn import ASSETS, PHOTOS, VIDEOS
from bot.emulator.config import EmulatorConfig
from bot.emulator.records import (
    CallbackAttempt,
    CallbackDelivery,
    RequestRecord,
    key_fingerprint,
)
from bot.emulator.server import STORIES_PATH, Emulator, serve

__all__ = [
    "ASSETS",
    "PHOTOS",
    "STORIES_PATH",
    "VIDEOS",
    "AccountSpec",
    "CallbackAttempt",
    "CallbackDelivery",
    "Emulator",
    "EmulatorConfig",
    "ItemSpec",
    "RequestRecord",
    "builtin_accounts",
    "key_fingerprint",
    "serve",
]
