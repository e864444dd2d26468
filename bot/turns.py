"""`TurnBudget`: heavy steps take turns with the rest of the event loop.

asyncio runs, in one turn of its loop, every step that became ready during the previous one.
When a burst arrives — twenty commands from one getUpdates, the callbacks of a hundred
requests — one turn can run dozens of heavy steps (1-2 ms each: decoding, the store, building
requests) back to back, and everything else waits for the whole turn: Telegram's long poll,
Discord's gateway heartbeat, the answers of requests already under way. A `TurnBudget` lets
heavy steps spend at most `budget` seconds per turn in all; past that, the next one waits for
a later turn, in arrival order, while the rest of the loop runs. The work and the throughput
are the same; no turn is long.

    turns = TurnBudget()
    async with turns.section():  # a step that does not wait on the network: it is timed
        ...
    await turns.take(0.0015)  # the first step of a task, of about that cost, may start
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from types import TracebackType

DEFAULT_BUDGET = 0.002  # seconds of heavy work per turn of the loop


class TurnBudget:
    def __init__(self, budget: float = DEFAULT_BUDGET) -> None:
        self._budget = budget
        self._spent = 0.0
        self._new_turn_scheduled = False
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []  # a heap, by arrival
        self._tickets = itertools.count()

    def section(self) -> _Section:
        return _Section(self)

    async def take(self, seconds: float) -> None:
        """Wait for a turn with budget left, and book `seconds` of it for the step that
        follows (whose length cannot be timed: it ends on a network wait)."""
        await self._admit()
        self._spend(seconds)

    async def _admit(self) -> None:
        if self._spent < self._budget and not self._waiters:
            return
        loop = asyncio.get_running_loop()
        ticket = next(self._tickets)
        while True:
            waiter: asyncio.Future[None] = loop.create_future()
            heapq.heappush(self._waiters, (ticket, waiter))
            self._schedule_new_turn()
            await waiter
            if self._spent < self._budget:
                return
            # This turn's budget went to steps that arrived earlier: wait again, keeping
            # the place in the queue.

    def _spend(self, seconds: float) -> None:
        self._spent += seconds
        self._schedule_new_turn()

    def _schedule_new_turn(self) -> None:
        if not self._new_turn_scheduled:
            # call_soon runs it in the loop's next turn: the budget is per turn.
            asyncio.get_running_loop().call_soon(self._new_turn)
            self._new_turn_scheduled = True

    def _new_turn(self) -> None:
        self._new_turn_scheduled = False
        self._spent = 0.0
        # Wake every waiter, in arrival order (they run in that order); those the budget
        # cannot take then wait again with their original place.
        while self._waiters:
            _ticket, waiter = heapq.heappop(self._waiters)
            if not waiter.done():  # not cancelled
                waiter.set_result(None)


class _Section:
    __slots__ = ("_began", "_budget")

    def __init__(self, budget: TurnBudget) -> None:
        self._budget = budget
        self._began = 0.0

    async def __aenter__(self) -> None:
        await self._budget._admit()
        self._began = time.perf_counter()

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self._budget._spend(time.perf_counter() - self._began)
