"""How an emulator behaves: keys, limits, costs, webhook timing and the faults it plays.

One mutable dataclass, so that a test can change a knob on a running emulator
(`emulator.config.webhook_delay = 2`) and the next request sees it: every value is read at the
moment it is used, never copied at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

MiB = 1024 * 1024
DAY = 86400.0


def _default_keys() -> dict[str, int]:
    return {"demo-key": 1000}


@dataclass
class EmulatorConfig:
    """Everything an emulator can be told. Defaults match the documented API."""

    # API key -> starting credit balance.
    keys: dict[str, int] = field(default_factory=_default_keys)

    # Credits. Failures ("User not found", "This account is private") cost nothing: their body
    # has no `creditsCharged`, so a client could not account for a charge anyway. A success
    # with no stories is still a success and costs `cost_when_empty` (None: the full cost).
    cost_per_request: int = 1
    cost_when_empty: int | None = None

    # Rate limits per key, as documented. "sliding" counts the last 60 s / 1 h / 24 h;
    # "fixed" counts since the start of the current minute / hour / day (UTC).
    rate_per_minute: int = 60
    rate_per_hour: int = 1000
    rate_per_day: int = 10000
    rate_window: Literal["sliding", "fixed"] = "sliding"

    # Webhook mode: seconds between "processing" and the first POST of the result, number of
    # attempts in all, first backoff (doubled after each failed attempt), per-attempt timeout.
    webhook_delay: float = 0.05
    webhook_attempts: int = 5
    webhook_backoff: float = 0.05
    webhook_timeout: float = 5.0
    duplicate_callbacks: bool = False  # POST every successfully delivered result a second time
    callback_before_response: bool = False  # deliver the result before answering "processing"
    drop_callbacks: bool = False  # accept webhook requests but never call back

    # Media. Signed URLs expire `media_url_ttl` seconds after the payload that carries them
    # was produced (Instagram's last a few days); an expired URL answers 403 when enforced.
    big_video_bytes: int = 12 * MiB
    media_url_ttl: float = 4 * DAY
    enforce_media_expiry: bool = True
    # Secret of the media URL signatures; None draws a random one per emulator.
    media_secret: str | None = None
    # Largest padded file the media server will produce on request (safety net).
    max_padded_bytes: int = 2048 * MiB
