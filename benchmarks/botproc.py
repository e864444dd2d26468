"""The bot under test, in its own process: the real `bot.app.App` (callback server, core,
SQLite store, and the Telegram adapter or a no-op one), driven by the runner's commands.

Instrumentation is added from outside, never by editing the app: an aiohttp middleware that
timestamps each callback's arrival, a wrapper that timestamps the core's hand-off to the
adapter (`send_stories`), a 1 ms heartbeat task in the app's loop, and an RSS sampler.

Run by the runner as `python -m benchmarks.botproc` (see `benchmarks.child`).
"""

from __future__ import annotations

import asyncio
import gc
import secrets
import sqlite3
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

T0 = time.perf_counter()

from bot.app import App, settle_heap  # noqa: E402 - the import itself is timed
from bot.models import ChatRef, Origin  # noqa: E402
from bot.service import hash_token  # noqa: E402

IMPORTED = time.perf_counter()

from benchmarks.child import serve  # noqa: E402
from benchmarks.common import (  # noqa: E402
    NullAdapter,
    PeakRss,
    StepWatch,
    bot_settings,
    heartbeat,
    monotonic,
    percentile,
    production_logging,
    settled_rss,
)


class BotProcess:
    def __init__(self) -> None:
        self._workdir = tempfile.TemporaryDirectory(prefix="bench-bot-")
        self.workdir = Path(self._workdir.name)
        self.app: App | None = None
        self.arrivals: dict[str, float] = {}
        self.handoffs: dict[str, float] = {}
        self._gaps: list[float] = []
        self._beat_stop = asyncio.Event()
        self._beat: asyncio.Task[None] | None = None
        self._beat_started = 0.0
        self._peak: PeakRss | None = None
        self._gc_pauses: list[tuple[int, float]] = []
        self._gc_began = 0.0

    # lifecycle ------------------------------------------------------------------------------

    async def start(self, *, adapter: str, api_url: str, settings: dict[str, Any] | None = None,
                    stamp_arrivals: bool = False, stamp_handoffs: bool = False,
                    telegram_rate_limiter: bool = True, log: bool = True) -> dict[str, Any]:
        if log:
            production_logging()
        overrides = dict(settings or {})
        began = time.perf_counter()
        config = bot_settings(self.workdir, api_url=api_url, **overrides)
        factories: list[Any] | None = None  # None: the adapters whose tokens are set
        if adapter == "null":
            factories = [lambda *_: NullAdapter()]
        elif not telegram_rate_limiter:
            factories = [_telegram_without_rate_limiter]
        self.app = App(config, adapters=factories, public_url="auto")
        constructed = time.perf_counter()
        if stamp_arrivals:
            self.app.server.app.middlewares.append(self._stamp_arrival)
        await self.app.start()
        settle_heap()  # as `stories-bot run` does
        started = time.perf_counter()
        if stamp_handoffs:
            for running in self.app.adapters:
                self._wrap_send_stories(running)
        return {
            "callback_url": self.app.callback_url,
            "import_s": IMPORTED - T0,
            "construct_s": constructed - began,
            "start_s": started - constructed,
            "adapters": [a.platform for a in self.app.adapters],
        }

    async def stop(self) -> None:
        if self._beat is not None:
            self._beat_stop.set()
            await self._beat
        if self.app is not None:
            await self.app.stop(timeout=10)
            self.app = None
        self._workdir.cleanup()

    # instrumentation ------------------------------------------------------------------------

    @web.middleware
    async def _stamp_arrival(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.method == "POST" and request.path.startswith("/callbacks/"):
            self.arrivals.setdefault(request.path.rsplit("/", 1)[-1], monotonic())
        return await handler(request)

    def _wrap_send_stories(self, adapter: Any) -> None:
        original = adapter.send_stories

        async def send_stories(origin: Origin, delivery: Any) -> None:
            self.handoffs.setdefault(str(origin.chat), monotonic())
            await original(origin, delivery)

        adapter.send_stories = send_stories

    async def stamps(self) -> dict[str, Any]:
        return {"arrivals": self.arrivals, "handoffs": self.handoffs}

    def _gc_watch(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_began = time.perf_counter()
        else:
            self._gc_pauses.append((info["generation"], time.perf_counter() - self._gc_began))

    async def heartbeat_start(self) -> None:
        self._gaps = []
        self._gap_cpu: list[float] = []
        self._gc_pauses = []
        self._steps = StepWatch()
        self._steps.install()
        gc.callbacks.append(self._gc_watch)
        self._beat_stop = asyncio.Event()
        self._beat_started = monotonic()
        self._beat = asyncio.create_task(heartbeat(self._gaps, self._beat_stop,
                                                         cpu=self._gap_cpu))

    async def heartbeat_stop(self) -> dict[str, Any]:
        assert self._beat is not None
        self._beat_stop.set()
        await self._beat
        self._beat = None
        gc.callbacks.remove(self._gc_watch)
        self._steps.uninstall()
        gaps, cpu = self._gaps, self._gap_cpu
        pauses = self._gc_pauses
        widest = max(range(len(gaps)), key=gaps.__getitem__) if gaps else None
        return {
            "gc_collections": len(pauses),
            "gc_max_ms": max((p for _, p in pauses), default=0.0) * 1000,
            "gc_full_collections": sum(1 for g, _ in pauses if g == 2),
            "ticks": len(gaps),
            "seconds": monotonic() - self._beat_started,
            "max_ms": max(gaps) * 1000 if gaps else None,
            "p99_ms": percentile(gaps, 99) * 1000,
            "p999_ms": percentile(gaps, 99.9) * 1000,
            "over_10ms": sum(1 for g in gaps if g > 0.010),
            "over_20ms": sum(1 for g in gaps if g > 0.020),
            # CPU time of the loop's thread within a gap: near the gap itself, the loop was
            # busy (saturated); far below it, the thread waited (other processes, the GIL)
            "cpu_max_ms": max(cpu) * 1000 if cpu else None,
            "cpu_p99_ms": percentile(cpu, 99) * 1000 if cpu else None,
            "widest_gap_cpu_ms": cpu[widest] * 1000 if widest is not None else None,
            # the longest single steps of the loop (a callback, or a task up to its next
            # await): what a blocking call would show as
            "longest_steps": [(round(took * 1000, 1), name, round(cpu * 1000, 1))
                              for took, name, cpu in self._steps.longest],
        }

    # the store ------------------------------------------------------------------------------

    async def create_pending(self, *, count: int, chats: int = 100, platform: str = "bench",
                             username: str = "manystories") -> dict[str, Any]:
        """`count` requests awaiting their callback (state `processing`), spread over `chats`
        chats, each with its own token, created through the store as `_submit` does."""
        assert self.app is not None
        store = self.app.store
        tokens: list[str] = []
        began = time.perf_counter()
        for n in range(count):
            token = secrets.token_urlsafe(32)
            now = datetime.now(UTC)
            origin = Origin(chat=ChatRef(platform, str(n % chats)), user_id=str(1000 + n),
                            user_name=f"user{n}", reply={"message_id": n + 1})
            record = await store.create_request(
                origin, username, token_hash=hash_token(token), key_fingerprint="bench",
                now=now, deadline=now + timedelta(hours=1))
            await store.mark_processing(record.id, api_request_id=f"bench-{n}", now=now)
            tokens.append(token)
        return {"tokens": tokens, "seconds": time.perf_counter() - began}

    def _counts_now(self) -> dict[str, int]:
        assert self.app is not None
        path = self.app.settings.database_path
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            return dict(conn.execute("SELECT state, COUNT(*) FROM requests GROUP BY state"))

    async def state_counts(self) -> dict[str, int]:
        # A separate read-only connection on a worker thread (WAL lets it read alongside the
        # bot's own): looking must not go through the bot's store or block its loop.
        return await asyncio.to_thread(self._counts_now)

    async def wait_states(self, *, states: list[str], count: int, timeout: float = 300.0,
                          interval: float = 0.01) -> dict[str, Any]:
        """Wait until at least `count` requests are in one of `states` (looked at every
        `interval` seconds; the figure it ends is at most that late)."""
        began = monotonic()
        async with asyncio.timeout(timeout):
            while True:
                counts = await self.state_counts()
                if sum(counts.get(s, 0) for s in states) >= count:
                    return {"counts": counts, "waited_s": monotonic() - began}
                await asyncio.sleep(interval)

    async def idle(self, *, timeout: float = 300.0) -> dict[str, Any]:
        assert self.app is not None
        began = monotonic()
        await self.app.wait_idle(timeout)
        return {"idle_at": monotonic(), "waited_s": monotonic() - began}

    async def set_keys(self, *, keys: dict[str, str], platform: str = "telegram") -> None:
        assert self.app is not None
        for chat_id, key in keys.items():
            admin = Origin(chat=ChatRef(platform, chat_id), user_id="1", is_admin=True)
            await self.app.service.set_key(admin, key)

    # memory ---------------------------------------------------------------------------------

    async def rss(self) -> dict[str, Any]:
        await asyncio.sleep(0.5)  # let start-up work settle (menus, first long poll)
        return {"rss": settled_rss()}

    async def peak_start(self) -> dict[str, Any]:
        self._peak = PeakRss().__enter__()
        return {"baseline": self._peak.baseline}

    async def peak_stop(self) -> dict[str, Any]:
        assert self._peak is not None
        self._peak.__exit__(None, None, None)
        peak, self._peak = self._peak, None
        return {"baseline": peak.baseline, "peak": peak.peak, "growth": peak.growth,
                "samples": peak.samples, "after": settled_rss()}

    async def download(self, *, url: str, max_bytes: int, to_file: bool) -> dict[str, Any]:
        """Fetch `url` with the app's `MediaFetcher`, streamed to a file or into memory."""
        assert self.app is not None
        target = self.workdir / "media"
        began = monotonic()
        with PeakRss() as peak:
            downloaded = await self.app.media.download(
                url, max_bytes=max_bytes, to_dir=target if to_file else None)
        seconds = monotonic() - began
        if downloaded.path is not None:
            downloaded.path.unlink()
        del downloaded
        return {"baseline": peak.baseline, "peak": peak.peak, "growth": peak.growth,
                "samples": peak.samples, "seconds": seconds}


def _telegram_without_rate_limiter(settings: Any, service: Any, media: Any) -> Any:
    """The Telegram adapter with python-telegram-bot's AIORateLimiter removed (30 messages a
    second overall, 20 a minute per group, as Telegram asks): what is left is the bot's own
    work. Production keeps the limiter; the runner says which figure is which."""
    from adapters.telegram import TelegramAdapter

    adapter = TelegramAdapter(settings, service, media)
    adapter._app.bot._rate_limiter = None
    return adapter


async def main() -> None:
    bot = BotProcess()
    handlers = {
        name: getattr(bot, name)
        for name in ("start", "stamps", "heartbeat_start", "heartbeat_stop", "create_pending",
                     "state_counts", "wait_states", "idle", "set_keys", "rss", "peak_start",
                     "peak_stop", "download")
    }
    await serve(handlers, on_stop=bot.stop)


if __name__ == "__main__":
    asyncio.run(main())
