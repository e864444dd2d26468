"""`TurnBudget`: heavy steps take turns with the rest of the event loop.

asyncio runs, in one turn of its loop, every step that became ready during the previous one.
When a burst arrives — twenty commands from one getUpdates, the callbacks of a hundred
requests — one turn can run dozens of heavy steps (1-2 ms each: decoding, the store, building
requests) back to back, and everything else waits for the whole turn: Telegram's long poll,
Discord's gateway heartbeat, the answers of requests already under way. A `TurnBudget` lets
heavy steps spend at most `budget` seconds per turn in all; past that, the next one waits for
a later turn, while the rest of the loop runs. The work and the throughput are the same; no
turn is long.

Waiting steps go by priority, then arrival: the start of a received result's delivery, then
new results, then the further messages of deliveries under way, then new commands. So a burst
of callbacks does not hold back the deliveries of those already received, and every chat gets
its first album before any gets its third.

    turns = TurnBudget()
    async with turns.section(RECEIVE):  # a step that does not wait on the network: timed
        ...
    await turns.take(0.0015, COMMAND)  # a task's first step, of about that cost, may start
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from types import TracebackType

# Seconds of heavy work per turn of the loop. A heavy step is 1-2 ms, so in effect one runs
# per turn while others wait (benchmarks: largest stall 21-25 ms with 2 ms, 14-17 ms with
# 1 ms; the same throughput).
DEFAULT_BUDGET = 0.001

# Priorities, most urgent first.
DELIVER = 0  # the start of a received result's delivery
RECEIVE = 1  # a callback
FOLLOW_UP = 2  # a further message of a delivery under way
COMMAND = 3  # a command


class TurnBudget:
    def __init__(self, budget: float = DEFAULT_BUDGET) -> None:
        self._budget = budget
        self._spent = 0.0
        self._step: float | None = None  # what a step typically costs (a moving average)
        self._new_turn_scheduled = False
        # a heap of (priority, arrival, future)
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._tickets = itertools.count()

    def section(self, priority: int) -> _Section:
        return _Section(self, priority)

    async def take(self, seconds: float, priority: int) -> None:
        """Wait for a turn with budget left, and book `seconds` of it for the step that
        follows (whose length cannot be timed: it ends on a network wait)."""
        await self._admit(priority)
        self._spend(seconds)

    async def _admit(self, priority: int) -> None:
        if self._spent < self._budget and (not self._waiters
                                           or self._waiters[0][0] > priority):
            return
        loop = asyncio.get_running_loop()
        ticket = next(self._tickets)
        while True:
            waiter: asyncio.Future[None] = loop.create_future()
            heapq.heappush(self._waiters, (priority, ticket, waiter))
            self._schedule_new_turn()
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._schedule_new_turn()  # woken, then cancelled: the turn goes on
                raise
            if self._spent < self._budget:
                return
            # This turn's budget went to steps that arrived earlier: wait again, keeping
            # the place in the queue.

    def _spend(self, seconds: float) -> None:
        self._spent += seconds
        self._step = seconds if self._step is None else self._step + (seconds - self._step) / 4
        self._schedule_new_turn()

    def _schedule_new_turn(self) -> None:
        if not self._new_turn_scheduled:
            # call_soon runs it in the loop's next turn: the budget is per turn.
            asyncio.get_running_loop().call_soon(self._new_turn)
            self._new_turn_scheduled = True

    def _new_turn(self) -> None:
        self._new_turn_scheduled = False
        self._spent = 0.0
        # Wake, in order, as many waiters as the budget is likely to take (they run in that
        # order); one the budget cannot take after all waits again with its original place.
        # Waking them all would make each of a queue of N wake and wait again at every turn.
        # The next turn is scheduled by whoever spends, or is woken and must wait again.
        wake = (max(1, math.ceil(self._budget / self._step)) if self._step
                else len(self._waiters))
        while self._waiters and wake:
            _priority, _ticket, waiter = heapq.heappop(self._waiters)
            if not waiter.done():  # not cancelled
                waiter.set_result(None)
                wake -= 1


class _Section:
    __slots__ = ("_began", "_budget", "_priority")

    def __init__(self, budget: TurnBudget, priority: int) -> None:
        self._budget = budget
        self._priority = priority
        self._began = 0.0

    async def __aenter__(self) -> None:
        await self._budget._admit(self._priority)
        self._began = time.perf_counter()

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self._budget._spend(time.perf_counter() - self._began)
