"""The real process: `stories-bot run` as a subprocess against the fake Telegram server and the
emulator. SIGKILL at random points, several times in a row, then a restart: nothing is posted
twice and every received result is delivered. SIGTERM: commands stop, the delivery in progress
finishes within a bound, the process exits cleanly.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bot.emulator import Emulator, EmulatorConfig
from bot.models import RequestState
from storage.crypto import KeyCipher
from storage.sqlite_store import SqliteStore
from tests.conftest import API_KEY, KNOWN_SECRETS, SECRET
from tests.fakes.telegram_api import FakeTelegram

ADMIN = 12
CHATS = [-1009000000001, -1009000000002, -1009000000003]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class BotProcess:
    """`python -m bot.cli run` with the given environment; ready when it logs so."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.proc: asyncio.subprocess.Process | None = None
        self.log: list[str] = []
        self._reader: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self, timeout: float = 20) -> None:
        self._ready = asyncio.Event()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "run", env=self.env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE)
        self._reader = asyncio.create_task(self._read(self.proc))
        await asyncio.wait_for(self._ready.wait(), timeout)

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        async for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.log.append(line)
            if "stories-bot ready" in line:
                self._ready.set()

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        await self.proc.wait()
        if self._reader:
            await self._reader

    async def terminate(self, timeout: float) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        if self._reader:
            await self._reader
        return code


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[FakeTelegram, Emulator, dict[str, str]]]:
    fake = FakeTelegram()
    await fake.start()
    KNOWN_SECRETS.add(fake.token)
    fake.add_user(ADMIN, "Adam", "adam")
    for chat_id in CHATS:
        fake.add_chat(chat_id, title=f"chat {chat_id}", members={ADMIN: "administrator"})
    # The bot is down for a while at every kill: the API keeps retrying its callbacks.
    emulator = Emulator(EmulatorConfig(keys={API_KEY: 1000}, webhook_delay=0.05,
                                       webhook_attempts=40, webhook_backoff=0.2))
    emulator.config.webhook_backoff = 0.2
    await emulator.start()
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TELEGRAM_", "DISCORD_", "PUBLIC_URL", "DEFAULT_API_KEY"))}
    env.update({
        "NO_PROXY": "127.0.0.1,localhost", "TELEGRAM_BOT_TOKEN": fake.token,
        "TELEGRAM_API_URL": fake.url, "ETERNALSOCIAL_API_URL": emulator.base_url,
        "PUBLIC_URL": f"http://127.0.0.1:{port}", "CALLBACK_PORT": str(port),
        "DATABASE_PATH": str(tmp_path / "bot.sqlite3"), "SECRET_KEY": SECRET,
        "DEFAULT_API_KEY": API_KEY, "USER_COOLDOWN": "0", "CACHE_TTL": "0",
        "REQUEST_TIMEOUT": "20", "MAX_IN_FLIGHT_PER_CHAT": "20", "LOG_LEVEL": "INFO",
    })
    try:
        yield fake, emulator, env
    finally:
        await emulator.stop()
        await fake.close()


async def wait_settled(env: dict[str, str], timeout: float = 60) -> None:
    """Poll the process's /healthz until nothing is pending (a process boundary: there is no
    event to await across it)."""
    async with httpx.AsyncClient() as http, asyncio.timeout(timeout):
        while True:
            health = (await http.get(f"{env['PUBLIC_URL']}/healthz")).json()
            if health["pending"] == 0:
                return
            await asyncio.sleep(0.1)


def captions(fake: FakeTelegram, chat_id: int) -> list[str]:
    return [m.caption or "" for m in fake.bot_messages(chat_id) if m.media is not None]


async def open_store(env: dict[str, str]) -> SqliteStore:
    store = SqliteStore(env["DATABASE_PATH"], KeyCipher(SECRET))
    await store.open()
    return store


async def test_sigkill_at_random_points_then_restart(world) -> None:  # type: ignore[no-untyped-def]
    fake, emulator, env = world
    rng = random.Random(20261129)
    fake.latency["sendmediagroup"] = 0.05  # albums take a moment: kills land mid-delivery
    bot = BotProcess(env)
    asked = 0
    for round_ in range(4):
        await bot.start()
        for chat_id in CHATS:
            name = f"kill{round_}_{chat_id % 10}"
            emulator.add_account(name, ["photo", "video"] * rng.randint(3, 8))
            await fake.post(chat_id, f"/stories {name}", user=ADMIN)
            asked += 1
        await asyncio.sleep(rng.uniform(0.05, 0.8))  # a random point of submission/delivery
        await bot.kill()
    await bot.start()
    try:
        await wait_settled(env)
    finally:
        assert await bot.terminate(timeout=20) == 0

    store = await open_store(env)
    try:
        records = await store.requests_in_state(*RequestState)
        states = Counter(r.state for r in records)
        uncertain = 0
        for record in records:
            item_states = await store.item_states(record.id)
            uncertain += sum(1 for s in item_states.values() if s == "sending")
        ledger = await store.ledger_total()
    finally:
        await store.close()
    # nothing posted twice, anywhere
    for chat_id in CHATS:
        posted = captions(fake, chat_id)
        assert len(posted) == len(set(posted)), f"duplicates in {chat_id}"
    # every request ended; every received result was delivered
    assert all(r.state.is_final for r in records), states
    assert states[RequestState.RECEIVED] == 0
    received = [r for r in records if r.state is RequestState.DELIVERED]
    assert received, states
    # each delivered request posted all its items, except those in flight at a kill
    expected = 0
    for record in received:
        body = next(r.result for r in emulator.requests if r.username == record.username
                    and r.result)
        expected += sum(1 for i in body["data"]["items"] if i.get("media_type") in (1, 2))
    posted_total = sum(len(captions(fake, c)) for c in CHATS)
    assert posted_total + uncertain >= expected
    assert posted_total <= expected
    # credits: what the API charged is on the ledger, once
    assert ledger == emulator.total_charged
    assert len(records) <= asked


async def test_sigterm_finishes_the_delivery_in_progress(world) -> None:  # type: ignore[no-untyped-def]
    fake, emulator, env = world
    fake.latency["sendmediagroup"] = 0.3  # three albums: about a second of delivery
    bot = BotProcess(env)
    await bot.start()
    chat_id = CHATS[0]
    await fake.post(chat_id, "/stories manystories", user=ADMIN)
    await fake.wait_for(lambda: fake.calls_of("sendMediaGroup"), timeout=15)
    code = await bot.terminate(timeout=20)  # SIGTERM while the first album is being sent
    assert code == 0
    posted = captions(fake, chat_id)
    assert len(posted) == len(set(posted)) == 23  # finished, nothing twice
    assert any("shutting down" in line for line in bot.log)
    assert not any("Traceback" in line for line in bot.log)
    await fake.post(chat_id, "/stories natgeo", user=ADMIN)  # nobody is listening now
    assert len(emulator.requests) == 1
