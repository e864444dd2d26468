"""The eternalsocial.dev stories API client (one aiohttp session per process).

`request_stories` POSTs `{username, webhookUrl?}` with the Bearer key. In webhook mode the API
answers "processing" and the result arrives later at the callback server; without a webhook
URL it answers with the data directly.

Retries: a POST that may have reached the API may have been charged, so it is never repeated.
Only failures where no connection was made (connection refused, DNS, connect timeout) are
retried, a couple of times with a short backoff.

aiohttp rather than httpx: one request per command, and under load httpx's connection pool
(httpcore on anyio) cost several times aiohttp's CPU per request. Proxies come from
HTTP(S)_PROXY / NO_PROXY, as with httpx.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDictProxy

from bot import fastjson
from bot.api_payloads import failure_error, parse_envelope, to_result
from bot.errors import (
    ApiError,
    InvalidApiKey,
    OutOfCredits,
    RateLimited,
    UnexpectedResponse,
    UpstreamUnavailable,
)
from bot.models import StoriesResult
from bot.proxies import EnvProxies

log = logging.getLogger(__name__)

STORIES_PATH = "/api/instagram/stories"
USER_AGENT = "stories-bot/0.1"


@dataclass(frozen=True, slots=True)
class Accepted:
    """Webhook mode: the API took the request; the result will be POSTed to the callback."""

    api_request_id: str | None
    message: str | None = None


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class StoriesApiClient:
    """`session`: the aiohttp session to use; without one the client opens its own on first
    use, and `close()` closes it. `timeout`: seconds for an answer in webhook mode (sync
    mode, which waits for Instagram, gets `sync_timeout`)."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession | None = None, *,
                 timeout: float = 30.0, connect_timeout: float = 10.0,
                 connect_retries: int = 2, retry_backoff: float = 0.5,
                 sync_timeout: float = 120.0) -> None:
        self._url = base_url.rstrip("/") + STORIES_PATH
        self._session = session
        self._owns_session = session is None
        self._timeouts = {
            webhook: aiohttp.ClientTimeout(total=None, sock_read=limit, connect=connect_timeout)
            for webhook, limit in ((True, timeout), (False, sync_timeout))}
        self._connect_retries = connect_retries
        self._backoff = retry_backoff
        self._proxies = EnvProxies()

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> StoriesApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def request_stories(self, api_key: str, username: str,
                              webhook_url: str | None = None) -> Accepted | StoriesResult:
        """Ask for `username`'s stories. Raises an `ApiError` subclass on any failure."""
        body: dict[str, str] = {"username": username}
        if webhook_url:
            body["webhookUrl"] = webhook_url
        headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
        status, content, response_headers = await self._post(
            body, headers, self._timeouts[bool(webhook_url)])
        return self._interpret(status, content, response_headers, username=username,
                               webhook=bool(webhook_url))

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            if not self._owns_session:
                raise RuntimeError("the stories API client's session is closed")
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=100),
                headers={"User-Agent": USER_AGENT})
        return self._session

    async def _post(self, body: dict[str, str], headers: dict[str, str],
                    timeout: aiohttp.ClientTimeout,
                    ) -> tuple[int, bytes, CIMultiDictProxy[str]]:
        proxy, proxy_auth = self._proxies.for_url(self._url)
        attempt = 0
        while True:
            try:
                async with self._session_now().post(
                        self._url, json=body, headers=headers, timeout=timeout, proxy=proxy,
                        proxy_auth=proxy_auth) as response:
                    return response.status, await response.read(), response.headers
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                # The request never reached the API: nothing can have been charged.
                attempt += 1
                if attempt > self._connect_retries:
                    raise UpstreamUnavailable(f"cannot connect: {type(exc).__name__}") from None
                log.warning("stories API unreachable (%s), retry %d", type(exc).__name__, attempt)
                await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
            except TimeoutError as exc:
                raise UpstreamUnavailable(f"timed out: {type(exc).__name__}") from None
            except (aiohttp.ClientError, OSError) as exc:
                # Sent (or partly sent): it may have been processed, so it is not repeated.
                raise UpstreamUnavailable(f"transport error: {type(exc).__name__}") from None

    def _interpret(self, status: int, content: bytes, headers: CIMultiDictProxy[str], *,
                   username: str, webhook: bool) -> Accepted | StoriesResult:
        try:
            payload = fastjson.loads(content) if content else None
        except ValueError:  # not JSON, or not UTF-8
            payload = None
        text = None
        request_id = None
        if isinstance(payload, dict):
            text = payload.get("message") or payload.get("error")
            if isinstance(payload.get("error"), str) and payload.get("success") is False:
                text = payload["error"]
            rid = payload.get("requestId")
            request_id = str(rid) if rid is not None else None
        if status in (401, 403):
            raise InvalidApiKey(f"HTTP {status}", status=status, api_request_id=request_id)
        if status == 402:
            raise OutOfCredits(f"HTTP {status}", status=status, api_request_id=request_id)
        if status == 429:
            raise RateLimited(
                f"HTTP {status}",
                retry_after=parse_retry_after(headers.get("retry-after")),
                api_request_id=request_id,
            )
        if status >= 500:
            raise UpstreamUnavailable(f"HTTP {status}", status=status, api_request_id=request_id)
        if payload is None:
            raise UnexpectedResponse(f"HTTP {status} without JSON", status=status)
        envelope = parse_envelope(payload)
        if envelope.success is False or (status >= 400 and envelope.success is not True):
            error = failure_error(str(text) if text else None, request_id=request_id,
                                  status=status)
            if status == 400 and type(error) is UpstreamUnavailable:
                raise ApiError(error.detail, status=status, api_request_id=request_id)
            raise error
        if envelope.success is True and envelope.data is not None:
            return to_result(envelope, username=username)
        if envelope.success is True and webhook:
            return Accepted(envelope.requestId, envelope.message)
        raise UnexpectedResponse(f"HTTP {status}: neither data nor processing", status=status,
                                 api_request_id=request_id)
