"""`TurnBudget`: heavy steps spread over turns of the event loop, by priority then arrival."""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import AsyncIterator

import pytest

from bot.turns import COMMAND, DELIVER, FOLLOW_UP, RECEIVE, TurnBudget


class TurnCounter:
    """Counts the turns of the running loop (a callback that re-schedules itself each turn)."""

    def __init__(self) -> None:
        self.now = 0
        self._loop = asyncio.get_running_loop()
        self._handle = self._loop.call_soon(self._tick)

    def _tick(self) -> None:
        self.now += 1
        self._handle = self._loop.call_soon(self._tick)

    def stop(self) -> None:
        self._handle.cancel()


@pytest.fixture
async def turns() -> AsyncIterator[TurnCounter]:
    counter = TurnCounter()
    yield counter
    counter.stop()


async def test_a_burst_is_spread_over_turns_in_arrival_order(turns: TurnCounter) -> None:
    budget = TurnBudget(0.004)
    ran: list[tuple[int, int]] = []  # (task, turn)

    async def step(n: int) -> None:
        await budget.take(0.0015, COMMAND)
        ran.append((n, turns.now))

    await asyncio.gather(*(step(n) for n in range(7)))
    assert [n for n, _ in ran] == list(range(7))  # arrival order
    by_turn: dict[int, list[int]] = {}
    for n, turn in ran:
        by_turn.setdefault(turn, []).append(n)
    # 1.5 ms each within 4 ms a turn: three start in a turn (the third overdraws it)
    assert list(by_turn.values()) == [[0, 1, 2], [3, 4, 5], [6]]


async def test_sections_are_charged_what_they_took(turns: TurnCounter) -> None:
    budget = TurnBudget(0.004)
    turn_of: dict[str, int] = {}

    async def heavy(name: str, seconds: float) -> None:
        async with budget.section(RECEIVE):
            turn_of[name] = turns.now
            began = time.perf_counter()
            while time.perf_counter() - began < seconds:  # CPU work, not a wait
                pass

    # Free sections leave the budget whole; the long one overdraws it: the next waits.
    await asyncio.gather(heavy("free", 0.0), heavy("also free", 0.0), heavy("long", 0.005),
                         heavy("after", 0.0))
    assert turn_of["free"] == turn_of["also free"] == turn_of["long"] < turn_of["after"]


async def test_within_budget_nothing_waits(turns: TurnCounter) -> None:
    budget = TurnBudget(1.0)
    started = turns.now
    for _ in range(50):
        await budget.take(0.001, COMMAND)
    assert turns.now == started  # never yielded to the loop


async def test_a_cancelled_waiter_holds_up_no_one(turns: TurnCounter) -> None:
    budget = TurnBudget(0.001)
    # All four start in the same turn: the first spends it, the next two queue for a later
    # turn, the last cancels the first of those before that turn comes.
    hog = asyncio.create_task(budget.take(0.002, COMMAND))
    waiting = asyncio.create_task(budget.take(0.001, COMMAND))
    behind = asyncio.create_task(budget.take(0.001, COMMAND))

    async def cancel_waiting() -> None:
        assert not waiting.done()
        waiting.cancel()

    await asyncio.gather(hog, behind, cancel_waiting())
    assert waiting.cancelled()


async def test_deliveries_go_before_waiting_callbacks_and_commands(turns: TurnCounter) -> None:
    """A delivery's start that arrives after a queue of other steps is served first, then a
    callback, then a delivery's further message, then a command."""
    budget = TurnBudget(0.001)
    ran: list[str] = []

    async def step(name: str, priority: int) -> None:
        await budget.take(0.001, priority)
        ran.append(name)

    first = asyncio.create_task(step("first", COMMAND))  # spends the turn
    queued = [asyncio.create_task(step(name, priority)) for name, priority in (
        ("command", COMMAND), ("follow-up", FOLLOW_UP), ("callback", RECEIVE),
        ("delivery", DELIVER))]
    await asyncio.gather(first, *queued)
    assert ran == ["first", "delivery", "callback", "follow-up", "command"]


async def test_a_waiter_cancelled_once_woken_passes_its_turn_on(turns: TurnCounter) -> None:
    """Only as many waiters are woken as the budget is likely to take (here one); if that one
    is cancelled before it runs, the next still gets its turn."""
    budget = TurnBudget(0.001)
    loop = asyncio.get_running_loop()

    async def hog() -> None:
        await budget.take(0.002, COMMAND)  # spends this turn; the next one is scheduled
        loop.call_soon(first.cancel)  # runs just after that turn has woken `first`

    hogging = asyncio.create_task(hog())
    first = asyncio.create_task(budget.take(0.001, COMMAND))
    second = asyncio.create_task(budget.take(0.001, COMMAND))
    async with asyncio.timeout(1):
        await asyncio.gather(hogging, second)
    assert first.cancelled()


async def test_a_long_queue_is_not_woken_whole_at_every_turn(
        turns: TurnCounter, monkeypatch: pytest.MonkeyPatch) -> None:
    """50 steps of 1 ms each behind a full turn: each waits in the queue once (or a few
    times), not once per turn until its own (which would be ~1,275 waits for 50)."""
    import bot.turns

    pushes = 0
    original = heapq.heappush

    def counting_push(heap: list[object], item: object) -> None:
        nonlocal pushes
        pushes += 1
        original(heap, item)

    monkeypatch.setattr(bot.turns.heapq, "heappush", counting_push)
    budget = TurnBudget(0.001)
    ran: list[int] = []

    async def step(n: int) -> None:
        await budget.take(0.001, COMMAND)
        ran.append(n)

    await asyncio.gather(*(step(n) for n in range(51)))
    assert ran == list(range(51))
    assert pushes < 2 * 50
