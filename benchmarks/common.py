"""What the benchmark scenarios share: settings, a no-op chat adapter, the realistic callback
body, statistics, resident-memory sampling and a description of the machine."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import platform
import resource
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

from bot.models import Origin
from bot.ports import StoryDelivery
from bot.settings import Settings
from tests.fakes.settings import local_settings

MiB = 1024 * 1024
SECRET = "bench-secret-key-for-fernet"  # noqa: S105 - a throwaway database's key
API_KEY = "sk_live_benchkey0123456789abcdef"
CALLBACK_UA = "eternalsocial-webhook/1.0"


def bot_settings(workdir: Path, *, api_url: str, **overrides: Any) -> Settings:
    """The tests' local settings, with nothing expiring during a run."""
    return local_settings(workdir, api_url=api_url, secret=SECRET,
                          **{"request_timeout": 600, **overrides})


def production_logging() -> None:
    """Log as `stories-bot run` does (INFO, redacted, to stderr: the child's log file), so
    that the cost of logging is part of every figure."""
    from bot.logs import setup_logging

    setup_logging("INFO")


class NullAdapter:
    """A chat adapter that posts nothing and confirms every item at once: the core's
    delivery bookkeeping runs in full, no platform cost is added."""

    platform = "bench"
    running = True

    async def start(self) -> None:
        self.running = True

    async def stop(self) -> None:
        self.running = False

    async def post_status(self, origin: Origin, text: str) -> str | None:
        return "1"

    async def edit_status(self, origin: Origin, status_ref: str | None, text: str) -> None:
        return None

    async def send_text(self, origin: Origin, text: str) -> None:
        return None

    async def send_stories(self, origin: Origin, delivery: StoryDelivery) -> None:
        await delivery.tracker.sending(delivery.items)
        await delivery.tracker.sent(delivery.items)


async def manystories_body() -> bytes:
    """The emulator's result for `manystories` (23 items with every extra field of a real
    Instagram payload), serialised exactly as the emulator POSTs it to a webhook."""
    import json

    import httpx

    from bot.emulator import Emulator, EmulatorConfig

    async with (Emulator(EmulatorConfig(keys={API_KEY: 10})) as emulator,
                httpx.AsyncClient(trust_env=False) as client):
        response = await client.post(emulator.stories_url, json={"username": "manystories"},
                                     headers={"Authorization": f"Bearer {API_KEY}"})
        response.raise_for_status()
        body = response.json()
    assert body["success"] and len(body["data"]["items"]) == 23
    return json.dumps(body).encode()


# --- statistics ------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100), nearest-rank on sorted data (no interpolation)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


# --- memory ----------------------------------------------------------------------------------


def rss_bytes() -> int:
    return psutil.Process().memory_info().rss


def settled_rss() -> int:
    """RSS after a full collection, once the allocator has had a moment."""
    gc.collect()
    return rss_bytes()


def max_rss_bytes() -> int:
    """The process's peak RSS so far (kernel's own high-water mark)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakRss:
    """Samples this process's RSS from a thread every `interval` seconds while active; the
    kernel's high-water mark (`ru_maxrss`) is the cross-check for spikes between samples."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.baseline = 0
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._maxrss_before = 0

    def _sample(self) -> None:
        process = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, process.memory_info().rss)
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self.baseline = settled_rss()
        self.peak = self.baseline
        self._maxrss_before = max_rss_bytes()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        after = max_rss_bytes()
        if after > self._maxrss_before:  # a new lifetime peak was set during the run
            self.peak = max(self.peak, after)

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


# --- the machine -----------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    import sqlite3

    import aiohttp

    return {
        "nproc": usable,
        "cpu": cpu_model(),
        "ram_gib": round(psutil.virtual_memory().total / 1024**3, 1),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "os": f"{platform.system()} {platform.release()}",
        "sqlite": sqlite3.sqlite_version,
        "aiohttp": aiohttp.__version__,
        "load_avg_1m": round(load[0], 2),
    }


class Steal:
    """The share of the machine's CPU time the hypervisor gave to other guests (`steal` in
    /proc/stat) between `start()` and `share()`: on a shared VM, a loop that waits with no
    CPU of its own may simply not have been running. None where /proc/stat has no steal."""

    def __init__(self) -> None:
        self._start: tuple[int, int] | None = None

    @staticmethod
    def _read() -> tuple[int, int] | None:
        try:
            fields = Path("/proc/stat").read_text().splitlines()[0].split()
        except (OSError, IndexError):
            return None
        if fields[0] != "cpu" or len(fields) < 9:
            return None
        ticks = [int(f) for f in fields[1:]]
        return ticks[7], sum(ticks[:8])  # steal, and user..steal in all

    def start(self) -> None:
        self._start = self._read()

    def share(self) -> float | None:
        end = self._read()
        if self._start is None or end is None or end[1] <= self._start[1]:
            return None
        return (end[0] - self._start[0]) / (end[1] - self._start[1])


def monotonic() -> float:
    """`time.monotonic()`: CLOCK_MONOTONIC is system-wide on Linux, so timestamps taken in
    different benchmark processes are comparable."""
    return time.monotonic()


async def heartbeat(gaps: list[float], stop: asyncio.Event, period: float = 0.001,
                    cpu: list[float] | None = None) -> None:
    """Tick every `period` seconds; record the time between ticks (a stall shows as a gap)
    and, in `cpu`, the CPU time the loop's thread used within each gap: a gap much longer
    than that is time the thread did not run (the OS ran other processes, or another thread
    held the GIL); a gap equal to it is the loop's own work."""
    loop = asyncio.get_running_loop()
    last, last_cpu = loop.time(), time.thread_time()
    while not stop.is_set():
        await asyncio.sleep(period)
        now, now_cpu = loop.time(), time.thread_time()
        gaps.append(now - last)
        if cpu is not None:
            cpu.append(now_cpu - last_cpu)
        last, last_cpu = now, now_cpu


class StepWatch:
    """Times every step the event loop runs (one callback, or one step of a task up to its
    next await) while installed, and keeps the longest, each with the CPU time the loop's
    thread used in it: a long step with little CPU waited (a blocking call, or the OS ran
    something else); a gap of the heartbeat made of many short steps is a busy loop.
    Benchmark harness only: it wraps asyncio's `Handle._run`."""

    def __init__(self, keep: int = 5) -> None:
        self.longest: list[tuple[float, str, float]] = []  # (seconds, step, CPU seconds)
        self._keep = keep
        self._original: Any = None

    def install(self) -> None:
        original = self._original = asyncio.events.Handle._run
        longest, keep = self.longest, self._keep

        def timed(handle: asyncio.Handle) -> None:
            began, cpu = time.perf_counter(), time.thread_time()
            original(handle)
            took = time.perf_counter() - began
            if len(longest) < keep or took > longest[-1][0]:
                longest.append((took, _step_name(handle), time.thread_time() - cpu))
                longest.sort(reverse=True)
                del longest[keep:]

        asyncio.events.Handle._run = timed  # type: ignore[method-assign]

    def uninstall(self) -> None:
        if self._original is not None:
            asyncio.events.Handle._run = self._original  # type: ignore[method-assign]
            self._original = None


def _step_name(handle: asyncio.Handle) -> str:
    callback = getattr(handle, "_callback", None)
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        chain = [getattr(coro, "__qualname__", "?")]
        while (inner := getattr(coro, "cr_await", None)) is not None and hasattr(inner, "cr_code"):
            coro = inner
            chain.append(getattr(coro, "__qualname__", "?"))
        return " > ".join(chain[:1] + chain[-2:] if len(chain) > 3 else chain)
    # Never repr() the callback: a bound method's repr is its object's, and aiohttp's
    # ClientResponse.__repr__ reads `headers`, a cached property — taken before the response
    # has started, it stays None and the response fails ("'NoneType' object has no attribute
    # 'getall'": 1 getUpdates in ~6 stall runs, before this).
    name = getattr(callback, "__qualname__", None)
    return name if isinstance(name, str) else type(callback).__qualname__


def quiet(*names: str) -> None:
    for name in names:
        logging.getLogger(name).setLevel(logging.WARNING)
