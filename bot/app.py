"""The composition root: settings → store → API client → core → adapters → web server.

`stories-bot run` and `stories-bot demo` are this, with different adapters. Nothing else in
the project creates clients or reaches for settings; everything receives what it needs here.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import anyio
import httpx

from bot.api_client import StoriesApiClient
from bot.callbacks import CallbackServer
from bot.media import MediaFetcher
from bot.service import Clock, StoriesService, utc_now
from bot.settings import Settings
from storage.crypto import KeyCipher, load_or_create_secret
from storage.sqlite_store import SqliteStore

log = logging.getLogger(__name__)


class RunningAdapter(Protocol):
    platform: str

    @property
    def running(self) -> bool: ...

    async def start(self) -> None: ...
    async def stop(self) -> None: ...


AdapterFactory = Callable[[Settings, StoriesService, MediaFetcher], RunningAdapter]


def open_store(settings: Settings) -> SqliteStore:
    secret = (settings.secret_key.get_secret_value() if settings.secret_key
              else load_or_create_secret(settings.database_path))
    return SqliteStore(settings.database_path, KeyCipher(secret))


def configured_adapters(settings: Settings) -> list[AdapterFactory]:
    """The adapters whose tokens are set (imported only then: each pulls a chat library)."""
    factories: list[AdapterFactory] = []
    if settings.telegram_bot_token:
        from adapters.telegram import TelegramAdapter

        factories.append(TelegramAdapter)
    if settings.discord_bot_token:
        from adapters.discord import DiscordAdapter

        factories.append(DiscordAdapter)
    return factories


class App:
    """Everything of one process. `public_url="auto"` uses the callback server's own bound
    address as PUBLIC_URL (the demo and the tests, where the API runs on this machine)."""

    def __init__(self, settings: Settings, *, adapters: Sequence[AdapterFactory] | None = None,
                 public_url: str | None = None, clock: Clock = utc_now,
                 service_options: dict[str, Any] | None = None) -> None:
        self.settings = settings
        self._factories = list(configured_adapters(settings) if adapters is None else adapters)
        self._public_url = public_url
        self._clock = clock
        self._service_options = service_options or {}
        self.store = open_store(settings)
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.api_timeout, connect=10.0),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            headers={"User-Agent": "stories-bot/0.1"},
        )
        self.api = StoriesApiClient(settings.api_url, timeout=settings.api_timeout,
                                    sync_timeout=max(settings.request_timeout, 30.0))
        self.media = MediaFetcher(self.http)
        self.service = StoriesService(settings, self.store, self.api, clock=clock,
                                      **self._service_options)
        self.adapters: list[RunningAdapter] = []
        self.server = CallbackServer(self.service, self.store, max_body=settings.callback_max_body,
                                     adapters_running=self._adapters_running)
        self._started = False

    def _adapters_running(self) -> dict[str, bool]:
        return {adapter.platform: adapter.running for adapter in self.adapters}

    @property
    def callback_url(self) -> str:
        return f"http://{self.settings.callback_host}:{self.server.port}"

    async def start(self) -> None:
        load_http_backend()
        await self.store.open()
        await self.server.start(self.settings.callback_host, self.settings.callback_port)
        if self._public_url == "auto":
            self.service.callback_base = self.callback_url
        elif self._public_url:
            self.service.callback_base = self._public_url.rstrip("/")
        for factory in self._factories:
            adapter = factory(self.settings, self.service, self.media)
            self.service.register_adapter(adapter)  # type: ignore[arg-type]
            await adapter.start()
            self.adapters.append(adapter)
            log.info("%s adapter started", adapter.platform)
        await self.service.start()
        self._started = True
        mode = f"webhook mode via {self.service.callback_base}" if self.service.callback_base \
            else "sync mode (PUBLIC_URL unset)"
        log.info("stories-bot ready: %s, adapters: %s", mode,
                 ", ".join(a.platform for a in self.adapters) or "none")

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop taking commands, finish deliveries within `timeout`, close everything."""
        await self.service.stop(timeout)
        for adapter in reversed(self.adapters):
            try:
                await adapter.stop()
            except Exception:
                log.exception("%s adapter did not stop cleanly", adapter.platform)
        await self.server.stop()
        await self.http.aclose()
        await self.api.close()
        await self.store.close()
        self._started = False

    async def wait_idle(self, timeout: float | None = None) -> None:
        await self.service.wait_idle(timeout)

    async def __aenter__(self) -> App:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def load_http_backend() -> None:
    """httpx (the stories API, media) picks and imports its async backend, anyio's asyncio
    one, on its first request: ~40 ms of imports that would hold up the event loop while the
    first command waits. Done at start-up instead. Needs the running loop."""
    anyio.Event()


def settle_heap() -> None:
    """Once, after start-up, in a long-running process: collect, then move every object
    alive now (modules, libraries, the app) out of the garbage collector's sight. Its full
    collections then scan only what requests create: the longest pause measured under load
    went from 63 ms to 14 ms (`python -m benchmarks.run --only stalls`)."""
    gc.collect()
    gc.freeze()
