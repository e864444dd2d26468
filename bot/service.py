"""The use cases of a request: ask for stories, accept a callback, expire (delivery is in
`bot.delivery`, keys/caps/usage in `bot.chat_admin`).

A request's life (persisted in the store):

    submitted ──► processing ──► received ──► delivered
        │              │             └──────► failed (could not be posted)
        └──────────────┴──► failed (API said no) / expired (no callback in time)

The callback token, not the API's requestId, identifies a request: the callback may arrive
before the POST that asked for it has returned. Deliveries run in the background, one task
per request, and record progress per message so nothing is posted twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bot import codec, messages
from bot.api_client import Accepted, StoriesApiClient
from bot.api_payloads import credits_of, result_or_error
from bot.chat_admin import ChatAdmin
from bot.delivery import Deliveries
from bot.errors import (
    ApiError,
    InvalidApiKey,
    LimitReached,
    NoApiKey,
    RateLimited,
    StoriesBotError,
    UnexpectedResponse,
    error_from_kind,
)
from bot.models import Origin, RequestState, StoriesResult
from bot.outbox import Outbox
from bot.ports import ChatAdapter
from bot.ratelimit import KeyRateLimiter
from bot.settings import Settings
from bot.spending import cap_refusal, cap_warnings
from bot.store import ChatRecord, DuplicateCommand, RequestRecord, Store
from bot.turns import COMMAND, TurnBudget
from bot.usernames import normalise_username

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
LONG_QUEUE = 5.0  # seconds of client-side rate-limit wait worth telling the user about
MAX_QUEUE = 600.0  # beyond this, refuse instead of queueing
API_REQUEST_STEP = 0.001  # seconds: the CPU from the status message to the API request
# Stories live 24 hours: the result of a request that ended two days ago is never posted again
# (nor shared: a shared fetch is at most `cache_ttl` old), so its result and delivery progress
# are dropped, hourly, a batch of requests per store call (~2 ms on the event loop for 25;
# 50,000 old requests took 2,001 calls, median 1.7 ms).
RESULTS_KEPT = timedelta(hours=48)
PRUNE_EVERY = timedelta(hours=1)
PRUNE_BATCH = 25


def user_text(error: StoriesBotError, platform: str) -> str:
    """The sentence a chat sees for `error`, naming the platform's own commands."""
    if isinstance(error, NoApiKey) and error._user_message is None:
        return messages.no_key(platform)
    if isinstance(error, InvalidApiKey) and error._user_message is None:
        return messages.invalid_key(platform)
    return error.user_message


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def utc_now() -> datetime:
    return datetime.now(UTC)


# The states in which a callback's body is read (`StoriesService.wants_body`).
_CALLBACK_STATES = frozenset({RequestState.SUBMITTED, RequestState.PROCESSING,
                              RequestState.EXPIRED})


@dataclass(frozen=True, slots=True)
class CallbackOutcome:
    status: int
    reason: str


class StoriesService(ChatAdmin):
    def __init__(self, settings: Settings, store: Store, api: StoriesApiClient, *,
                 clock: Clock = utc_now, limiter: KeyRateLimiter | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 delivery_attempts: int = 3, delivery_backoff: float = 2.0) -> None:
        super().__init__(settings, store, clock)
        self._api = api
        self._limiter = limiter or KeyRateLimiter()
        self._sleep = sleep
        self._outbox = Outbox()
        # Shared by the heavy steps of commands, callbacks and deliveries (`bot.turns`).
        self.turns = TurnBudget()
        self._deliveries = Deliveries(store, self._outbox, clock=clock, sleep=sleep,
                                      turns=self.turns,
                                      attempts=delivery_attempts, backoff=delivery_backoff,
                                      on_change=self._notify_changed)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._cooldowns: dict[str, datetime] = {}
        self._wake_sweeper = asyncio.Event()
        self._changed = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None
        self._accepting = True
        self._warned_sync_mode = False
        # Root of callback URLs (PUBLIC_URL); None means sync mode. The composition root may
        # set it once the callback server has bound its port.
        self.callback_base: str | None = settings.callback_base

    # wiring ---------------------------------------------------------------------------------

    def register_adapter(self, adapter: ChatAdapter) -> None:
        self._outbox.register(adapter)

    @property
    def adapters(self) -> dict[str, ChatAdapter]:
        return self._outbox.adapters

    async def start(self) -> None:
        """Resume what a previous process left: deliver received results, expire the overdue."""
        self._sweeper = asyncio.create_task(self._sweep(), name="expiry-sweeper")
        for record in await self._store.requests_in_state(RequestState.RECEIVED):
            self._deliveries.schedule(record.id)

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop taking work, let deliveries in progress finish within `timeout`, then cancel."""
        self._accepting = False
        self._deliveries.stop()
        if self._sweeper:
            self._sweeper.cancel()
        pending = [*self._deliveries.running, *self._tasks]
        if pending:
            _done, still = await asyncio.wait(pending, timeout=timeout)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still, timeout=2)
        if self._sweeper:
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    async def wait_idle(self, timeout: float | None = None) -> None:
        """Wait until no request is open and no delivery runs (the demo's exit, tests)."""
        async def settled() -> None:
            while True:
                self._changed.clear()
                busy = [*self._deliveries.running, *self._tasks]
                if busy:
                    await asyncio.wait(busy)
                    continue
                if await self._store.count_pending() == 0:
                    return
                await self._changed.wait()

        await asyncio.wait_for(settled(), timeout)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _notify_changed(self) -> None:
        self._changed.set()

    # helpers --------------------------------------------------------------------------------

    def _key_for(self, chat: ChatRecord | None) -> tuple[str, str]:
        """The API key for a chat and its fingerprint; raises `NoApiKey`."""
        if chat and chat.api_key:
            return chat.api_key, chat.key_fingerprint or self._store.key_fingerprint(chat.api_key)
        if self._settings.default_api_key:
            key = self._settings.default_api_key.get_secret_value()
            return key, self._store.key_fingerprint(key)
        raise NoApiKey(f"{chat.chat if chat else 'chat'} has no key")

    # the command ----------------------------------------------------------------------------

    async def request_stories(self, origin: Origin, argument: str, *, force: bool = False) -> None:
        """`/stories <argument>`: validate, check limits, then fetch or share. Never raises a
        `StoriesBotError`: refusals are told to the chat. `natgeo fresh` (or `force=True`)
        skips shared results: admins only."""
        argument, fresh = split_fresh(argument)
        force = force or fresh
        if origin.command_id and await self._store.seen_command(origin.chat, origin.command_id):
            log.info("command %s in %s already handled (redelivered); ignored",
                     origin.command_id, origin.chat)
            return
        try:
            await self._request_stories(origin, argument, force=force)
        except DuplicateCommand:
            log.info("command %s in %s arrived twice at once; handled once",
                     origin.command_id, origin.chat)
        except StoriesBotError as exc:
            log.info("request refused in %s: %s", origin.chat, exc.kind)
            if isinstance(exc, LimitReached):
                await self._store.add_ledger(origin.chat, None, "refused", note=exc.detail[:200],
                                             now=self._clock())
            await self._outbox.say(origin, user_text(exc, origin.chat.platform))

    async def _request_stories(self, origin: Origin, argument: str, *, force: bool) -> None:
        if not self._accepting:
            raise LimitReached("shutting down",
                               user_message="The bot is restarting. Try again in a minute.")
        username = normalise_username(argument)
        if force:
            self._require_admin(origin)
        chat = await self._store.get_chat(origin.chat)
        key, fingerprint = self._key_for(chat)
        now = self._clock()
        self._check_cooldown(origin, now)
        open_requests = await self._store.open_requests(origin.chat)
        if any(r.username == username for r in open_requests):
            raise LimitReached(
                "duplicate in flight",
                user_message=f"The stories of @{username} are already being fetched for this "
                "chat.")
        if not force:
            ttl = self._settings.cache_ttl
            since = now - timedelta(seconds=ttl) if ttl > 0 else None
            shared = await self._store.find_shareable(username, fingerprint,
                                                      received_since=since)
            if shared is not None:
                self._start_cooldown(origin, now)
                await self._share(origin, username, shared, fingerprint)
                return
        if len(open_requests) >= self._settings.max_in_flight_per_chat:
            raise LimitReached(
                "in-flight cap",
                user_message=f"This chat already has {len(open_requests)} requests in progress. "
                "Wait for one to finish (a few seconds to a minute).")
        if chat and (chat.daily_cap is not None or chat.monthly_cap is not None):
            usage = await self._store.usage(origin.chat, now=now)  # six sums: only with caps
            refusal = cap_refusal(usage, in_flight=len(open_requests), now=now)
            if refusal:
                raise LimitReached("cap reached", user_message=refusal)
        self._start_cooldown(origin, now)
        await self._submit(origin, username, key, fingerprint)

    def _start_cooldown(self, origin: Origin, now: datetime) -> None:
        if len(self._cooldowns) > 10_000:  # forget the users whose cooldown is over
            horizon = now - timedelta(seconds=self._settings.user_cooldown)
            self._cooldowns = {u: t for u, t in self._cooldowns.items() if t > horizon}
        self._cooldowns[origin.user_ref] = now

    def _cooldown_left(self, origin: Origin, now: datetime) -> float:
        last = self._cooldowns.get(origin.user_ref)
        if last is None or self._settings.user_cooldown <= 0:
            return 0.0
        return self._settings.user_cooldown - (now - last).total_seconds()

    def admin_matters(self, origin: Origin, argument: str, *, force: bool = False) -> bool:
        """Whether `/stories <argument>` from `origin` depends on the sender being an admin:
        for a fresh fetch, or to skip a cooldown still running. An adapter whose admin check
        costs a call to its platform asks this first."""
        return force or split_fresh(argument)[1] or self._cooldown_left(origin, self._clock()) > 0

    def _check_cooldown(self, origin: Origin, now: datetime) -> None:
        if self.may_admin(origin):
            return
        wait = self._cooldown_left(origin, now)
        if wait > 0:
            raise LimitReached(
                "cooldown", retry_after=wait,
                user_message=f"Please wait {messages.duration_text(max(1, wait))} before "
                "asking again.")

    async def _share(self, origin: Origin, username: str, source: RequestRecord,
                     fingerprint: str) -> None:
        """Serve `source`'s fetch to this chat at no credit: join it, or reuse its result."""
        now = self._clock()
        in_flight = not source.state.is_final and source.state is not RequestState.RECEIVED
        record = await self._store.create_request(
            origin, username, token_hash=None, key_fingerprint=fingerprint, now=now,
            deadline=source.deadline_at, source_id=source.id, state=RequestState.PROCESSING,
        )
        text = messages.joined(username) if in_flight else messages.fetching(username)
        status_ref = await self._outbox.post_status(origin, text)
        await self._store.set_status_ref(record.id, status_ref)
        if in_flight:
            log.info("request %d joins in-flight request %d", record.id, source.id)
            # The source may have settled between the lookup and the insert: settle again.
            current = await self._store.get_request(source.id)
            if current and current.state in (RequestState.RECEIVED, RequestState.DELIVERED):
                await self._settle_followers(source.id, received=True)
            elif current and current.state.is_final:
                await self._settle_followers(source.id, received=False)
            return
        log.info("request %d reuses the result of request %d", record.id, source.id)
        await self._settle_followers(source.id, received=True)

    async def _submit(self, origin: Origin, username: str, key: str, fingerprint: str) -> None:
        now = self._clock()
        token = secrets.token_urlsafe(32)
        record = await self._store.create_request(
            origin, username, token_hash=hash_token(token), key_fingerprint=fingerprint,
            now=now, deadline=now + timedelta(seconds=self._settings.request_timeout),
        )
        self._wake_sweeper.set()
        self._notify_changed()
        status_ref = await self._outbox.post_status(origin, messages.fetching(username))
        await self.turns.take(API_REQUEST_STEP, COMMAND)  # the step to the API request
        await self._store.set_status_ref(record.id, status_ref)
        # Book the API slot last, right before the POST: the API counts a request when it
        # arrives, so the time between booking and sending must be only the wait itself.
        wait = self._limiter.reserve(fingerprint)
        if wait > MAX_QUEUE:
            await self._fail(record.id, RateLimited("client-side limit", retry_after=wait),
                             credits=0)
            return
        if wait > LONG_QUEUE:
            text = (f"{messages.fetching(username)} (queued for about "
                    f"{messages.duration_text(wait)} to respect the API's limits)")
            record = await self._store.get_request(record.id) or record
            await self._outbox.edit_status(record, text)
        if wait > 0:
            await self._sleep(wait)
        base = self.callback_base
        webhook = f"{base}/callbacks/{token}" if base else None
        if webhook is None and not self._warned_sync_mode:
            self._warned_sync_mode = True
            log.warning("PUBLIC_URL is unset: asking the API for data directly (sync mode); "
                        "webhook mode is recommended")
        try:
            answer = await self._api.request_stories(key, username, webhook)
        except ApiError as exc:
            log.info("request %d: API refused (%s, status %s)", record.id, exc.kind, exc.status)
            if isinstance(exc, RateLimited):
                self._limiter.block(fingerprint, exc.retry_after or 60.0)
            await self._fail(record.id, exc, credits=0)
            return
        if isinstance(answer, Accepted):
            await self._store.mark_processing(record.id, api_request_id=answer.api_request_id,
                                              now=self._clock())
            log.info("request %d: processing (api request %s)", record.id, answer.api_request_id)
        else:
            await self._accept_result(record.id, answer)

    # results --------------------------------------------------------------------------------

    async def _accept_result(self, request_id: int, result: StoriesResult) -> bool:
        received = await self._store.receive_result(
            request_id, codec.pack(result), credits=result.credits_charged,
            api_request_id=result.api_request_id, now=self._clock())
        if not received.changed:
            return False
        log.info("request %d: received %d items, %d credits", request_id, len(result.items),
                 result.credits_charged)
        # The parsed result goes straight to delivery: no re-read, no re-decoding.
        for record in (received.request, *received.followers):
            if record is not None:
                self._deliveries.schedule(record.id, record=record, result=result)
        if received.has_caps and received.request is not None:
            self._spawn(self._warn_caps(received.request.origin), f"caps-{request_id}")
        self._notify_changed()
        return True

    async def _fail(self, request_id: int, error: ApiError, *, credits: int) -> bool:
        received = await self._store.receive_failure(
            request_id, kind=error.kind, detail=error.detail[:500], credits=credits,
            api_request_id=error.api_request_id, now=self._clock())
        if not received.changed or received.request is None:
            return False
        for record in (received.request, *received.followers):
            await self._outbox.edit_status(record, user_text(error, record.origin.chat.platform))
        self._notify_changed()
        return True

    async def _settle_followers(self, source_id: int, *, received: bool) -> None:
        source = await self._store.get_request(source_id)
        if source is None:
            return
        state = RequestState.RECEIVED if received else RequestState.FAILED
        followers = await self._store.settle_followers(
            source_id, state=state, kind=None if received else source.error_kind,
            detail=None if received else source.error_detail, now=self._clock())
        for follower in followers:
            if received:
                self._deliveries.schedule(follower.id)
            else:
                error = error_from_kind(source.error_kind or "api_error",
                                        source.error_detail or "")
                await self._outbox.edit_status(
                    follower, user_text(error, follower.origin.chat.platform))
        self._notify_changed()

    async def _warn_caps(self, origin: Origin) -> None:
        now = self._clock()
        usage = await self._store.usage(origin.chat, now=now)
        daily_on, monthly_on = await self._store.warned(origin.chat)
        warnings = cap_warnings(usage, now=now, daily_warned_on=daily_on,
                                monthly_warned_on=monthly_on)
        for text, day, month in warnings:
            await self._store.mark_warned(origin.chat, daily_on=day, monthly_on=month)
            await self._outbox.say(origin, text)

    async def callback_request(self, token: str) -> RequestRecord | None:
        """The request a callback's URL token belongs to, or None: the web server asks before
        it reads the body, so that a guessed token costs one indexed lookup."""
        digest = hash_token(token)
        record = await self._store.find_by_token(digest)
        if record is None or not hmac.compare_digest(record.token_hash or "", digest):
            return None
        return record

    @staticmethod
    def wants_body(record: RequestRecord) -> bool:
        """Whether a callback for `record` is read at all: a result awaited, or a late one
        (what the API charged for it goes on the ledger). A request settled otherwise answers
        a replayed callback "duplicate" unread."""
        return record.state in _CALLBACK_STATES

    async def handle_callback(self, record: RequestRecord, body: Any,
                              raw: bytes) -> CallbackOutcome:
        """A callback POST for `record` (found by `callback_request` before the body was read),
        size-checked and decoded by the web server (`decode_body`); `raw` is the body as
        received, kept when its shape is unknown."""
        credits = credits_of(body)
        if record.state is RequestState.EXPIRED:
            return await self._late(record.id, credits)
        if record.state not in (RequestState.SUBMITTED, RequestState.PROCESSING):
            return CallbackOutcome(200, "duplicate")
        try:
            result: StoriesResult | ApiError = result_or_error(body, username=record.username)
        except UnexpectedResponse as exc:
            log.warning("request %d: callback of an unknown shape (%s); kept for diagnosis",
                        record.id, exc.detail)
            await self._store.keep_raw_body(record.id, raw.decode(errors="replace")[:65536])
            return CallbackOutcome(422, "unrecognised body")
        except ApiError as exc:
            result = exc
        if isinstance(result, ApiError):
            changed = await self._fail(record.id, result, credits=credits)
        else:
            changed = await self._accept_result(record.id, result)
        if changed:
            return CallbackOutcome(200, "accepted")
        # Settled while the body was on its way: by another callback, or expired.
        current = await self._store.get_request(record.id)
        if current is not None and current.state is RequestState.EXPIRED:
            return await self._late(record.id, credits)
        return CallbackOutcome(200, "duplicate")

    async def _late(self, request_id: int, credits: int) -> CallbackOutcome:
        if await self._store.record_late(request_id, credits=credits, now=self._clock()):
            log.info("request %d: late callback recorded (%d credits), not delivered",
                     request_id, credits)
        return CallbackOutcome(200, "late")

    # expiry ---------------------------------------------------------------------------------

    async def expire_due(self) -> int:
        expired = await self._store.expire_due(self._clock())
        for record in expired:
            log.info("request %d expired", record.id)
            await self._outbox.edit_status(
                record, messages.expired(record.username, self._settings.request_timeout))
        if expired:
            self._notify_changed()
        return len(expired)

    async def prune(self) -> int:
        """Drop the results and delivery progress of requests that ended more than
        `RESULTS_KEPT` (or twice `cache_ttl`) ago; how many requests."""
        kept = max(RESULTS_KEPT, timedelta(seconds=2 * self._settings.cache_ttl))
        before = self._clock() - kept
        total = 0
        while pruned := await self._store.prune(finished_before=before, batch=PRUNE_BATCH):
            total += pruned
            if pruned < PRUNE_BATCH:
                break
            await asyncio.sleep(0)  # store calls do not yield: let the loop run between batches
        if total:
            log.info("dropped the stored results of %d requests that ended before %s", total,
                     f"{before:%Y-%m-%d %H:%M} UTC")
        return total

    async def _sweep(self) -> None:
        next_prune = self._clock()
        while True:
            self._wake_sweeper.clear()
            try:
                await self.expire_due()
                if self._clock() >= next_prune:
                    next_prune = self._clock() + PRUNE_EVERY
                    await self.prune()
                deadline = await self._store.next_deadline()
            except Exception:
                log.exception("expiry sweep failed")
                deadline = self._clock() + timedelta(seconds=5)
            deadline = min(deadline, next_prune) if deadline is not None else next_prune
            timeout = max(0.01, (deadline - self._clock()).total_seconds() + 0.01)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_sweeper.wait(), timeout)


FRESH_WORDS = ("fresh", "--fresh", "refresh", "--refresh", "!")


def split_fresh(argument: str) -> tuple[str, bool]:
    """`natgeo fresh` / `--fresh natgeo` → ("natgeo", True)."""
    words = (argument or "").split()
    fresh = [w for w in words if w.lower() in FRESH_WORDS]
    if not fresh:
        return (argument or "").strip(), False
    return " ".join(w for w in words if w.lower() not in FRESH_WORDS), True

