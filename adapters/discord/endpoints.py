"""Point discord.py at `DISCORD_API_URL` and `DISCORD_GATEWAY_URL` (a REST proxy, or a test double).

discord.py has no per-client option for either. Every REST call — the bot's own and the
interaction webhooks' — is built from the class attribute `discord.http.Route.BASE` (which
discord.py itself rewrites in `_set_api_version`), and the first gateway connection goes to
`DiscordWebSocket.DEFAULT_GATEWAY` (reconnections then follow READY's `resume_gateway_url`).
Setting those two attributes is the least invasive way; they are process-wide, so one Discord
client per process points them (the composition root builds one adapter), and the function
returned by `apply_endpoints` puts the previous values back when the adapter stops.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import yarl
from discord.gateway import DiscordWebSocket
from discord.http import INTERNAL_API_VERSION, Route

_active: tuple[str | None, str | None] | None = None


def api_base(url: str) -> str:
    """The REST root discord.py should use: `https://proxy` and `https://proxy/api` both become
    `https://proxy/api/v10`; a URL that already names a version is kept."""
    root = url.rstrip("/")
    if re.search(r"/api/v\d+$", root):
        return root
    if root.endswith("/api"):
        return f"{root}/v{INTERNAL_API_VERSION}"
    return f"{root}/api/v{INTERNAL_API_VERSION}"


def apply_endpoints(api_url: str | None, gateway_url: str | None) -> Callable[[], None]:
    """Point discord.py at the given roots (None keeps discord.py's own) and return a function
    that restores the previous ones."""
    global _active
    wanted = (api_base(api_url) if api_url else None, gateway_url or None)
    if wanted == (None, None):
        return lambda: None
    if _active is not None and _active != wanted:
        raise RuntimeError("discord.py is already pointed at other endpoints in this process")
    saved_base, saved_gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    if wanted[0]:
        Route.BASE = wanted[0]
    if wanted[1]:
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(wanted[1])
    _active = wanted

    def restore() -> None:
        global _active
        Route.BASE = saved_base
        DiscordWebSocket.DEFAULT_GATEWAY = saved_gateway
        _active = None

    return restore
