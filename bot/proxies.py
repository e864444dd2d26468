"""The HTTP(S)_PROXY / NO_PROXY of the environment, looked up once per origin.

aiohttp's own `trust_env` looks the environment up in a worker thread on every request (a
thread hop each: ~0.3 ms of CPU under load); the environment does not change while the bot
runs, so the answer is kept per origin.
"""

from __future__ import annotations

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

Proxy = tuple[URL | None, aiohttp.BasicAuth | None]


class EnvProxies:
    def __init__(self) -> None:
        self._known: dict[URL, Proxy] = {}

    def for_url(self, url: str | URL) -> Proxy:
        """(proxy, its credentials) for `url`, or (None, None) to connect directly."""
        origin = URL(url).origin()
        if origin not in self._known:
            try:
                self._known[origin] = get_env_proxy_for_url(origin)
            except LookupError:  # none set, or NO_PROXY names the host
                self._known[origin] = (None, None)
        return self._known[origin]
