"""The eternalsocial.dev stories API client (one `httpx.AsyncClient` per process).

`request_stories` POSTs `{username, webhookUrl?}` with the Bearer key. In webhook mode the API
answers "processing" and the result arrives later at the callback server; without a webhook
URL it answers with the data directly.

Retries: a POST that may have reached the API may have been charged, so it is never repeated.
Only failures where no connection was made (connection refused, DNS, connect timeout) are
retried, a couple of times with a short backoff.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass

import httpx

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

log = logging.getLogger(__name__)

STORIES_PATH = "/api/instagram/stories"


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
    def __init__(self, base_url: str, http: httpx.AsyncClient, *, connect_retries: int = 2,
                 retry_backoff: float = 0.5, sync_timeout: float = 120.0) -> None:
        self._url = base_url.rstrip("/") + STORIES_PATH
        self._http = http
        self._connect_retries = connect_retries
        self._backoff = retry_backoff
        self._sync_timeout = sync_timeout

    async def request_stories(self, api_key: str, username: str,
                              webhook_url: str | None = None) -> Accepted | StoriesResult:
        """Ask for `username`'s stories. Raises an `ApiError` subclass on any failure."""
        body: dict[str, str] = {"username": username}
        if webhook_url:
            body["webhookUrl"] = webhook_url
        headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
        # Sync mode waits for Instagram: give it a longer read timeout than webhook mode.
        timeout = None if webhook_url else httpx.Timeout(self._sync_timeout, connect=10.0)
        response = await self._post(body, headers, timeout)
        return self._interpret(response, username=username, webhook=bool(webhook_url))

    async def _post(self, body: dict[str, str], headers: dict[str, str],
                    timeout: httpx.Timeout | None) -> httpx.Response:
        attempt = 0
        while True:
            try:
                if timeout is None:
                    return await self._http.post(self._url, json=body, headers=headers)
                return await self._http.post(self._url, json=body, headers=headers,
                                             timeout=timeout)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                # The request never reached the API: nothing can have been charged.
                attempt += 1
                if attempt > self._connect_retries:
                    raise UpstreamUnavailable(f"cannot connect: {type(exc).__name__}") from None
                log.warning("stories API unreachable (%s), retry %d", type(exc).__name__, attempt)
                await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
            except httpx.TimeoutException as exc:
                raise UpstreamUnavailable(f"timed out: {type(exc).__name__}") from None
            except httpx.HTTPError as exc:
                # Sent (or partly sent): it may have been processed, so it is not repeated.
                raise UpstreamUnavailable(f"transport error: {type(exc).__name__}") from None

    def _interpret(self, response: httpx.Response, *, username: str,
                   webhook: bool) -> Accepted | StoriesResult:
        status = response.status_code
        try:
            payload = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
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
                retry_after=parse_retry_after(response.headers.get("retry-after")),
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
