"""Spending protection over real HTTP against the emulator: caps, resets, cooldowns, the
in-flight cap, shared results (joined and cached), forced refresh, and the per-key limiter."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.app import App
from bot.emulator import Emulator, EmulatorConfig
from bot.ratelimit import KeyRateLimiter
from tests.conftest import API_KEY, AppFactory, make_settings, origin
from tests.fakes.recording_adapter import RecordingAdapter

OTHER_KEY = "sk_live_otherkey987654321"


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


async def make_clocked(tmp_path: Path, emulator: Emulator, clock: Clock,
                       **overrides: object) -> tuple[App, RecordingAdapter]:
    chat = RecordingAdapter()
    settings = make_settings(tmp_path, emulator, **overrides)
    app = App(settings, adapters=[lambda *_: chat], public_url="auto", clock=clock)
    await app.start()
    return app, chat


async def test_daily_cap_edge_warning_and_reset(tmp_path: Path, emulator: Emulator) -> None:
    clock = Clock(datetime(2026, 11, 29, 22, 0, tzinfo=UTC))
    app, chat = await make_clocked(tmp_path, emulator, clock, cache_ttl=0)
    try:
        admin = origin(admin=True)
        await app.service.set_key(admin, API_KEY)
        assert "2 credits per day" in await app.service.set_limits(admin, daily=2)
        await app.service.request_stories(origin(), "natgeo")
        await app.wait_idle(timeout=10)
        assert not any("Heads-up" in t for t in chat.texts())  # 1 of 2: under 80 %
        await app.service.request_stories(origin(), "manystories")
        await app.wait_idle(timeout=10)
        assert sum("Heads-up" in t for t in chat.texts()) == 1  # 2 of 2: warned once
        await app.service.request_stories(origin(), "natgeo")
        refusal = chat.texts()[-1]
        assert "daily cap of 2 credits" in refusal
        assert "2026-11-30 00:00 UTC (in 2 h)" in refusal
        assert len(emulator.requests) == 2  # refused before the API was called

        clock.advance(hours=2, seconds=1)  # a new UTC day
        await app.service.request_stories(origin(), "natgeo")
        await app.wait_idle(timeout=10)
        assert len(emulator.requests) == 3
        assert chat.texts()[-1] == "@natgeo: 5 stories."
        usage = await app.service.usage_text(origin())
        assert "Today: 1 requests, 1 credits of 2" in usage
        assert "This month: 3 requests, 3 credits" in usage  # still November
        assert "All time: 3 requests, 3 credits" in usage  # the refusal spent nothing
        assert await app.store.ledger_total() == emulator.total_charged == 3
        # every charge, refusal and change of caps is on the ledger
        kinds = Counter(row[0] for row in app.store.db.execute("SELECT kind FROM ledger"))
        assert kinds == {"charge": 3, "refused": 1, "caps": 1}
    finally:
        await app.stop()


async def test_monthly_cap_resets_at_month_boundary(tmp_path: Path, emulator: Emulator) -> None:
    clock = Clock(datetime(2026, 1, 31, 12, 0, tzinfo=UTC))
    app, chat = await make_clocked(tmp_path, emulator, clock, cache_ttl=0)
    try:
        admin = origin(admin=True)
        await app.service.set_key(admin, API_KEY)
        await app.service.set_limits(admin, monthly=1)
        await app.service.request_stories(origin(), "natgeo")
        await app.wait_idle(timeout=10)
        clock.advance(hours=6)  # same month, and a daily cap is not set
        await app.service.request_stories(origin(), "natgeo")
        assert "monthly cap of 1 credits" in chat.texts()[-1]
        assert "2026-02-01 00:00 UTC" in chat.texts()[-1]
        clock.advance(hours=6, seconds=1)  # February
        await app.service.request_stories(origin(), "natgeo")
        await app.wait_idle(timeout=10)
        assert len(emulator.requests) == 2
        # a cap of 0 stops spending entirely; `off` clears it
        await app.service.set_limits(admin, monthly=0)
        await app.service.request_stories(origin(), "natgeo")
        assert "monthly cap of 0 credits" in chat.texts()[-1]
        await app.service.set_limits(admin, monthly=None)
        assert len(emulator.requests) == 2
    finally:
        await app.stop()


async def test_only_admins_set_caps(make_app: AppFactory) -> None:
    app, chat = await make_app()
    import pytest

    from bot.errors import InvalidInput, NotAllowed

    with pytest.raises(NotAllowed):
        await app.service.set_limits(origin(), daily=5)
    with pytest.raises(InvalidInput):
        await app.service.set_limits(origin(admin=True), daily=-1)
    usage = await app.service.usage(origin().chat)
    assert usage.daily_cap is None


async def test_user_cooldown(tmp_path: Path, emulator: Emulator) -> None:
    clock = Clock(datetime(2026, 11, 29, 12, 0, tzinfo=UTC))
    app, chat = await make_clocked(tmp_path, emulator, clock, user_cooldown=30, cache_ttl=0)
    try:
        await app.service.set_key(origin(admin=True), API_KEY)
        await app.service.request_stories(origin(user_id="7"), "natgeo")
        await app.wait_idle(timeout=10)
        clock.advance(seconds=10)
        await app.service.request_stories(origin(user_id="7"), "manystories")
        assert chat.texts()[-1] == "Please wait 20 s before asking again."
        await app.service.request_stories(origin(user_id="8"), "manystories")  # someone else
        await app.wait_idle(timeout=10)
        clock.advance(seconds=21)
        await app.service.request_stories(origin(user_id="7"), "nostories")
        await app.wait_idle(timeout=10)
        assert len(emulator.requests) == 3
    finally:
        await app.stop()


async def test_in_flight_cap_per_chat(make_app: AppFactory, emulator: Emulator) -> None:
    emulator.pause_callbacks()
    app, chat = await make_app(max_in_flight_per_chat=2)
    await app.service.set_key(origin(admin=True), API_KEY)
    await app.service.request_stories(origin(), "natgeo")
    await app.service.request_stories(origin(), "manystories")
    await app.service.request_stories(origin(), "nostories")
    assert "already has 2 requests in progress" in chat.texts()[-1]
    await app.service.request_stories(origin(), "natgeo")
    assert "already being fetched" in chat.texts()[-1]
    assert len(emulator.requests) == 2
    emulator.resume_callbacks()
    await app.wait_idle(timeout=10)
    assert len(chat.items()) == 5 + 23


async def test_joining_an_in_flight_request(make_app: AppFactory, emulator: Emulator) -> None:
    emulator.pause_callbacks()
    app, chat = await make_app()
    for chat_id in ("A", "B"):
        await app.service.set_key(origin(chat_id, admin=True), API_KEY)
    await app.service.set_key(origin("C", admin=True), OTHER_KEY)
    await app.service.request_stories(origin("A"), "natgeo")
    await app.service.request_stories(origin("B"), "@NatGeo")  # same key: joins
    await app.service.request_stories(origin("C"), "natgeo")  # another key: its own fetch
    assert len(emulator.requests) == 2
    emulator.resume_callbacks()
    await app.wait_idle(timeout=10)
    per_chat = {c: [i.id for s in chat.shown if s.chat == f"test:{c}" for i in s.items]
                for c in "ABC"}
    assert len(per_chat["A"]) == len(per_chat["B"]) == len(per_chat["C"]) == 5
    usage_a = await app.service.usage(origin("A").chat)
    usage_b = await app.service.usage(origin("B").chat)
    assert (usage_a.total.credits, usage_b.total.credits) == (1, 0)
    assert (usage_b.total.shared, usage_b.total.saved) == (1, 1)
    assert await app.store.ledger_total() == emulator.total_charged == 2


async def test_cached_result_and_forced_refresh(make_app: AppFactory, emulator: Emulator) -> None:
    app, chat = await make_app()
    for chat_id in ("A", "B"):
        await app.service.set_key(origin(chat_id, admin=True), API_KEY)
    await app.service.request_stories(origin("A"), "natgeo")
    await app.wait_idle(timeout=10)
    await app.service.request_stories(origin("B"), "natgeo")
    await app.wait_idle(timeout=10)
    assert len(emulator.requests) == 1
    b_texts = [s.text for s in chat.shown if s.chat == "test:B"]
    assert b_texts[-1] == "@natgeo: 5 stories. (fetched just now, no credit used)"
    assert (await app.service.usage(origin("B").chat)).total.saved == 1

    await app.service.request_stories(origin("B"), "natgeo fresh")  # not an admin
    assert chat.texts()[-1] == "Only the chat's admins can do that."
    await app.service.request_stories(origin("B", admin=True), "natgeo fresh")
    await app.wait_idle(timeout=10)
    assert len(emulator.requests) == 2
    assert await app.store.ledger_total() == emulator.total_charged == 2


async def test_limiter_keeps_a_burst_under_the_api_limit(tmp_path: Path) -> None:
    """100 requests at once against an emulator enforcing 60/minute: the bot queues instead
    of collecting 429s. Time runs 10x faster for the limiter, the emulator and the waits."""
    speed = 10.0
    start_wall, start_mono = time.time(), time.monotonic()

    def fast_wall() -> float:
        return start_wall + (time.monotonic() - start_mono) * speed

    def fast_mono() -> float:
        return (time.monotonic() - start_mono) * speed

    async def fast_sleep(seconds: float) -> None:
        await asyncio.sleep(seconds / speed)

    emulator = Emulator(EmulatorConfig(keys={API_KEY: 1000}, webhook_delay=0.01,
                                       rate_per_minute=60), clock=fast_wall)
    await emulator.start()
    chat = RecordingAdapter()
    settings = make_settings(tmp_path, emulator, cache_ttl=0, max_in_flight_per_chat=1000,
                             request_timeout=600)
    app = App(settings, adapters=[lambda *_: chat], public_url="auto", service_options={
        "limiter": KeyRateLimiter(clock=fast_mono, margin=6.0), "sleep": fast_sleep})
    await app.start()
    try:
        await app.service.set_key(origin(admin=True), API_KEY)
        for n in range(100):
            emulator.add_account(f"burst{n}", ["photo"])
        await asyncio.gather(*(app.service.request_stories(origin(), f"burst{n}")
                               for n in range(100)))
        await app.wait_idle(timeout=60)
    finally:
        await app.stop()
        await emulator.stop()
    statuses = [r.status for r in emulator.requests]
    assert len(statuses) == 100
    assert 429 not in statuses
    assert len(chat.items()) == 100
    queued = [t for t in chat.texts() if "queued for about" in t]
    assert len(queued) >= 30  # the long waits were announced
    assert emulator.total_charged == 100


def test_limiter_windows_and_429_block() -> None:
    now = [0.0]
    limiter = KeyRateLimiter(((60.0, 3),), clock=lambda: now[0], margin=0.0)
    assert [limiter.reserve("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.reserve("k") == 60.0  # the 4th waits for the 1st to leave the window
    assert limiter.reserve("other") == 0.0  # per key
    now[0] = 200.0
    limiter.block("k", 30)  # the API said 429, Retry-After: 30
    assert limiter.reserve("k") == 30.0
