"""Turn what a user typed into an Instagram username, before any credit is spent.

Accepted: `natgeo`, `@NatGeo`, `https://www.instagram.com/natgeo/`, `instagram.com/natgeo?igsh=…`,
`instagram.com/stories/natgeo/3870…/`. Usernames are 1–30 ASCII letters, digits, `.` and `_`
(Instagram's own rule); look-alike letters from other scripts are refused, not folded.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from bot.errors import InvalidUsername

_USERNAME = re.compile(r"[a-z0-9._]{1,30}", re.ASCII)
_HOSTS = {"instagram.com", "www.instagram.com", "m.instagram.com", "instagr.am"}
# First path segments of instagram.com that are not profiles.
_NOT_PROFILES = {
    "p", "reel", "reels", "tv", "explore", "accounts", "direct", "about", "legal",
    "developer", "challenge", "web", "emails", "session", "privacy",
}
MAX_INPUT = 300


def normalise_username(text: str) -> str:
    """Return the lower-case username, or raise `InvalidUsername` with a helpful message."""
    raw = (text or "").strip()
    if not raw:
        raise InvalidUsername(
            "missing username", user_message="Which account? For example: /stories natgeo"
        )
    if len(raw) > MAX_INPUT:
        raise InvalidUsername("input too long")
    candidate = _from_url(raw) if ("/" in raw or "instagram" in raw.lower()) else raw
    candidate = candidate.removeprefix("@").lower()
    if (
        not _USERNAME.fullmatch(candidate)
        or candidate.startswith(".")
        or candidate.endswith(".")
        or ".." in candidate
    ):
        raise InvalidUsername(f"invalid username: {len(candidate)} chars")
    return candidate


def _from_url(raw: str) -> str:
    url = raw if "://" in raw else "https://" + raw
    try:
        parts = urlsplit(url)
    except ValueError:
        raise InvalidUsername("unparseable URL") from None
    host = (parts.hostname or "").lower()
    if host not in _HOSTS:
        raise InvalidUsername("not an instagram URL")
    segments = [segment for segment in parts.path.split("/") if segment]
    if segments and segments[0].lower() == "stories" and len(segments) >= 2:
        return segments[1]
    if not segments or segments[0].lower() in _NOT_PROFILES:
        raise InvalidUsername(
            "not a profile URL",
            user_message="That link is not an Instagram profile. Send a profile link or a "
            "username, e.g. /stories natgeo",
        )
    return segments[0]
