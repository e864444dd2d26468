"""Spending caps: when a chat's caps refuse a request, and when to warn that one is near.

Credits counted are those the API reported (`creditsCharged`). A request still in flight may
yet be charged, so it counts as one credit when deciding whether a new one fits.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.errors import InvalidInput
from bot.messages import duration_text
from bot.store import Usage

WARN_AT = 0.8


def next_day(now: datetime) -> datetime:
    now = now.astimezone(UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)


def next_month(now: datetime) -> datetime:
    now = now.astimezone(UTC)
    first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first + timedelta(days=32)).replace(day=1)


def _reset_text(reset: datetime, now: datetime) -> str:
    return f"{reset:%Y-%m-%d %H:%M} UTC (in {duration_text((reset - now).total_seconds())})"


def cap_refusal(usage: Usage, *, in_flight: int, now: datetime) -> str | None:
    """The refusal text when a cap leaves no room for one more request, else None."""
    if usage.daily_cap is not None and usage.today.credits + in_flight + 1 > usage.daily_cap:
        return (f"This chat has used its daily cap of {usage.daily_cap} credits"
                f"{' (counting requests in progress)' if in_flight else ''}. "
                f"It resets at {_reset_text(next_day(now), now)}.")
    if usage.monthly_cap is not None and usage.month.credits + in_flight + 1 > usage.monthly_cap:
        return (f"This chat has used its monthly cap of {usage.monthly_cap} credits"
                f"{' (counting requests in progress)' if in_flight else ''}. "
                f"It resets at {_reset_text(next_month(now), now)}.")
    return None


def cap_warnings(usage: Usage, *, now: datetime, daily_warned_on: str | None,
                 monthly_warned_on: str | None) -> list[tuple[str, str | None, str | None]]:
    """Warnings due now: (text, day marker, month marker), each given once per period."""
    due: list[tuple[str, str | None, str | None]] = []
    day, month = f"{now:%Y-%m-%d}", f"{now:%Y-%m}"
    if (usage.daily_cap and daily_warned_on != day
            and usage.today.credits >= WARN_AT * usage.daily_cap):
        due.append((f"Heads-up: this chat has used {usage.today.credits} of its "
                    f"{usage.daily_cap} daily credits.", day, None))
    if (usage.monthly_cap and monthly_warned_on != month
            and usage.month.credits >= WARN_AT * usage.monthly_cap):
        due.append((f"Heads-up: this chat has used {usage.month.credits} of its "
                    f"{usage.monthly_cap} monthly credits.", None, month))
    return due


def parse_limits(argument: str) -> dict[str, int | None]:
    """`daily 50 monthly 1000` → the caps to change; `off` clears both; `daily off` one.

    Caps not named are left as they are.
    """
    words = argument.lower().replace("=", " ").split()
    if words == ["off"] or words == ["none"]:
        return {"daily": None, "monthly": None}
    if not words or len(words) % 2:
        raise InvalidInput("Usage: /limits daily <credits> monthly <credits> (or /limits off)")
    caps: dict[str, int | None] = {}
    for name, value in zip(words[::2], words[1::2], strict=True):
        if name not in ("daily", "monthly"):
            raise InvalidInput(f"Unknown cap {name[:20]!r}: use daily or monthly.")
        if value in ("off", "none"):
            caps[name] = None
        elif value.isdigit() and len(value) < 10:
            caps[name] = int(value)
        else:
            raise InvalidInput(f"The {name} cap must be a whole number of credits, or off.")
    return caps
