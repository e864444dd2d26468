"""Load and faults, bounded in time, all on 127.0.0.1.

1,000 requests across 100 chats (each with its own key), callbacks duplicated, reordered and
early: every chat gets exactly its own stories, once, and the credit ledger equals what the
emulator charged. Then the API failing in every way: clear messages, nothing charged twice.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path

from bot.app import App
from bot.emulator import Emulator, EmulatorConfig
from tests.conftest import KNOWN_SECRETS, make_settings, origin
from tests.fakes.recording_adapter import RecordingAdapter


def closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


CHATS = 100
PER_CHAT = 10


async def test_thousand_requests_hundred_chats(tmp_path: Path) -> None:
    keys = {f"sk_live_load{c:03d}_abcdefgh": 100 for c in range(CHATS)}
    KNOWN_SECRETS.update(keys)
    emulator = Emulator(EmulatorConfig(keys=keys, webhook_delay=0.02, duplicate_callbacks=True))
    await emulator.start()
    rng = random.Random(1234)
    for c in range(CHATS):
        for n in range(PER_CHAT):
            kinds = [rng.choice(["photo", "video"]) for _ in range(rng.randint(0, 4))]
            emulator.add_account(f"c{c}_a{n}", kinds)
    chat = RecordingAdapter()
    settings = make_settings(tmp_path, emulator, max_in_flight_per_chat=PER_CHAT, cache_ttl=0,
                             request_timeout=60)
    app = App(settings, adapters=[lambda *_: chat], public_url="auto")
    await app.start()
    try:
        for c, key in enumerate(keys):
            await app.service.set_key(origin(str(c), admin=True), key)
        jobs = [(c, n) for c in range(CHATS) for n in range(PER_CHAT)]
        rng.shuffle(jobs)

        async def ask(c: int, n: int) -> None:
            await asyncio.sleep(rng.random() * 0.5)  # spread arrivals (load shape, not a wait)
            await app.service.request_stories(origin(str(c), user_id=str(n)), f"c{c}_a{n}")

        # half the run with callbacks arriving before the API's answer
        first, second = jobs[:500], jobs[500:]
        await asyncio.gather(*(ask(c, n) for c, n in first))
        emulator.config.callback_before_response = True
        await asyncio.gather(*(ask(c, n) for c, n in second))
        await app.wait_idle(timeout=120)
        await emulator.drain(timeout=30)
        await app.wait_idle(timeout=30)

        for c in range(CHATS):
            got = Counter(i.id for s in chat.shown if s.chat == f"test:{c}" for i in s.items)
            want: Counter[str] = Counter()
            for n in range(PER_CHAT):
                body = next(r.result for r in emulator.requests
                            if r.username == f"c{c}_a{n}" and r.result)
                want.update(str(item["id"]) for item in body["data"]["items"])
            assert got == want, f"chat {c}"
            assert max(got.values(), default=1) == 1
        assert len(emulator.requests) == CHATS * PER_CHAT
        assert sum(1 for a in emulator.callback_attempts if a.copy == 2) > 0  # duplicates sent
        assert await app.store.ledger_total() == emulator.total_charged == CHATS * PER_CHAT
    finally:
        await app.stop()
        await emulator.stop()


async def test_api_failing_every_way(tmp_path: Path) -> None:
    key = "sk_live_faults_0123456789"
    KNOWN_SECRETS.add(key)
    emulator = Emulator(EmulatorConfig(keys={key: 100}, webhook_delay=0.01))
    await emulator.start()
    chat = RecordingAdapter()
    settings = make_settings(tmp_path, emulator, cache_ttl=0, api_timeout=0.5,
                             max_in_flight_per_chat=50)
    app = App(settings, adapters=[lambda *_: chat], public_url="auto")
    await app.start()
    try:
        await app.service.set_key(origin(admin=True), key)
        emulator.fail_next(1, 500)
        await app.service.request_stories(origin(), "natgeo")
        emulator.fail_next(1, 502)
        await app.service.request_stories(origin(), "natgeo")
        emulator.hang_next(1)  # slower than API_TIMEOUT
        await app.service.request_stories(origin(), "natgeo")
        emulator.release_hung()
        emulator.fail_next(1, 429, headers={"Retry-After": "7"})
        await app.service.request_stories(origin(), "natgeo")
        await app.service.request_stories(origin(), "natgeo")  # and finally it works
        await app.wait_idle(timeout=20)
        texts = chat.texts()
        assert sum("unavailable" in t for t in texts) == 3
        assert any("try again in 7 s" in t.lower() for t in texts)
        assert texts[-1] == "@natgeo: 5 stories."
        assert len(chat.items()) == 5
        # each user request reached the API at most once: nothing retried after sending
        assert len(emulator.requests) == 5
        assert await app.store.ledger_total() == emulator.total_charged == 1
    finally:
        await app.stop()
        await emulator.stop()

    # the API's address refusing connections altogether
    settings_gone = settings.model_copy(update={
        "eternalsocial_api_url": f"http://127.0.0.1:{closed_port()}",
        "database_path": tmp_path / "gone.sqlite3"})
    chat2 = RecordingAdapter()
    app2 = App(settings_gone, adapters=[lambda *_: chat2], public_url="auto")
    app2.api._backoff = 0.01
    await app2.start()
    try:
        await app2.service.set_key(origin(admin=True), key)
        await app2.service.request_stories(origin(), "natgeo")
        await app2.wait_idle(timeout=10)
        assert "unavailable" in chat2.texts()[-1]
    finally:
        await app2.stop()
