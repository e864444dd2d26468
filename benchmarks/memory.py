"""Figure 4 — memory: resident set size (psutil) of the bot process, each scenario in a fresh
process so that none inherits another's heap.

- idle: the app started with its Telegram adapter (against the fake Bot API), nothing to do;
- 10,000 pending: the same, after 10,000 requests awaiting their callbacks were created in
  the store (100 chats), as `_submit` creates them;
- relaying a 50 MB video, two ways: `MediaFetcher.download(..., to_dir=...)` streaming it to a
  file (what an adapter that relays large files should use), and the Telegram adapter's own
  path end to end (`/stories` typed in the fake Telegram, the emulator's callback, the adapter
  downloading the video — too big for Telegram to fetch by URL — and uploading it).

Growth is the peak RSS during the operation (sampled every 2 ms, cross-checked with the
kernel's high-water mark) minus the settled RSS just before it. The emulator serves the video
padded on the fly, never holding it in memory, from the `world` process.
"""

from __future__ import annotations

import asyncio
from typing import Any

from benchmarks.child import Child
from benchmarks.report import Row, mb

COMMAND = "python -m benchmarks.run --only memory"
VIDEO_BYTES = 50_000_000
RELAY_CHAT = -1003000000001
RELAY_KEY = "sk_live_memoryrelay_abcdefgh"
MiB = 1024 * 1024


async def _bot(world: dict[str, Any], name: str, **settings: Any) -> Child:
    bot = await Child("benchmarks.botproc", name=name).start()
    await bot.call("start", adapter="telegram", api_url=world["api_url"],
                   settings={"telegram_bot_token": world["telegram_token"],
                             "telegram_api_url": world["telegram_url"], **settings})
    return bot


async def measure(*, pending: int) -> dict[str, Any]:
    world_proc = await Child("benchmarks.world").start()
    results: dict[str, Any] = {}
    try:
        world = await world_proc.call("start", keys={RELAY_KEY: 100})
        await world_proc.call("add_accounts",
                              accounts={"bigrelay": [{"kind": "video", "size": VIDEO_BYTES}]})
        await world_proc.call("add_chats", chat_ids=[RELAY_CHAT])

        bot = await _bot(world, "bot-idle")
        try:
            results["idle"] = (await bot.call("rss"))["rss"]
        finally:
            await bot.close()

        bot = await _bot(world, "bot-pending")
        try:
            before = (await bot.call("rss"))["rss"]
            created = await bot.call("create_pending", count=pending, chats=100,
                                     platform="telegram", timeout=600)
            after = (await bot.call("rss"))["rss"]
            results["pending"] = {"before": before, "after": after,
                                  "create_s": created["seconds"]}
        finally:
            await bot.close()

        bot = await _bot(world, "bot-stream")
        try:
            url = await world_proc.call("media_url", name="video-reef-360x640.mp4",
                                        size=VIDEO_BYTES)
            results["stream"] = await bot.call("download", url=url, max_bytes=64 * MiB,
                                               to_file=True)
        finally:
            await bot.close()

        bot = await _bot(world, "bot-relay")
        try:
            await bot.call("set_keys", keys={str(RELAY_CHAT): RELAY_KEY})
            await asyncio.sleep(0.5)
            await bot.call("peak_start")
            await world_proc.call("post_commands",
                                  commands=[(RELAY_CHAT, 8001, "/stories bigrelay")])
            done = await bot.call("wait_states", states=["delivered", "failed"], count=1,
                                  timeout=300)
            await bot.call("idle", timeout=60)
            results["relay"] = await bot.call("peak_stop")
            results["relay"]["states"] = done["counts"]
            results["relay"]["calls"] = (await world_proc.call("summary"))["calls"]
        finally:
            await bot.close()
    finally:
        await world_proc.close()
    return results


async def run(quick: bool) -> list[Row]:
    pending = 2_000 if quick else 10_000
    r = await measure(pending=pending)
    p, stream, relay = r["pending"], r["stream"], r["relay"]
    uploaded = relay["calls"].get("sendVideo", 0) >= 1 and relay["states"].get("delivered")
    return [
        Row("Memory: RSS idle (app started, Telegram adapter, nothing to do)", mb(r["idle"]),
            "", None, COMMAND, r),
        Row(f"Memory: RSS with {pending:,} requests pending (growth over idle process)",
            f"{mb(p['after'])} (+{mb(p['after'] - p['before'])})", "", None, COMMAND),
        Row("Memory: growth relaying a 50 MB video, MediaFetcher.download streamed to a file",
            f"+{mb(stream['growth'])} (peak {mb(stream['peak'])})", "< 16 MiB",
            stream["growth"] < 16 * MiB, COMMAND),
        Row("Memory: growth relaying a 50 MB video through the Telegram adapter (download + "
            "upload)",
            f"+{mb(relay['growth'])} (peak {mb(relay['peak'])})"
            + ("" if uploaded else " (NOT uploaded)"),
            "< 16 MiB", relay["growth"] < 16 * MiB and bool(uploaded), COMMAND),
    ]
