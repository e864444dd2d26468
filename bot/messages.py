"""The sentences chats see, in one place so every platform says the same thing.

Texts are plain (no markup): adapters that need escaping (Telegram MarkdownV2) do it themselves.
"""

from __future__ import annotations

from datetime import UTC, datetime

from bot.models import MediaKind, Profile, StoryItem


def mask_key(key: str) -> str:
    """`sk_live_abcdef…9f2c` style: enough to recognise a key, never enough to use it."""
    key = key.strip()
    if len(key) <= 8:
        return "…" + key[-2:] if len(key) > 4 else "…"
    prefix = key[:8] if key.startswith(("sk_live_", "sk_test_")) else key[:3]
    return f"{prefix}…{key[-4:]}"


def set_key_command(platform: str) -> str:
    return "/apikey set" if platform == "discord" else "/setkey <key>"


def no_key(platform: str) -> str:
    return (f"This chat has no API key yet. A chat admin can set one with "
            f"{set_key_command(platform)}. Keys come from https://eternalsocial.dev.")


def invalid_key(platform: str) -> str:
    return ("The stories API rejected this chat's API key. A chat admin can set a new one "
            f"with {set_key_command(platform)}.")


def human_size(size: float) -> str:
    """`10 MB`, `19.5 KB`, `2 GB` (powers of 1024, as the platforms count)."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            if unit == "bytes":
                return f"{int(size)} bytes"
            return f"{size:.1f} {unit}".replace(".0 ", " ")
        size /= 1024
    raise AssertionError("unreachable")


def ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        minutes = seconds // 60
        return f"{minutes} min ago"
    if seconds < 86400:
        hours = seconds // 3600
        return f"{hours} h ago"
    return f"{seconds // 86400} d ago"


def duration_text(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def fetching(username: str) -> str:
    return f"Fetching the stories of @{username}…"


def joined(username: str) -> str:
    return f"Fetching the stories of @{username}… (already being fetched, joining that request)"


def no_stories(profile: Profile) -> str:
    return f"@{profile.username} has no active stories right now."


def delivered(profile: Profile, count: int, *, cached_at: datetime | None = None,
              now: datetime | None = None) -> str:
    noun = "story" if count == 1 else "stories"
    text = f"@{profile.username}: {count} {noun}."
    if cached_at is not None:
        now = now or datetime.now(UTC)
        text += f" (fetched {ago((now - cached_at).total_seconds())}, no credit used)"
    return text


def partly_delivered(profile: Profile, posted: int, total: int, uncertain: int = 0) -> str:
    text = f"@{profile.username}: {posted} of {total} stories posted."
    if uncertain:
        text += (f" {uncertain} were being posted when the bot was interrupted and may be "
                 "missing.")
    if failed := total - posted - uncertain:
        text += f" {failed} could not be posted here."
    return text


def expired(username: str, timeout: float) -> str:
    return (
        f"The stories API did not answer for @{username} within {duration_text(timeout)}. "
        "Please try again."
    )


def delivery_failed(username: str) -> str:
    return f"The stories of @{username} could not be posted here. Please try again later."


def caption(profile: Profile, item: StoryItem, index: int, total: int,
            *, now: datetime | None = None, cached_at: datetime | None = None) -> str:
    """`@natgeo · 3/23 · video 0:15 · taken 14:05 UTC (2 h ago)`."""
    now = now or datetime.now(UTC)
    taken = item.taken_at.astimezone(UTC)
    parts = [f"@{profile.username}"]
    if total > 1:
        parts.append(f"{index + 1}/{total}")
    if item.kind is MediaKind.VIDEO and item.duration:
        minutes, seconds = divmod(round(item.duration), 60)
        parts.append(f"video {minutes}:{seconds:02d}")
    # (by hand: strftime is half the cost of a caption, made for every story delivered)
    parts.append(f"taken {taken.year:04d}-{taken.month:02d}-{taken.day:02d} "
                 f"{taken.hour:02d}:{taken.minute:02d} UTC ({ago((now - taken).total_seconds())})")
    if cached_at is not None:
        parts.append(f"fetched {ago((now - cached_at).total_seconds())}")
    return " · ".join(parts)


def too_large_link(item: StoryItem, limit_bytes: int, url: str | None = None) -> str:
    what = "video" if item.kind is MediaKind.VIDEO else "photo"
    return (f"This {what} is larger than the {human_size(limit_bytes)} upload limit, so here "
            f"is a link: {url or item.url}")


def help_text(platform: str) -> str:
    if platform == "discord":
        key_help = (
            "/apikey set — set this server's API key (admins)\n"
            "/apikey remove — remove it (admins)\n"
            "/limits — cap credits per day / month (admins)\n"
        )
    else:
        key_help = (
            "/setkey <key> — set this chat's API key (admins; the message is deleted)\n"
            "/removekey — remove it (admins)\n"
            "/limits [daily N] [monthly N] — cap credits (admins)\n"
        )
    return (
        "Post the current Instagram stories of an account into this chat.\n\n"
        "/stories <username> — e.g. /stories natgeo (also @name or a profile link)\n"
        "/stories <username> fresh — fetch again instead of reusing a recent result (admins)\n"
        "/usage — this chat's requests and credits\n"
        + key_help
        + "/help — this message"
    )


def smaller_version_note(item: StoryItem, limit_bytes: int, url: str | None = None) -> str:
    """An item attached in a smaller rendition because its best one is over the upload limit."""
    what = "video" if item.kind is MediaKind.VIDEO else "photo"
    return (f"The full-quality {what} is larger than the {human_size(limit_bytes)} upload "
            f"limit, so a smaller version is attached. Full quality: {url or item.url}")


def unavailable_link(item: StoryItem, url: str | None = None) -> str:
    """An item whose media could not be downloaded for upload (the link may still work)."""
    what = "video" if item.kind is MediaKind.VIDEO else "photo"
    return f"This {what} could not be uploaded here, so here is a link: {url or item.url}"


def key_message_not_deleted() -> str:
    """After /setkey, when the platform would not let the bot delete the message with the key."""
    return ("I could not delete your message with the key: please delete it yourself, and give "
            "me the right to delete messages so I can do it next time.")
