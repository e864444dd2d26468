"""The emulator itself: an aiohttp.web server that behaves like the eternalsocial stories API,
and the Python handle tests and the demo drive it with.

    async with Emulator(EmulatorConfig(keys={"k": 10})) as emulator:
        url = emulator.base_url                      # http://127.0.0.1:<port>
        ...                                          # the code under test calls the API
        await emulator.wait_for_callbacks(1)         # no sleeps: wait for the event itself
        assert emulator.charged["k"] == 1

What it checks, in order: injected faults, the Bearer key (401), the rate limits (429 with
Retry-After; every request with a valid key counts, except those refused with 429), the body
(400), the credits (402). Then it answers with the result (sync mode) or
"processing" and POSTs the result to `webhookUrl` later (webhook mode), retrying failed POSTs
with exponential backoff. Credits are reserved when a request is accepted and charged when its
result is produced: `cost_per_request` for a success (an account with no stories included,
see `EmulatorConfig.cost_when_empty`), nothing for "User not found" or "This account is private".
Keys are never logged, only fingerprints.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
import uuid
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any, Literal, Self
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from bot.emulator import cdn
from bot.emulator.accounts import AccountBook, AccountSpec, ItemLike, account_spec
from bot.emulator.config import EmulatorConfig
from bot.emulator.payloads import (
    MediaLinks,
    build_reel,
    failure_body,
    processing_body,
    success_body,
)
from bot.emulator.ratelimit import RateLimiter
from bot.emulator.records import (
    CallbackAttempt,
    CallbackDelivery,
    Outcome,
    RequestRecord,
    key_fingerprint,
    redact_url,
)

log = logging.getLogger(__name__)

STORIES_PATH = "/api/instagram/stories"
_PERMANENT_CALLBACK_FAILURES = frozenset({404, 410, 413})
_UNAUTHORIZED = {"error": "Unauthorized", "message": "Invalid or expired token"}
_RATE_LIMITED = {"error": "Too Many Requests", "message": "Rate limit exceeded"}
_NO_CREDITS = {"error": "Payment Required", "message": "Insufficient credits"}
_PROXY_PAGE = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n<center><h1>{status} "
    "{reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


class _BadRequest(Exception):
    pass


class Emulator:
    """One emulated API on one port. Start it with `await start()` or `async with`.

    Control and inspection (all plain attributes and methods, safe to use between requests):
    `charged` (credits charged per key), `total_charged`, `requests`, `callback_attempts`,
    `deliveries`, `balance()`, `set_balance()`, `add_key()`, `remove_key()`, `add_account()`,
    `fail_next()`, `hang_next()`, `pause_callbacks()`/`resume_callbacks()`, `media_url()` and
    the `wait_for_*` coroutines. `config` may be changed while running.
    """

    def __init__(self, config: EmulatorConfig | None = None, *, host: str = "127.0.0.1",
                 port: int = 0, clock: Callable[[], float] | None = None,
                 public_url: str | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.host = host
        self.port = port
        self.clock: Callable[[], float] = clock or time.time
        self._public_url = public_url.rstrip("/") if public_url else None
        self.accounts = AccountBook()
        self._balances: dict[str, int] = dict(self.config.keys)
        self.charged: dict[str, int] = {key: 0 for key in self._balances}
        self.requests: list[RequestRecord] = []
        self.callback_attempts: list[CallbackAttempt] = []
        self.deliveries: list[CallbackDelivery] = []
        self.limiter = RateLimiter(
            lambda: (self.config.rate_per_minute, self.config.rate_per_hour,
                     self.config.rate_per_day),
            lambda: self.config.rate_window,
        )
        secret = self.config.media_secret or secrets.token_hex(16)
        self._signer = cdn.UrlSigner(secret.encode())
        self._assets = cdn.AssetStore(self.config.max_padded_bytes)
        self._faults: list[tuple[int, str | None, dict[str, str]]] = []
        self._hangs = 0
        self._released = asyncio.Event()
        self._gate = asyncio.Event()
        self._gate.set()
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(STORIES_PATH, self._handle_stories)
        app.router.add_get("/media/{name}", self._handle_media)  # HEAD too
        app.router.add_get("/healthz", self._handle_health)
        return app

    async def start(self) -> None:
        if self._runner is not None:
            return
        self._released = asyncio.Event()
        self._session = aiohttp.ClientSession()
        self._runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = self._runner.addresses[0][1]
        log.info("stories API emulator listening on %s", self.base_url)

    async def stop(self) -> None:
        """Cancel pending callbacks, release hung requests, close the server."""
        self._released.set()
        self._gate.set()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """The API root (also the media host), e.g. `http://127.0.0.1:54321`."""
        if self._public_url:
            return self._public_url
        if self._runner is None:
            raise RuntimeError("the emulator is not started")
        host = self.host if self.host not in ("0.0.0.0", "::", "") else "127.0.0.1"  # noqa: S104
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    @property
    def stories_url(self) -> str:
        return self.base_url + STORIES_PATH

    # -- keys and credits --------------------------------------------------------------------

    def add_key(self, key: str, credits: int = 1000) -> None:
        self._balances[key] = credits
        self.charged.setdefault(key, 0)

    def remove_key(self, key: str) -> None:
        """The key stops working (401); what it was charged stays in `charged`."""
        self._balances.pop(key, None)

    def balance(self, key: str) -> int:
        """Credits the key can still spend (reservations of requests in flight excluded)."""
        return self._balances[key]

    def set_balance(self, key: str, credits: int) -> None:
        """Set a key's spendable credits, adding the key if it is new."""
        self._balances[key] = credits
        self.charged.setdefault(key, 0)

    @property
    def total_charged(self) -> int:
        return sum(self.charged.values())

    # -- accounts and media ------------------------------------------------------------------

    def add_account(self, username: str, items: Iterable[ItemLike] = (), *, private: bool = False,
                    full_name: str | None = None, verified: bool = False) -> AccountSpec:
        """Register (or replace) an account. Items: `"photo"`, `"video"`, `"unknown"`, dicts
        such as `{"kind": "video", "size": 55 * 2**20, "age": 600}`, or `ItemSpec`s.
        Without ages, items are spread from 23 h ago to 5 min ago in the order given."""
        account = account_spec(username, items, private=private, full_name=full_name,
                               verified=verified)
        for item in account.items:
            if item.size is not None:  # fail here, not with a 500 at request time
                self._assets.padded_name(item.family.sizes[0].name, item.size)
        return self.accounts.add(account)

    def remove_account(self, username: str) -> None:
        self.accounts.remove(username)

    def media_url(self, name: str, *, size: int | None = None,
                  expires: float | None = None) -> str:
        """A signed URL for a shipped file (see `cdn.ASSETS`), optionally padded to `size`
        bytes, valid until `expires` (default: now + `media_url_ttl`)."""
        if name not in cdn.ASSETS:
            raise KeyError(f"no shipped media called {name!r}")
        if size is not None:
            name = self._assets.padded_name(name, size)
        if expires is None:
            expires = self.clock() + self.config.media_url_ttl
        return self._signer.url(self.base_url, name, int(expires), urlsplit(self.base_url).netloc)

    def media_bytes(self, name: str) -> bytes:
        """The bytes of a shipped file, for comparing with a download."""
        return self._assets.data(name)

    # -- faults ------------------------------------------------------------------------------

    def fail_next(self, count: int = 1, status: int = 503, *, body: str | None = None,
                  headers: dict[str, str] | None = None) -> None:
        """The next `count` stories requests answer `status` before any check (no credit, no
        rate-limit slot). 502/503/504 come as a proxy's HTML page, others as JSON."""
        self._faults += [(status, body, dict(headers or {}))] * count

    def hang_next(self, count: int = 1) -> None:
        """The next `count` stories requests never answer, until `release_hung()` or `stop()`
        (then 504): for client timeout tests."""
        self._hangs += count

    def release_hung(self) -> None:
        self._released.set()
        self._released = asyncio.Event()

    def pause_callbacks(self) -> None:
        """Results are still produced (and charged) on time, but held before their first POST
        until `resume_callbacks()`: for late-callback tests."""
        self._gate.clear()

    def resume_callbacks(self) -> None:
        self._gate.set()

    def reset_rate_limits(self, key: str | None = None) -> None:
        self.limiter.reset(key)

    # -- waiting -----------------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Return as soon as `predicate()` is true; it is re-checked after every request,
        result and callback attempt. TimeoutError after `timeout` seconds."""
        async with asyncio.timeout(timeout):
            while True:
                changed = self._changed
                if predicate():
                    return
                await changed.wait()

    async def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[RequestRecord]:
        await self.wait_until(lambda: len(self.requests) >= count, timeout)
        return self.requests[:count]

    async def wait_for_callbacks(self, count: int = 1,
                                 timeout: float = 10.0) -> list[CallbackDelivery]:
        """Wait until `count` callback deliveries have finished (delivered, given up after the
        last attempt, or dropped); return the finished ones in order of finishing."""
        await self.wait_until(lambda: len(self._finished()) >= count, timeout)
        return self._finished()

    async def wait_for_attempts(self, count: int, timeout: float = 10.0) -> list[CallbackAttempt]:
        await self.wait_until(lambda: len(self.callback_attempts) >= count, timeout)
        return self.callback_attempts[:count]

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until no webhook work is pending."""
        await self.wait_until(lambda: not self._tasks, timeout)

    def _finished(self) -> list[CallbackDelivery]:
        return [delivery for delivery in self.deliveries if delivery.finished]

    # -- HTTP: the stories endpoint ----------------------------------------------------------

    async def _handle_health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    def _record(self, record: RequestRecord) -> RequestRecord:
        self.requests.append(record)
        log.info("stories request %s key=%s user=%s mode=%s -> %s %s", record.request_id,
                 record.key, record.username, record.mode, record.status, record.outcome)
        self._notify()
        return record

    def _answer(self, rid: str, status: int, outcome: Outcome, body: dict[str, Any], *,
                key: str | None = None, headers: dict[str, str] | None = None,
                **fields: Any) -> web.Response:
        self._record(RequestRecord(
            request_id=rid, at=self.clock(), status=status, outcome=outcome,
            key=key_fingerprint(key) if key is not None else None, **fields))
        return web.json_response(body, status=status, headers=headers)

    async def _handle_stories(self, request: web.Request) -> web.StreamResponse:
        rid = str(uuid.uuid4())
        if self._faults:
            return self._fault(rid, *self._faults.pop(0))
        if self._hangs:
            self._hangs -= 1
            self._record(RequestRecord(rid, self.clock(), 504, "hung"))
            await self._released.wait()
            return web.Response(status=504, text="upstream timed out")

        key = _bearer(request.headers.get("Authorization", ""))
        if key is None or key not in self._balances:
            return self._answer(rid, 401, "unauthorized", _UNAUTHORIZED)

        verdict = self.limiter.hit(key, self.clock())
        if not verdict.allowed:
            return self._answer(rid, 429, "rate_limited", _RATE_LIMITED, key=key,
                                headers={"Retry-After": str(verdict.retry_after)},
                                retry_after=verdict.retry_after)

        try:
            username, webhook_url = _parse_body(await request.read())
        except _BadRequest as exc:
            return self._answer(rid, 400, "bad_request", failure_body(rid, str(exc)), key=key)

        mode: Literal["sync", "webhook"] = "webhook" if webhook_url else "sync"
        reserve = max(self.config.cost_per_request, self.config.cost_when_empty or 0)
        if self._balances[key] < reserve:
            return self._answer(rid, 402, "payment_required", _NO_CREDITS, key=key,
                                username=username, mode=mode, webhook_url=webhook_url)
        self._balances[key] -= reserve

        if webhook_url is None:
            record = RequestRecord(rid, self.clock(), 200, "processing", key_fingerprint(key),
                                   username, "sync")
            body = self._produce(record, key, reserve)
            self._record(record)
            return web.json_response(body)

        record = self._record(RequestRecord(rid, self.clock(), 200, "processing",
                                            key_fingerprint(key), username, "webhook",
                                            webhook_url))
        task = asyncio.create_task(self._webhook(record, key, reserve, webhook_url))
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        if self.config.callback_before_response:
            await asyncio.shield(task)
        return web.json_response(processing_body(rid))

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook task failed", exc_info=task.exception())
        self._notify()

    def _fault(self, rid: str, status: int, body: str | None,
               headers: dict[str, str]) -> web.Response:
        self._record(RequestRecord(rid, self.clock(), status, "fault"))
        reason = _reason(status)
        if body is not None:
            content_type = None if "Content-Type" in headers else "application/json"
            return web.Response(status=status, text=body, headers=headers,
                                content_type=content_type)
        if status in (502, 503, 504):
            return web.Response(status=status, headers=headers, content_type="text/html",
                                text=_PROXY_PAGE.format(status=status, reason=reason))
        if status == 429:
            return web.json_response(_RATE_LIMITED, status=429,
                                     headers={"Retry-After": "1", **headers})
        if status >= 500:
            return web.json_response(failure_body(rid, "Internal server error"), status=status,
                                     headers=headers)
        return web.json_response({"error": reason, "message": reason}, status=status,
                                 headers=headers)

    def _produce(self, record: RequestRecord, key: str, reserved: int) -> dict[str, Any]:
        """Look the account up now, settle the credits and return the result body."""
        account = self.accounts.get(record.username or "")
        cost = 0
        if account is None:
            body, record.outcome = failure_body(record.request_id, "User not found"), "not_found"
        elif account.private:
            body = failure_body(record.request_id, "This account is private")
            record.outcome = "private"
        else:
            reel = build_reel(account, now=int(self.clock()), links=self._links(),
                              sizes=_SizeLookup(self._assets),
                              big_video_bytes=self.config.big_video_bytes)
            empty = not reel["items"]
            cost = self.config.cost_per_request
            if empty and self.config.cost_when_empty is not None:
                cost = self.config.cost_when_empty
            body = success_body(record.request_id, reel, cost)
            record.outcome = "empty" if empty else "success"
        if key in self._balances:
            self._balances[key] += reserved - cost
        self.charged[key] = self.charged.get(key, 0) + cost
        record.credits_charged = cost
        record.result = body
        if record.mode == "webhook":
            log.info("stories result %s -> %s (%d credits)", record.request_id, record.outcome,
                     cost)
        self._notify()
        return body

    def _links(self) -> MediaLinks:
        expires = int(self.clock() + self.config.media_url_ttl)
        host = urlsplit(self.base_url).netloc
        return MediaLinks(
            url=lambda name: self._signer.url(self.base_url, name, expires, host),
            padded=self._assets.padded_name,
        )

    # -- webhooks ----------------------------------------------------------------------------

    async def _webhook(self, record: RequestRecord, key: str, reserved: int, url: str) -> None:
        try:
            if not self.config.callback_before_response:
                await asyncio.sleep(self.config.webhook_delay)
            body = self._produce(record, key, reserved)
        except asyncio.CancelledError:
            if record.result is None and key in self._balances:
                self._balances[key] += reserved  # stopped before producing: nothing charged
            raise
        copies = 2 if self.config.duplicate_callbacks else 1
        for copy in range(1, copies + 1):
            delivery = CallbackDelivery(record.request_id, url, copy, body)
            self.deliveries.append(delivery)
            if self.config.drop_callbacks:
                delivery.dropped = delivery.finished = True
                log.info("callback %s dropped (drop_callbacks)", record.request_id)
                self._notify()
                return
            await self._gate.wait()
            await self._deliver(delivery)
            if not delivery.delivered:
                return

    async def _deliver(self, delivery: CallbackDelivery) -> None:
        assert self._session is not None
        data = json.dumps(delivery.body).encode()
        backoff = self.config.webhook_backoff
        attempts = max(1, self.config.webhook_attempts)
        try:
            for attempt in range(1, attempts + 1):
                status, error = await self._post(delivery.url, data)
                delivery.attempts.append(CallbackAttempt(
                    delivery.request_id, delivery.url, attempt, delivery.copy, status, error,
                    delivery.body))
                self.callback_attempts.append(delivery.attempts[-1])
                log.info("callback %s to %s attempt %d -> %s", delivery.request_id,
                         redact_url(delivery.url), attempt, status or error)
                if status is not None and 200 <= status < 300:
                    delivery.delivered = True
                    return
                if status in _PERMANENT_CALLBACK_FAILURES or attempt == attempts:
                    return
                self._notify()
                await asyncio.sleep(backoff)
                backoff *= 2
        finally:
            delivery.finished = True
            self._notify()

    async def _post(self, url: str, data: bytes) -> tuple[int | None, str | None]:
        assert self._session is not None
        try:
            async with self._session.post(
                url, data=data, headers={"Content-Type": "application/json",
                                         "User-Agent": "eternalsocial-webhook/1.0"},
                timeout=aiohttp.ClientTimeout(total=self.config.webhook_timeout),
                allow_redirects=False,
            ) as response:
                await response.read()
                return response.status, None
        except (aiohttp.ClientError, TimeoutError) as exc:
            return None, type(exc).__name__

    # -- HTTP: media -------------------------------------------------------------------------

    async def _handle_media(self, request: web.Request) -> web.StreamResponse:
        opened = self._assets.open(request.match_info["name"])
        if opened is None:
            return web.Response(status=404, text="Not Found")
        valid, expiry = self._signer.check(request.path, request.rel_url.raw_query_string)
        if not valid:
            return web.Response(status=403, text="Bad URL hash")
        if self.config.enforce_media_expiry and expiry is not None and expiry < self.clock():
            return web.Response(status=403, text="URL signature expired")
        asset, content = opened
        return await cdn.send_file(request, asset, content)


class _SizeLookup(dict[str, int]):
    """File sizes by name, read lazily from the asset store (for `bandwidth` figures)."""

    def __init__(self, assets: cdn.AssetStore) -> None:
        super().__init__()
        self._assets = assets

    def __missing__(self, name: str) -> int:
        self[name] = len(self._assets.data(name))
        return self[name]


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _bearer(header: str) -> str | None:
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _parse_body(raw: bytes) -> tuple[str, str | None]:
    """(username, webhookUrl) from a request body, or _BadRequest with the reason."""
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _BadRequest("Invalid JSON body") from None
    if not isinstance(body, dict):
        raise _BadRequest("Request body must be a JSON object")
    username = body.get("username")
    if not isinstance(username, str):
        raise _BadRequest("username is required and must be a string")
    if not username:
        raise _BadRequest("username must contain at least 1 character")
    webhook = body.get("webhookUrl")
    if webhook is None:
        return username, None
    if not isinstance(webhook, str):
        raise _BadRequest("webhookUrl must be a string")
    parts = urlsplit(webhook)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _BadRequest("webhookUrl must be a valid http(s) URI")
    return username, webhook


async def serve(host: str = "127.0.0.1", port: int = 3222, config: EmulatorConfig | None = None,
                *, public_url: str | None = None,
                on_start: Callable[[Emulator], None] | None = None) -> None:
    """Run an emulator until cancelled (the `stories-bot emulator` command). `on_start` is
    called once it listens (e.g. to print `emulator.base_url`)."""
    emulator = Emulator(config, host=host, port=port, public_url=public_url)
    await emulator.start()
    try:
        keys = ", ".join(key_fingerprint(key) for key in emulator.config.keys)
        log.info("emulator ready at %s (keys: %s; accounts: %s)", emulator.base_url, keys,
                 ", ".join(sorted(emulator.accounts.accounts)))
        if on_start is not None:
            on_start(emulator)
        await asyncio.Event().wait()
    finally:
        await emulator.stop()
