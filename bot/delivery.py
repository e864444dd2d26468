"""Delivery: posting a received result to its chat, once, whatever happens.

One background task per request. Progress is recorded per message through a `DeliveryTracker`
(`sending` → `sent`, or back to nothing when the platform refused), so a retry or a restart
resumes where it stopped and never posts an item twice. An item left `sending` by a crash or
a lost connection may have been posted: it is not resent (at most once), and the final status
says so rather than claiming everything arrived.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from bot import codec, messages
from bot.models import RequestState, StoriesResult, StoryItem
from bot.outbox import Outbox
from bot.ports import StoryDelivery
from bot.store import RequestRecord, Store
from bot.turns import DELIVER, FOLLOW_UP, TurnBudget

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
DELIVERY_START = 0.001  # seconds: the CPU of a delivery's first step, booked in `TurnBudget`
MESSAGE_STEP = 0.001  # and of each further message's
AFTER_MESSAGE_STEP = 0.0003  # and of what follows a message: planning the next, or the end


class StoreTracker:
    """`DeliveryTracker` backed by the store, for one request; `states` mirrors what it wrote
    (item id → 'sending' | 'sent'), so progress is known without reading it back."""

    def __init__(self, store: Store, request_id: int, clock: Clock,
                 states: dict[str, str], turns: TurnBudget) -> None:
        self._store = store
        self._request_id = request_id
        self._clock = clock
        self.states = states
        self._turns = turns
        self._messages = 0

    async def sending(self, items: Sequence[StoryItem]) -> None:
        # The first message's step was booked when the delivery started (`DELIVERY_START`);
        # each further one is booked here, after other deliveries' first messages.
        if self._messages:
            await self._turns.take(MESSAGE_STEP, FOLLOW_UP)
        self._messages += 1
        await self._mark(items, "sending")

    async def sent(self, items: Sequence[StoryItem]) -> None:
        await self._mark(items, "sent")
        # What follows a message (planning the next, the delivery's end) waits for other
        # deliveries' first messages: in a burst, every chat gets its first album sooner.
        await self._turns.take(AFTER_MESSAGE_STEP, FOLLOW_UP)

    async def _mark(self, items: Sequence[StoryItem], state: str) -> None:
        ids = [i.id for i in items]
        await self._store.mark_items(self._request_id, ids, state, now=self._clock())
        self.states.update(dict.fromkeys(ids, state))

    async def unsent(self, items: Sequence[StoryItem]) -> None:
        ids = [i.id for i in items]
        await self._store.clear_items(self._request_id, ids)
        for item_id in ids:
            if self.states.get(item_id) == "sending":
                del self.states[item_id]


class Deliveries:
    def __init__(self, store: Store, outbox: Outbox, *, clock: Clock,
                 sleep: Callable[[float], Awaitable[None]], attempts: int, backoff: float,
                 on_change: Callable[[], None], turns: TurnBudget) -> None:
        self._store = store
        self._outbox = outbox
        self._clock = clock
        self._sleep = sleep
        self._attempts = attempts
        self._backoff = backoff
        self._on_change = on_change
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._stopped = False
        self._turns = turns
        # Deliveries mostly wait on the platforms' rate limits, so they are not bounded: a
        # bound makes the next chat wait for whole deliveries to finish (measured: with 8,
        # the 100th of 100 simultaneous results waited 11 s for its first album, vs 2.3 s
        # unbounded, while the largest event-loop stall went only from 36 to 28 ms). The
        # network fan-out is bounded where it costs, in `MediaFetcher`.

    @property
    def running(self) -> list[asyncio.Task[None]]:
        return list(self._tasks.values())

    def stop(self) -> None:
        """No new deliveries: a result received from now on waits for the next start."""
        self._stopped = True

    def schedule(self, request_id: int, *, record: RequestRecord | None = None,
                 result: StoriesResult | None = None) -> None:
        """Deliver `request_id` in the background. A caller that has just received the result
        passes it with the record: then nothing is read back from the store."""
        if request_id in self._tasks or self._stopped:
            return
        task = asyncio.create_task(self._deliver_safely(request_id, record, result),
                                   name=f"deliver-{request_id}")
        self._tasks[request_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(request_id, None))

    async def _deliver_safely(self, request_id: int, record: RequestRecord | None,
                              result: StoriesResult | None) -> None:
        try:
            # A delivery's first step (progress, the first album's request) is ~1 ms: a
            # burst of results starts over several turns of the loop, not all in one.
            await self._turns.take(DELIVERY_START, DELIVER)
            await self._deliver(request_id, record, result)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivery of request %d failed unexpectedly", request_id)
        finally:
            self._on_change()

    async def _deliver(self, request_id: int, record: RequestRecord | None,
                       result: StoriesResult | None) -> None:
        fresh = record is not None and result is not None  # received just now, nothing sent
        if record is None:
            record = await self._store.get_request(request_id)
        if record is None or record.state is not RequestState.RECEIVED:
            return
        adapter = self._outbox.adapter_for(record.origin.chat)
        if adapter is None:
            log.warning("request %d: no %s adapter running; will deliver once it is", record.id,
                        record.origin.chat.platform)
            return
        cached_at = None
        if result is None:
            source = (await self._store.get_request(record.source_id) if record.source_id
                      else record)
            stored = await self._store.stored_result(source.id) if source else None
            if source is None or stored is None:
                await self._store.mark_failed(record.id, kind="missing_result",
                                              detail="result not found", now=self._clock())
                return
            result = codec.unpack(stored)
            if (record.source_id and source.received_at
                    and record.created_at > source.received_at):
                cached_at = source.received_at
        if not result.items:
            await self._outbox.edit_status(record, messages.no_stories(result.profile))
            await self._store.mark_delivered(record.id, now=self._clock())
            return
        states = {} if fresh else await self._store.item_states(record.id)
        tracker = StoreTracker(self._store, record.id, self._clock, states, self._turns)
        for attempt in range(1, self._attempts + 1):
            pending = self._pending_items(record.id, result.items, states)
            if not pending:
                break
            delivery = StoryDelivery(
                request_id=record.id, profile=result.profile, items=tuple(pending),
                total=len(result.items), tracker=tracker,
                first_index=result.items.index(pending[0]), cached_at=cached_at,
            )
            try:
                await adapter.send_stories(record.origin, delivery)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("request %d: delivery attempt %d failed: %s", record.id, attempt,
                            type(exc).__name__)
                if attempt < self._attempts:
                    await self._sleep(self._backoff * attempt)
        posted = sum(1 for item in result.items if states.get(item.id) == "sent")
        uncertain = sum(1 for item in result.items if states.get(item.id) == "sending")
        total = len(result.items)
        if posted == 0 and uncertain == 0:
            await self._store.mark_failed(record.id, kind="delivery_failed",
                                          detail="nothing could be posted", now=self._clock())
            await self._outbox.edit_status(record, messages.delivery_failed(record.username))
            log.warning("request %d: nothing could be posted to %s", record.id,
                        record.origin.chat)
            return
        if posted < total:
            text = messages.partly_delivered(result.profile, posted, total, uncertain)
        else:
            text = messages.delivered(result.profile, total, cached_at=cached_at,
                                      now=self._clock())
        await self._outbox.edit_status(record, text)
        await self._store.mark_delivered(record.id, now=self._clock())
        log.info("request %d: delivered %d of %d items to %s", record.id, posted, total,
                 record.origin.chat)

    @staticmethod
    def _pending_items(request_id: int, items: tuple[StoryItem, ...],
                       states: dict[str, str]) -> list[StoryItem]:
        uncertain = [i.id for i in items if states.get(i.id) == "sending"]
        if uncertain:
            # A message was in flight when the process stopped or the connection broke: it
            # may have been posted. Posting it again could duplicate it: "at most once".
            log.warning("request %d: %d items were in flight and may be posted; not resent",
                        request_id, len(uncertain))
        return [i for i in items if i.id not in states]
