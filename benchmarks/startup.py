"""Figure 5 — start-up to ready.

- `App.start()`: in a fresh process each time, `App(settings)` (which imports the Telegram
  adapter and builds python-telegram-bot's application) and `await app.start()` (database
  open and migrated, callback server listening, Telegram `getMe`, command menus, long polling
  started) against the fake Bot API. The module imports before it are reported apart.
- `stories-bot run`: the console script as an operator starts it (environment only, fresh
  database, `CALLBACK_PORT=0`), from `exec` to the first `200` from `GET /healthz` (database
  up, Telegram adapter running); then SIGTERM, until the process has exited.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.child import Child, child_env
from benchmarks.common import SECRET, median
from benchmarks.report import Row

COMMAND = "python -m benchmarks.run --only startup"
# Seconds of idling between ready and SIGTERM: the figure is the stop of a bot at rest. (A stop
# during the very first long poll used to wait out a 10 s pool timeout; the adapter's polling
# pool now has two connections and a 1 s pool timeout, and tests/test_telegram.py checks it.)
SETTLE = 0.5
LISTENING = re.compile(r"callback server listening on [\d.]+:(\d+)")


def _stories_bot() -> list[str]:
    script = Path(sys.executable).with_name("stories-bot")
    if script.exists():
        return [str(script), "run"]
    return [sys.executable, "-c", "import sys; from bot.cli import main; sys.exit(main())",
            "run"]


async def run_process(world: dict[str, Any], workdir: Path) -> dict[str, float]:
    """Start `stories-bot run`, wait for /healthz to answer 200, SIGTERM it, wait for exit."""
    env = child_env()
    for name in ("DISCORD_BOT_TOKEN", "PUBLIC_URL", "DEFAULT_API_KEY", "DATABASE_PATH"):
        env.pop(name, None)
    env.update(TELEGRAM_BOT_TOKEN=world["telegram_token"],
               TELEGRAM_API_URL=world["telegram_url"],
               ETERNALSOCIAL_API_URL=world["api_url"],
               DATABASE_PATH=str(workdir / "bot.sqlite3"), SECRET_KEY=SECRET,
               CALLBACK_HOST="127.0.0.1", CALLBACK_PORT="0", LOG_LEVEL="INFO")
    began = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *_stories_bot(), cwd=str(workdir), env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(30):
            port = None
            while port is None:
                line = (await proc.stderr.readline()).decode(errors="replace")
                if not line:
                    raise RuntimeError("stories-bot exited:\n" + "".join(lines[-20:]))
                lines.append(line)
                if found := LISTENING.search(line):
                    port = int(found.group(1))
            drain = asyncio.create_task(_drain(proc.stderr))
            async with aiohttp.ClientSession() as session:
                while True:
                    try:
                        async with session.get(f"http://127.0.0.1:{port}/healthz") as answer:
                            if answer.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.005)
        ready = time.perf_counter() - began
        await asyncio.sleep(SETTLE)
        stopping = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
        stopped = time.perf_counter() - stopping
        await drain
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return {"ready_s": ready, "stop_s": stopped, "exit_code": code}


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


async def run(quick: bool) -> list[Row]:
    reps = 1 if quick else 5
    world_proc = await Child("benchmarks.world").start()
    apps: list[dict[str, float]] = []
    procs: list[dict[str, float]] = []
    try:
        world = await world_proc.call("start", keys={"unused-key-000000": 1})
        for n in range(reps):
            bot = await Child("benchmarks.botproc", name=f"bot-start{n}").start()
            try:
                apps.append(await bot.call(
                    "start", adapter="telegram", api_url=world["api_url"],
                    settings={"telegram_bot_token": world["telegram_token"],
                              "telegram_api_url": world["telegram_url"]}))
            finally:
                await bot.close()
        for _ in range(reps):
            with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
                procs.append(await run_process(world, Path(tmp)))
    finally:
        await world_proc.close()
    app_total = [a["construct_s"] + a["start_s"] for a in apps]
    ready = [p["ready_s"] for p in procs]
    stops = [p["stop_s"] for p in procs]
    clean = all(p["exit_code"] == 0 for p in procs)
    return [
        Row(f"Start-up: App(settings) + await app.start(), Telegram adapter (median of {reps})",
            f"{median(app_total) * 1000:.0f} ms (max {max(app_total) * 1000:.0f} ms; "
            f"imports before it {median([a['import_s'] for a in apps]) * 1000:.0f} ms)",
            "< 2 s", max(app_total) < 2.0, COMMAND, {"app": apps, "process": procs}),
        Row(f"Start-up: `stories-bot run` exec -> /healthz 200 (median of {reps})",
            f"{median(ready) * 1000:.0f} ms (max {max(ready) * 1000:.0f} ms)", "< 2 s",
            max(ready) < 2.0, COMMAND),
        Row(f"  SIGTERM {SETTLE:g} s after ready -> process exited (idle bot)",
            f"{median(stops) * 1000:.0f} ms" + ("" if clean else " (non-zero exit!)"), "",
            None if clean else False, COMMAND),
    ]


if os.name != "posix":  # pragma: no cover - SIGTERM semantics
    raise ImportError("the start-up benchmark needs a POSIX system")
