"""Figure 1 — callback ingest: requests/s that `POST /callbacks/{token}` sustains with a
realistic body, against a bare aiohttp handler reading the same body, same client, same run.

The bot runs in its own process (`benchmarks.botproc`) with a no-op chat adapter
(`common.NullAdapter`: the core's delivery bookkeeping runs, no platform is called) and
production logging; the bare handler in another (`benchmarks.bare`). Every callback has its
own pending request, created beforehand through the store. The client (aiohttp, N concurrent
workers on keep-alive connections) runs in the runner's process. Rounds alternate bare and bot
so that the machine's noise hits both; each side's figure is its median round.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import psutil

from benchmarks.child import Child
from benchmarks.common import CALLBACK_UA, manystories_body, median
from benchmarks.report import Row

COMMAND = "python -m benchmarks.run --only ingest"


@dataclass
class Round:
    rate: float
    seconds: float
    server_cpu: float  # CPU seconds the server process used during the round
    client_cpu: float
    statuses: Counter[int]


def _cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


async def load(session: aiohttp.ClientSession, url_for: Callable[[int], str], count: int,
               body: bytes, concurrency: int, pid: int) -> Round:
    """POST `body` to `count` URLs with `concurrency` workers; the rate is what the client
    saw from the first request sent to the last answer read."""
    indices = itertools.count()
    statuses: Counter[int] = Counter()

    async def worker() -> None:
        while (i := next(indices)) < count:
            async with session.post(url_for(i), data=body) as response:
                await response.read()
                statuses[response.status] += 1

    server0, client0, began = _cpu(pid), time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - began
    return Round(count / seconds, seconds, _cpu(pid) - server0, time.process_time() - client0,
                 statuses)


REFERENCES = {  # route on the bare process -> what it does
    "bare": ("callbacks", "bare aiohttp handler: read the body, answer 200"),
    "json": ("json", "bare + json.loads"),
    "parse": ("parse", "bare + the bot's decoding, parsing and encoding of the result"),
    "persist": ("persist", "parse + the result stored in one SQLite transaction"),
}


async def run(quick: bool) -> list[Row]:
    rounds, warmup, concurrency = (1, 100, 32) if quick else (3, 300, 32)
    counts = ({"bare": 1500, "json": 500, "parse": 300, "persist": 300, "bot": 300} if quick
              else {"bare": 5000, "json": 1500, "parse": 900, "persist": 900, "bot": 1200})
    body = await manystories_body()
    bare = Child("benchmarks.bare")
    bot = Child("benchmarks.botproc", name="bot-ingest")
    results: dict[str, list[Round]] = {name: [] for name in counts}
    drains: list[float] = []
    bot_cpu_with_delivery: list[float] = []
    try:
        await asyncio.gather(bare.start(), bot.start())
        assert bare.pid is not None and bot.pid is not None
        bare_url = await bare.call("url")
        started = await bot.call("start", adapter="null", api_url="http://127.0.0.1:9")
        pending = await bot.call("create_pending", count=warmup + rounds * counts["bot"],
                                 chats=100)
        tokens: list[str] = pending["tokens"]
        bot_url = started["callback_url"]
        headers = {"Content-Type": "application/json", "User-Agent": CALLBACK_UA}
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector, headers=headers,
                                         timeout=aiohttp.ClientTimeout(total=60)) as session:
            for route, _ in REFERENCES.values():
                await load(session, lambda i, route=route: f"{bare_url}/{route}/w{i:020d}",
                           warmup, body, concurrency, bare.pid)
            await load(session, lambda i: f"{bot_url}/callbacks/{tokens[i]}", warmup, body,
                       concurrency, bot.pid)
            await bot.call("wait_states", states=["delivered"], count=warmup, timeout=120)
            offset = warmup
            for _ in range(rounds):
                for name, (route, _) in REFERENCES.items():
                    results[name].append(await load(
                        session, lambda i, route=route: f"{bare_url}/{route}/r{i:020d}",
                        counts[name], body, concurrency, bare.pid))
                first = offset
                cpu0 = _cpu(bot.pid)
                results["bot"].append(await load(
                    session, lambda i, first=first: f"{bot_url}/callbacks/{tokens[first + i]}",
                    counts["bot"], body, concurrency, bot.pid))
                offset += counts["bot"]
                drained = await bot.call("wait_states", states=["delivered"], count=offset,
                                         timeout=300)
                drains.append(drained["waited_s"])
                bot_cpu_with_delivery.append(_cpu(bot.pid) - cpu0)
        states = await bot.call("state_counts")
    finally:
        await asyncio.gather(bare.close(), bot.close())

    rate = {name: median([r.rate for r in rs]) for name, rs in results.items()}
    cpu = {name: median([r.server_cpu / counts[name] for r in rs])
           for name, rs in results.items()}
    cpu_all = median([c / counts["bot"] for c in bot_cpu_with_delivery])
    ratio = rate["bot"] / rate["bare"]
    bad = sum(n for rs in results.values() for r in rs for s, n in r.statuses.items() if s != 200)
    size = f"{len(body) / 1024:.0f} KiB"
    details = {
        "body_bytes": len(body), "rounds": rounds, "counts": counts, "concurrency": concurrency,
        "rates": {name: [round(r.rate) for r in rs] for name, rs in results.items()},
        "server_cpu_ms_per_request": {name: round(v * 1000, 3) for name, v in cpu.items()},
        "bot_cpu_ms_incl_delivery": round(cpu_all * 1000, 3),
        "client_cpu_share": {name: [round(r.client_cpu / r.seconds, 2) for r in rs]
                             for name, rs in results.items()},
        "non_200": bad, "drain_s": [round(d, 3) for d in drains], "final_states": states,
    }
    rows = [Row(f"Callback ingest: {label} ({size} body, {concurrency} concurrent)",
                f"{rate[name]:,.0f} req/s, {cpu[name] * 1000:.2f} ms CPU/req"
                + ("" if name == "bare" else f" = {rate[name] / rate['bare']:.2f}x bare"),
                "reference", None, COMMAND, details if name == "bare" else {})
            for name, (_, label) in REFERENCES.items()]
    rows.append(Row(
        f"Callback ingest: bot, parse + persist + hand-off ({size}, {concurrency} concurrent)",
        f"{rate['bot']:,.0f} req/s, {cpu['bot'] * 1000:.2f} ms CPU/req "
        f"({cpu_all * 1000:.2f} with delivery) = {ratio:.2f}x bare",
        ">= 0.5x bare", ratio >= 0.5 and not bad, COMMAND))
    return rows
