"""The stories API client against the emulator over HTTP: shapes, errors, retries."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.api_client import Accepted, StoriesApiClient
from bot.emulator import Emulator
from bot.errors import (
    AccountNotFound,
    AccountPrivate,
    InvalidApiKey,
    OutOfCredits,
    RateLimited,
    UpstreamUnavailable,
)
from bot.models import StoriesResult
from tests.conftest import API_KEY


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_sync_and_webhook_modes(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    api = StoriesApiClient(emulator.base_url, http)
    result = await api.request_stories(API_KEY, "natgeo")
    assert isinstance(result, StoriesResult) and len(result.items) == 5
    assert result.credits_charged == 1
    accepted = await api.request_stories(API_KEY, "natgeo", "http://127.0.0.1:9/callbacks/tok")
    assert isinstance(accepted, Accepted) and accepted.api_request_id


@pytest.mark.parametrize("username,error", [
    ("privateuser", AccountPrivate), ("no_such_person", AccountNotFound)])
async def test_account_failures(emulator: Emulator, http: aiohttp.ClientSession, username: str,
                                error: type[Exception]) -> None:
    api = StoriesApiClient(emulator.base_url, http)
    with pytest.raises(error):
        await api.request_stories(API_KEY, username)


async def test_auth_credits_and_rate_limit(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    api = StoriesApiClient(emulator.base_url, http)
    with pytest.raises(InvalidApiKey) as bad_key:
        await api.request_stories("sk_live_wrong_key_123", "natgeo")
    assert "sk_live_wrong" not in str(bad_key.value)
    emulator.set_balance(API_KEY, 0)
    with pytest.raises(OutOfCredits):
        await api.request_stories(API_KEY, "natgeo")
    emulator.set_balance(API_KEY, 100)
    emulator.config.rate_per_minute = 2
    emulator.reset_rate_limits()
    await api.request_stories(API_KEY, "natgeo")
    await api.request_stories(API_KEY, "natgeo")
    with pytest.raises(RateLimited) as limited:
        await api.request_stories(API_KEY, "natgeo")
    assert limited.value.retry_after and 0 < limited.value.retry_after <= 60


async def test_5xx_is_not_retried(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    api = StoriesApiClient(emulator.base_url, http)
    emulator.fail_next(2, 502)
    with pytest.raises(UpstreamUnavailable):
        await api.request_stories(API_KEY, "natgeo", "http://127.0.0.1:9/callbacks/tok")
    assert len(emulator.requests) == 1  # it may have been processed: never sent twice


async def test_timeout_is_not_retried(emulator: Emulator) -> None:
    emulator.hang_next(1)
    async with StoriesApiClient(emulator.base_url, timeout=0.3) as api:
        with pytest.raises(UpstreamUnavailable):
            await api.request_stories(API_KEY, "natgeo", "http://127.0.0.1:9/callbacks/tok")
    emulator.release_hung()
    assert len(emulator.requests) <= 1
    assert emulator.total_charged == 0


async def test_connection_refused_is_retried_then_reported(http: aiohttp.ClientSession) -> None:
    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    api = StoriesApiClient(f"http://127.0.0.1:{port}", http, connect_retries=2,
                           retry_backoff=0.01)
    with pytest.raises(UpstreamUnavailable) as caught:
        await api.request_stories(API_KEY, "natgeo")
    assert "connect" in str(caught.value)
    assert API_KEY not in str(caught.value)
