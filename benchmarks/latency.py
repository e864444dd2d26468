"""Figure 2 — added latency from a callback's arrival at the callback server to the first call
the bot makes on the chat platform for it, with 100 callbacks in flight.

Three processes: the bot (`botproc`: the real app with its Telegram adapter), the world
(`world`: the stories API emulator and the fake Telegram Bot API) and the runner, which fires
the callbacks. The requests are made the real way: 100 chats each type `/stories <account>`
(23 stories each, like `manystories`) into the fake Telegram; the emulator accepts them but
holds the callbacks (`drop_callbacks`), and hands their URLs and bodies to the runner, which
POSTs all 100 at once. The bot timestamps each callback's arrival (an aiohttp middleware) and
its hand-off to the adapter; the fake timestamps the first sendMediaGroup/sendPhoto/
sendVideo/sendMessage/editMessageText for each chat. Both use CLOCK_MONOTONIC, which is
system-wide, so the difference is the added latency.

Measured twice: with the adapter as shipped (python-telegram-bot's AIORateLimiter, which
keeps the bot within Telegram's 30 messages a second overall), and with that limiter
removed, which leaves the bot's own work.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.child import Child
from benchmarks.common import CALLBACK_UA, percentile
from benchmarks.report import Row, ms

COMMAND = "python -m benchmarks.run --only latency"
ITEMS = ["video" if k % 3 == 2 else "photo" for k in range(23)]  # as `manystories`
FIRST_CHAT = -1001000000000
SERIAL_SPACING = 0.2  # seconds between callbacks in the "1 in flight" case


async def measure(*, chats: int, rate_limiter: bool, serial: bool = False,
                  reference: bool = False) -> dict[str, Any]:
    """Latencies of `chats` callbacks, all POSTed at once (or, `serial`, one at a time, each
    `SERIAL_SPACING` after the previous delivery finished: the uncontended figure). With
    `reference`, the same bodies are then POSTed at once to the bare reference
    (`benchmarks.bare`, `/first/…`: read, decode, one sendMessage) against the same fake."""
    chat_ids = [FIRST_CHAT - n for n in range(chats)]
    keys = {f"sk_live_latency{n:04d}_abcdefgh": 100 for n in range(chats)}
    accounts = {f"lat{n}": ITEMS for n in range(chats)}
    world = Child("benchmarks.world")
    bot = Child("benchmarks.botproc", name="bot-latency")
    bare = Child("benchmarks.bare", name="bare-latency") if reference else None
    reference_added: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        try:
            await asyncio.gather(world.start(), bot.start(), *([bare.start()] if bare else []))
            where = await world.call("start", keys=keys,
                                     emulator={"drop_callbacks": True, "webhook_delay": 0.0})
            await world.call("add_accounts", accounts=accounts)
            await world.call("add_chats", chat_ids=chat_ids)
            await bot.call("start", adapter="telegram", api_url=where["api_url"],
                           stamp_arrivals=True, stamp_handoffs=True,
                           telegram_rate_limiter=rate_limiter,
                           settings={"telegram_bot_token": where["telegram_token"],
                                     "telegram_api_url": where["telegram_url"],
                                     "cache_ttl": 0, "max_in_flight_per_chat": 10})
            await bot.call("set_keys", keys={str(c): k for c, k in zip(chat_ids, keys,
                                                                       strict=True)})
            await world.call("post_commands", commands=[
                (chat_id, 5000 + n, f"/stories lat{n}") for n, chat_id in enumerate(chat_ids)])
            await world.call("wait_results", count=chats, timeout=120)
            await bot.call("wait_states", states=["processing"], count=chats, timeout=120)
            path = Path(tmp) / "callbacks.json"
            await world.call("write_callbacks", path=str(path))
            pairs = json.loads(path.read_text())
            await asyncio.sleep(2.0)  # let the status messages' rate-limit budget refill
            await world.call("stamp_begin")
            bodies = [(url, json.dumps(body).encode()) for url, body, _ in pairs]
            async with _callback_session(chats) as session:
                if serial:
                    statuses = []
                    for done, (url, data) in enumerate(bodies, start=1):
                        statuses.append(await _post(session, url, data))
                        await bot.call("wait_states", states=["delivered"], count=done)
                        # A delivery of 23 stories is 4 messages: spaced so, the bot stays
                        # under Telegram's 30 a second and the limiter holds nothing back
                        # (back to back, the limiter's queue would be what is measured).
                        await asyncio.sleep(SERIAL_SPACING)
                else:
                    statuses = await asyncio.gather(*(_post(session, url, data)
                                                      for url, data in bodies))
            first = await world.call("first_calls", chat_ids=chat_ids, timeout=120)
            stamps = await bot.call("stamps")
            await bot.call("wait_states", states=["delivered"], count=chats, timeout=300)
            summary = await world.call("summary")
            if bare is not None:
                reference_added = await _reference(bare, world, pairs, bodies, chat_ids, where)
        finally:
            await asyncio.gather(bot.close(), world.close(), *([bare.close()] if bare else []))
    added, core, methods = [], [], {}
    for url, _body, username in pairs:
        token = url.rsplit("/", 1)[-1]
        chat_id = chat_ids[int(username.removeprefix("lat"))]
        arrival = stamps["arrivals"][token]
        at, method = first[str(chat_id)]
        added.append(at - arrival)
        core.append(stamps["handoffs"][f"telegram:{chat_id}"] - arrival)
        methods[method] = methods.get(method, 0) + 1
    return {"added": added, "core": core, "first_methods": methods,
            "statuses": {str(s): statuses.count(s) for s in set(statuses)},
            "calls": summary["calls"], "reference_added": reference_added}


def _callback_session(connections: int) -> aiohttp.ClientSession:
    """The runner's client, as the API posts callbacks."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections),
        headers={"Content-Type": "application/json", "User-Agent": CALLBACK_UA})


async def _post(session: aiohttp.ClientSession, url: str, data: bytes) -> int:
    async with session.post(url, data=data) as response:
        await response.read()
        return response.status


async def _reference(bare: Child, world: Child, pairs: list[Any],
                     bodies: list[tuple[str, bytes]], chat_ids: list[int],
                     where: dict[str, Any]) -> list[float]:
    """The same callbacks, at once, to the bare reference: arrival -> its one call."""
    await bare.call("telegram", url=where["telegram_url"], token=where["telegram_token"],
                    connections=len(pairs))
    base = await bare.call("url")
    await world.call("stamp_begin")
    chats = [chat_ids[int(username.removeprefix("lat"))] for _url, _body, username in pairs]
    posts = [(f"{base}/first/{chat}/{url.rsplit('/', 1)[-1]}", data, chat)
             for (url, data), chat in zip(bodies, chats, strict=True)]
    async with _callback_session(len(posts)) as session:
        statuses = await asyncio.gather(*(_post(session, url, data) for url, data, _ in posts))
    assert set(statuses) == {200}, statuses
    first = await world.call("first_calls", chat_ids=chat_ids, timeout=120)
    arrivals = await bare.call("stamps")
    return [first[str(chat)][0] - arrivals[url.rsplit("/", 1)[-1]] for url, _, chat in posts]


def _stats(values: list[float]) -> dict[str, float]:
    return {"p50": percentile(values, 50), "p99": percentile(values, 99), "max": max(values)}


async def run(quick: bool) -> list[Row]:
    chats = 30 if quick else 100
    cases = [
        (f"{chats} in flight, adapter as shipped (PTB AIORateLimiter, 30 msg/s)",
         await measure(chats=chats, rate_limiter=True)),
        (f"{chats} in flight, rate limiter removed (the bot's own work)",
         await measure(chats=chats, rate_limiter=False, reference=True)),
        (f"1 in flight (one callback at a time, {SERIAL_SPACING:g} s apart), adapter as shipped",
         await measure(chats=5 if quick else 20, rate_limiter=True, serial=True)),
    ]
    rows = []
    for label, result in cases:
        added, core = _stats(result["added"]), _stats(result["core"])
        rows.append(Row(
            f"Callback -> first Telegram call, {label}",
            f"p50 {ms(added['p50'])}, p99 {ms(added['p99'])} (max {ms(added['max'])})",
            "p50 < 10 ms, p99 < 50 ms", added["p50"] < 0.010 and added["p99"] < 0.050,
            COMMAND, {"first_methods": result["first_methods"],
                      "callback_statuses": result["statuses"], "calls": result["calls"],
                      "core_handoff": core, "added": added}))
        rows.append(Row(
            "  of which the core: arrival -> adapter.send_stories called",
            f"p50 {ms(core['p50'])}, p99 {ms(core['p99'])} (max {ms(core['max'])})",
            "", None, COMMAND))
        if result["reference_added"]:
            ref = _stats(result["reference_added"])
            rows.append(Row(
                f"  reference, same {chats} bodies at once: a bare aiohttp handler that reads, "
                "decodes and makes one sendMessage call",
                f"p50 {ms(ref['p50'])}, p99 {ms(ref['p99'])} (max {ms(ref['max'])}); the bot "
                f"{added['p50'] / ref['p50']:.1f}x its p50, {added['p99'] / ref['p99']:.1f}x "
                "its p99", "reference", None, COMMAND, {"reference": ref}))
    return rows
