"""The use cases: request stories, accept a callback, deliver, expire, keys, caps, usage.

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
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bot import codec, messages
from bot.api_client import Accepted, StoriesApiClient
from bot.api_payloads import result_or_error, sane_credits
from bot.errors import (
    ApiError,
    InvalidApiKey,
    InvalidInput,
    LimitReached,
    NoApiKey,
    NotAllowed,
    RateLimited,
    StoriesBotError,
    UnexpectedResponse,
    error_from_kind,
)
from bot.models import ChatRef, Origin, RequestState, StoriesResult, StoryItem
from bot.ports import ChatAdapter, StoryDelivery
from bot.ratelimit import KeyRateLimiter
from bot.settings import Settings
from bot.spending import cap_refusal, cap_warnings
from bot.store import ChatRecord, DuplicateCommand, RequestRecord, Store, Usage
from bot.usernames import normalise_username

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
DEFAULT_KEY_OWNER = "default"
LONG_QUEUE = 5.0  # seconds of client-side rate-limit wait worth telling the user about
MAX_QUEUE = 600.0  # beyond this, refuse instead of queueing


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


class _Keep:
    """Sentinel: leave a setting as it is."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP = _Keep()


@dataclass(frozen=True, slots=True)
class CallbackOutcome:
    status: int
    reason: str


class _Tracker:
    """Durable per-message delivery progress for one request."""

    def __init__(self, store: Store, request_id: int, clock: Clock) -> None:
        self._store = store
        self._request_id = request_id
        self._clock = clock

    async def sending(self, items: Any) -> None:
        await self._store.mark_items(self._request_id, [i.id for i in items], "sending",
                                     now=self._clock())

    async def sent(self, items: Any) -> None:
        await self._store.mark_items(self._request_id, [i.id for i in items], "sent",
                                     now=self._clock())

    async def unsent(self, items: Any) -> None:
        await self._store.clear_items(self._request_id, [i.id for i in items])


class StoriesService:
    def __init__(self, settings: Settings, store: Store, api: StoriesApiClient, *,
                 clock: Clock = utc_now, limiter: KeyRateLimiter | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 delivery_attempts: int = 3, delivery_backoff: float = 2.0) -> None:
        self._settings = settings
        self._store = store
        self._api = api
        self._clock = clock
        self._limiter = limiter or KeyRateLimiter()
        self._sleep = sleep
        self._delivery_attempts = delivery_attempts
        self._delivery_backoff = delivery_backoff
        self._adapters: dict[str, ChatAdapter] = {}
        self._deliveries: dict[int, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._cooldowns: dict[str, datetime] = {}
        self._wake_sweeper = asyncio.Event()
        self._changed = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None
        self._accepting = True
        self._stopped = False
        self._warned_sync_mode = False
        # Root of callback URLs (PUBLIC_URL); None means sync mode. The composition root may
        # set it once the callback server has bound its port.
        self.callback_base: str | None = settings.callback_base

    # wiring ---------------------------------------------------------------------------------

    def register_adapter(self, adapter: ChatAdapter) -> None:
        self._adapters[adapter.platform] = adapter

    @property
    def adapters(self) -> dict[str, ChatAdapter]:
        return dict(self._adapters)

    async def start(self) -> None:
        """Resume what a previous process left: deliver received results, expire the overdue."""
        self._sweeper = asyncio.create_task(self._sweep(), name="expiry-sweeper")
        for record in await self._store.requests_in_state(RequestState.RECEIVED):
            self._schedule_delivery(record.id)

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop taking work, let deliveries in progress finish within `timeout`, then cancel."""
        self._accepting = False
        self._stopped = True
        if self._sweeper:
            self._sweeper.cancel()
        pending = [*self._deliveries.values(), *self._tasks]
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
                busy = [*self._deliveries.values(), *self._tasks]
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

    def is_owner(self, origin: Origin) -> bool:
        return origin.user_ref in self._settings.bot_owner_ids

    def may_admin(self, origin: Origin) -> bool:
        return origin.is_admin or self.is_owner(origin)

    def _require_admin(self, origin: Origin) -> None:
        if not self.may_admin(origin):
            raise NotAllowed(f"{origin.user_ref} is not an admin of {origin.chat}")

    def _key_for(self, chat: ChatRecord | None) -> tuple[str, str]:
        """The API key for a chat and its fingerprint; raises `NoApiKey`."""
        if chat and chat.api_key:
            return chat.api_key, chat.key_fingerprint or self._store.key_fingerprint(chat.api_key)
        if self._settings.default_api_key:
            key = self._settings.default_api_key.get_secret_value()
            return key, self._store.key_fingerprint(key)
        raise NoApiKey(f"{chat.chat if chat else 'chat'} has no key")

    def _adapter(self, chat: ChatRef) -> ChatAdapter | None:
        return self._adapters.get(chat.platform)

    async def _say(self, origin: Origin, text: str) -> None:
        adapter = self._adapter(origin.chat)
        if adapter is None:
            log.warning("no adapter for %s; message dropped", origin.chat.platform)
            return
        try:
            await adapter.send_text(origin, text)
        except Exception:
            log.exception("could not send a message to %s", origin.chat)

    async def _edit_status(self, record: RequestRecord, text: str) -> None:
        adapter = self._adapter(record.origin.chat)
        if adapter is None:
            return
        try:
            await adapter.edit_status(record.origin, record.status_ref, text)
        except Exception:
            log.exception("could not update the status of request %d", record.id)

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
            await self._say(origin, user_text(exc, origin.chat.platform))

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
                self._cooldowns[origin.user_ref] = now
                await self._share(origin, username, shared, fingerprint)
                return
        if len(open_requests) >= self._settings.max_in_flight_per_chat:
            raise LimitReached(
                "in-flight cap",
                user_message=f"This chat already has {len(open_requests)} requests in progress. "
                "Wait for one to finish (a few seconds to a minute).")
        usage = await self._store.usage(origin.chat, now=now)
        refusal = cap_refusal(usage, in_flight=len(open_requests), now=now)
        if refusal:
            raise LimitReached("cap reached", user_message=refusal)
        self._cooldowns[origin.user_ref] = now
        await self._submit(origin, username, key, fingerprint)

    def _check_cooldown(self, origin: Origin, now: datetime) -> None:
        cooldown = self._settings.user_cooldown
        if cooldown <= 0 or self.may_admin(origin):
            return
        last = self._cooldowns.get(origin.user_ref)
        if last is not None:
            wait = cooldown - (now - last).total_seconds()
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
        status_ref = await self._post_status(origin, text)
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

    async def _post_status(self, origin: Origin, text: str) -> str | None:
        adapter = self._adapter(origin.chat)
        if adapter is None:
            return None
        try:
            return await adapter.post_status(origin, text)
        except Exception:
            log.exception("could not post a status in %s", origin.chat)
            return None

    async def _submit(self, origin: Origin, username: str, key: str, fingerprint: str) -> None:
        now = self._clock()
        token = secrets.token_urlsafe(32)
        record = await self._store.create_request(
            origin, username, token_hash=hash_token(token), key_fingerprint=fingerprint,
            now=now, deadline=now + timedelta(seconds=self._settings.request_timeout),
        )
        self._wake_sweeper.set()
        self._notify_changed()
        status_ref = await self._post_status(origin, messages.fetching(username))
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
            await self._edit_status(record, text)
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
            request_id, codec.dumps(result), credits=result.credits_charged,
            api_request_id=result.api_request_id, now=self._clock())
        if not received.changed:
            return False
        log.info("request %d: received %d items, %d credits", request_id, len(result.items),
                 result.credits_charged)
        self._schedule_delivery(request_id)
        await self._settle_followers(request_id, received=True)
        if received.request is not None:
            self._spawn(self._warn_caps(received.request.origin), f"caps-{request_id}")
        self._notify_changed()
        return True

    async def _fail(self, request_id: int, error: ApiError, *, credits: int) -> bool:
        received = await self._store.receive_failure(
            request_id, kind=error.kind, detail=error.detail[:500], credits=credits,
            api_request_id=error.api_request_id, now=self._clock())
        if not received.changed or received.request is None:
            return False
        await self._edit_status(received.request,
                                user_text(error, received.request.origin.chat.platform))
        await self._settle_followers(request_id, received=False)
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
                self._schedule_delivery(follower.id)
            else:
                error = error_from_kind(source.error_kind or "api_error",
                                        source.error_detail or "")
                await self._edit_status(follower, user_text(error, follower.origin.chat.platform))
        self._notify_changed()

    async def _warn_caps(self, origin: Origin) -> None:
        now = self._clock()
        usage = await self._store.usage(origin.chat, now=now)
        daily_on, monthly_on = await self._store.warned(origin.chat)
        warnings = cap_warnings(usage, now=now, daily_warned_on=daily_on,
                                monthly_warned_on=monthly_on)
        for text, day, month in warnings:
            await self._store.mark_warned(origin.chat, daily_on=day, monthly_on=month)
            await self._say(origin, text)

    async def handle_callback(self, token: str, body: Any) -> CallbackOutcome:
        """A callback POST (already size-checked and JSON-decoded by the web server)."""
        digest = hash_token(token)
        record = await self._store.find_by_token(digest)
        if record is None or not hmac.compare_digest(record.token_hash or "", digest):
            return CallbackOutcome(404, "unknown token")
        username = record.username
        try:
            result: StoriesResult | ApiError = result_or_error(body, username=username)
        except UnexpectedResponse as exc:
            log.warning("request %d: callback of an unknown shape (%s); kept for diagnosis",
                        record.id, exc.detail)
            if record.state in (RequestState.SUBMITTED, RequestState.PROCESSING):
                await self._store.keep_raw_body(record.id, json.dumps(body)[:65536])
            return CallbackOutcome(422, "unrecognised body")
        except ApiError as exc:
            result = exc
        credits = _credits_of(body)
        if record.state is RequestState.EXPIRED:
            if await self._store.record_late(record.id, credits=credits, now=self._clock()):
                log.info("request %d: late callback recorded (%d credits), not delivered",
                         record.id, credits)
            return CallbackOutcome(200, "late")
        if record.state not in (RequestState.SUBMITTED, RequestState.PROCESSING):
            return CallbackOutcome(200, "duplicate")
        if isinstance(result, ApiError):
            changed = await self._fail(record.id, result, credits=credits)
        else:
            changed = await self._accept_result(record.id, result)
        return CallbackOutcome(200, "accepted" if changed else "duplicate")

    # delivery -------------------------------------------------------------------------------

    def _schedule_delivery(self, request_id: int) -> None:
        if request_id in self._deliveries or self._stopped:
            return  # after stop, a received result waits for the next start
        task = asyncio.create_task(self._deliver_safely(request_id), name=f"deliver-{request_id}")
        self._deliveries[request_id] = task
        task.add_done_callback(lambda _t: self._deliveries.pop(request_id, None))

    async def _deliver_safely(self, request_id: int) -> None:
        try:
            await self._deliver(request_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivery of request %d failed unexpectedly", request_id)
        finally:
            self._notify_changed()

    async def _deliver(self, request_id: int) -> None:
        record = await self._store.get_request(request_id)
        if record is None or record.state is not RequestState.RECEIVED:
            return
        adapter = self._adapter(record.origin.chat)
        if adapter is None:
            log.warning("request %d: no %s adapter running; will deliver once it is", record.id,
                        record.origin.chat.platform)
            return
        source = await self._store.get_request(record.source_id) if record.source_id else record
        text = await self._store.result_json(source.id) if source else None
        if source is None or text is None:
            await self._store.mark_failed(record.id, kind="missing_result",
                                          detail="result not found", now=self._clock())
            return
        result = codec.loads(text)
        cached_at = None
        if record.source_id and source.received_at and record.created_at > source.received_at:
            cached_at = source.received_at
        if not result.items:
            await self._edit_status(record, messages.no_stories(result.profile))
            await self._store.mark_delivered(record.id, now=self._clock())
            return
        for attempt in range(1, self._delivery_attempts + 1):
            pending = await self._pending_items(record.id, result.items)
            if not pending:
                break
            delivery = StoryDelivery(
                request_id=record.id, profile=result.profile, items=tuple(pending),
                total=len(result.items), tracker=_Tracker(self._store, record.id, self._clock),
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
                if attempt < self._delivery_attempts:
                    await self._sleep(self._delivery_backoff * attempt)
        states = await self._store.item_states(record.id)
        posted = sum(1 for item in result.items if states.get(item.id) == "sent")
        uncertain = sum(1 for item in result.items if states.get(item.id) == "sending")
        total = len(result.items)
        if posted == 0 and uncertain == 0:
            await self._store.mark_failed(record.id, kind="delivery_failed",
                                          detail="nothing could be posted", now=self._clock())
            await self._edit_status(record, messages.delivery_failed(record.username))
            log.warning("request %d: nothing could be posted to %s", record.id,
                        record.origin.chat)
            return
        if posted < total:
            text = messages.partly_delivered(result.profile, posted, total, uncertain)
        else:
            text = messages.delivered(result.profile, total, cached_at=cached_at,
                                      now=self._clock())
        await self._edit_status(record, text)
        await self._store.mark_delivered(record.id, now=self._clock())
        log.info("request %d: delivered %d of %d items to %s", record.id, posted, total,
                 record.origin.chat)

    async def _pending_items(self, request_id: int,
                             items: tuple[StoryItem, ...]) -> list[StoryItem]:
        states = await self._store.item_states(request_id)
        uncertain = [i.id for i in items if states.get(i.id) == "sending"]
        if uncertain:
            # A message was being sent when the process stopped: it may have been posted.
            # Posting it again could duplicate it; the contract is "at most once".
            log.warning("request %d: %d items were in flight at a crash; not resent",
                        request_id, len(uncertain))
        return [i for i in items if i.id not in states]

    # expiry ---------------------------------------------------------------------------------

    async def expire_due(self) -> int:
        expired = await self._store.expire_due(self._clock())
        for record in expired:
            log.info("request %d expired", record.id)
            await self._edit_status(
                record, messages.expired(record.username, self._settings.request_timeout))
        if expired:
            self._notify_changed()
        return len(expired)

    async def _sweep(self) -> None:
        while True:
            self._wake_sweeper.clear()
            try:
                await self.expire_due()
                deadline = await self._store.next_deadline()
            except Exception:
                log.exception("expiry sweep failed")
                deadline = self._clock() + timedelta(seconds=5)
            timeout = None
            if deadline is not None:
                timeout = max(0.01, (deadline - self._clock()).total_seconds() + 0.01)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_sweeper.wait(), timeout)

    # keys, caps, usage ----------------------------------------------------------------------

    async def set_key(self, origin: Origin, key: str) -> str:
        self._require_admin(origin)
        key = (key or "").strip()
        if not key:
            raise InvalidInput("Send the key with the command: "
                               + messages.set_key_command(origin.chat.platform))
        if len(key) < 8 or len(key) > 512 or any(c.isspace() or not c.isprintable() for c in key):
            raise InvalidInput("That does not look like an API key (8–512 printable characters, "
                               "no spaces).")
        record = await self._store.set_key(origin.chat, key, set_by=origin.user_ref,
                                           now=self._clock())
        log.info("API key set for %s by %s", origin.chat, origin.user_ref)
        return f"API key saved for this chat: {record.key_hint}"

    async def remove_key(self, origin: Origin) -> str:
        self._require_admin(origin)
        if await self._store.remove_key(origin.chat):
            log.info("API key removed for %s by %s", origin.chat, origin.user_ref)
            return "API key removed. This chat can no longer fetch stories until a key is set."
        return "This chat has no API key."

    async def set_limits(self, origin: Origin, *, daily: int | _Keep | None = KEEP,
                         monthly: int | _Keep | None = KEEP) -> str:
        """Set the chat's credit caps; None removes one, KEEP (the default) leaves it."""
        self._require_admin(origin)
        for name, value in (("daily", daily), ("monthly", monthly)):
            if isinstance(value, int) and value < 0:
                raise InvalidInput(f"The {name} cap must be 0 or more.")
        current = await self._store.get_chat(origin.chat)
        if isinstance(daily, _Keep):
            daily = current.daily_cap if current else None
        if isinstance(monthly, _Keep):
            monthly = current.monthly_cap if current else None
        record = await self._store.set_caps(origin.chat, daily=daily, monthly=monthly,
                                            now=self._clock())
        log.info("caps of %s set by %s: daily %s, monthly %s", origin.chat, origin.user_ref,
                 daily, monthly)
        return "Spending caps: " + _caps_text(record.daily_cap, record.monthly_cap)

    async def limits_text(self, origin: Origin) -> str:
        """The chat's caps and how much of them is used (read-only: anyone may look)."""
        usage = await self.usage(origin.chat)
        lines = ["Spending caps: " + _caps_text(usage.daily_cap, usage.monthly_cap)]
        if usage.daily_cap is not None:
            lines.append(f"Used today: {usage.today.credits} of {usage.daily_cap} credits.")
        if usage.monthly_cap is not None:
            lines.append(f"Used this month: {usage.month.credits} of {usage.monthly_cap} "
                         "credits.")
        return "\n".join(lines)

    async def migrate_chat(self, old: ChatRef, new: ChatRef) -> None:
        """A chat changed id (a Telegram group upgraded to a supergroup): keep its key, caps,
        history and ledger under the new id."""
        await self._store.migrate_chat(old, new, now=self._clock())
        log.info("chat %s is now %s", old, new)

    async def usage(self, chat: ChatRef) -> Usage:
        return await self._store.usage(chat, now=self._clock())

    async def usage_text(self, origin: Origin) -> str:
        usage = await self.usage(origin.chat)
        return format_usage(usage, default_key=self._settings.default_api_key is not None)

    def help_text(self, platform: str) -> str:
        return messages.help_text(platform)


FRESH_WORDS = ("fresh", "--fresh", "refresh", "--refresh", "!")


def split_fresh(argument: str) -> tuple[str, bool]:
    """`natgeo fresh` / `--fresh natgeo` → ("natgeo", True)."""
    words = (argument or "").split()
    fresh = [w for w in words if w.lower() in FRESH_WORDS]
    if not fresh:
        return (argument or "").strip(), False
    return " ".join(w for w in words if w.lower() not in FRESH_WORDS), True


def _credits_of(body: Any) -> int:
    return sane_credits(body.get("creditsCharged")) if isinstance(body, dict) else 0


def _caps_text(daily: int | None, monthly: int | None) -> str:
    day = f"{daily} credits per day" if daily is not None else "no daily cap"
    month = f"{monthly} credits per month" if monthly is not None else "no monthly cap"
    return f"{day}, {month}."


def format_usage(usage: Usage, *, default_key: bool = False) -> str:
    def line(name: str, period: Any, cap: int | None = None) -> str:
        text = f"{name}: {period.requests} requests, {period.credits} credits"
        if cap is not None:
            text += f" of {cap}"
        if period.shared:
            text += f" ({period.shared} served from shared results, {period.saved} credits saved)"
        return text

    key = usage.key_hint or ("the operator's default key" if default_key
                             else "none (an admin can set one)")
    return "\n".join([
        f"Usage of this chat (API key: {key})",
        line("Today", usage.today, usage.daily_cap),
        line("This month", usage.month, usage.monthly_cap),
        line("All time", usage.total),
        "Caps: " + _caps_text(usage.daily_cap, usage.monthly_cap),
    ])
