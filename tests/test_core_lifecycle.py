"""The request lifecycle end to end: core + callback server + store against the emulator."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from bot.app import App
from bot.emulator import Emulator
from bot.models import MediaKind, RequestState
from bot.settings import Settings
from tests.conftest import API_KEY, AppFactory, make_settings, origin
from tests.fakes.recording_adapter import RecordingAdapter


async def set_key(app: App, chat_id: str = "1") -> None:
    await app.service.set_key(origin(chat_id, admin=True), API_KEY)


async def restart_and_settle(settings: Settings) -> RecordingAdapter:
    """A new process on the same database: start, let it finish what it finds, stop."""
    chat = RecordingAdapter()
    app = App(settings, adapters=[lambda *_: chat], public_url="auto")
    await app.start()
    try:
        await app.wait_idle(timeout=10)
    finally:
        await app.stop()
    return chat


async def test_stories_delivered_in_order_via_webhook(make_app: AppFactory,
                                                      emulator: Emulator) -> None:
    app, chat = await make_app()
    await set_key(app)
    await app.service.request_stories(origin(), "https://www.instagram.com/NatGeo/?igsh=abc")
    await app.wait_idle(timeout=10)

    assert chat.texts()[0] == "Fetching the stories of @natgeo…"
    assert chat.texts()[-1] == "@natgeo: 5 stories."
    items = chat.items()
    assert len(items) == 5
    assert [i.taken_at for i in items] == sorted(i.taken_at for i in items)
    assert {i.kind for i in items} == {MediaKind.PHOTO, MediaKind.VIDEO}
    # webhook mode: the API was given our callback URL, and charged once
    assert emulator.requests[0].mode == "webhook"
    assert emulator.total_charged == 1
    assert await app.store.ledger_total() == 1


async def test_failures_are_told_clearly(make_app: AppFactory, emulator: Emulator) -> None:
    app, chat = await make_app()
    await set_key(app)
    for name in ("privateuser", "nobody_at_all", "nostories"):
        await app.service.request_stories(origin(), name)
    await app.wait_idle(timeout=10)
    texts = chat.texts()
    assert "That Instagram account is private, so its stories cannot be fetched." in texts
    assert "No Instagram account has that username." in texts
    assert "@nostories has no active stories right now." in texts
    assert chat.items() == []


async def test_invalid_username_spends_nothing(make_app: AppFactory, emulator: Emulator) -> None:
    app, chat = await make_app()
    await set_key(app)
    for bad in ("", "bad name!", "natgeо", "a" * 31, "https://example.com/natgeo",
                "instagram.com/p/Cxyz/"):
        await app.service.request_stories(origin(), bad)
    assert len(chat.texts()) == 6
    assert all("username" in t.lower() or "account" in t.lower() or "link" in t.lower()
               for t in chat.texts())
    assert emulator.requests == []


async def test_chat_without_key_is_told_how_to_set_one(make_app: AppFactory,
                                                       emulator: Emulator) -> None:
    app, chat = await make_app()
    await app.service.request_stories(origin(), "natgeo")
    assert "/setkey" in chat.texts()[0]
    assert emulator.requests == []


async def test_default_key_serves_chats_without_their_own(make_app: AppFactory,
                                                          emulator: Emulator) -> None:
    app, chat = await make_app(default_api_key=API_KEY)
    await app.service.request_stories(origin(), "natgeo")
    await app.wait_idle(timeout=10)
    assert len(chat.items()) == 5


@pytest.mark.parametrize("status,expected", [
    (401, "rejected this chat's API key"),
    (402, "out of credits"),
    (429, "busy"),
    (503, "unavailable"),
])
async def test_api_errors_become_clear_messages(make_app: AppFactory, emulator: Emulator,
                                               status: int, expected: str) -> None:
    app, chat = await make_app()
    await set_key(app)
    if status == 401:
        emulator.remove_key(API_KEY)
    elif status == 402:
        emulator.set_balance(API_KEY, 0)
    elif status == 429:
        emulator.fail_next(1, 429, headers={"Retry-After": "42"})
    else:
        emulator.fail_next(1, 503)
    await app.service.request_stories(origin(), "natgeo")
    await app.wait_idle(timeout=10)
    assert expected in chat.texts()[-1]
    if status == 429:
        assert "42 s" in chat.texts()[-1]
    assert emulator.total_charged == 0


async def test_sync_mode_without_public_url(make_app: AppFactory, emulator: Emulator) -> None:
    app, chat = await make_app(public_url=None)
    await set_key(app)
    await app.service.request_stories(origin(), "natgeo")
    await app.wait_idle(timeout=10)
    assert emulator.requests[0].mode == "sync"
    assert len(chat.items()) == 5


async def test_early_callback_before_post_returns(make_app: AppFactory,
                                                  emulator: Emulator) -> None:
    emulator.config.callback_before_response = True
    app, chat = await make_app()
    await set_key(app)
    await app.service.request_stories(origin(), "natgeo")
    await app.wait_idle(timeout=10)
    assert len(chat.items()) == 5
    assert chat.texts()[-1] == "@natgeo: 5 stories."
    records = await app.store.requests_in_state(RequestState.DELIVERED)
    assert len(records) == 1


async def test_duplicate_callbacks_change_nothing(make_app: AppFactory,
                                                  emulator: Emulator) -> None:
    emulator.config.duplicate_callbacks = True
    app, chat = await make_app()
    await set_key(app)
    await app.service.request_stories(origin(), "natgeo")
    await emulator.wait_for_callbacks(1)
    await emulator.drain()
    await app.wait_idle(timeout=10)
    assert [a.status for a in emulator.callback_attempts] == [200, 200]
    assert len(chat.items()) == 5
    assert await app.store.ledger_total() == emulator.total_charged == 1


async def test_expiry_then_late_callback(make_app: AppFactory, emulator: Emulator) -> None:
    emulator.pause_callbacks()
    app, chat = await make_app(request_timeout=0.3)
    await set_key(app)
    await app.service.request_stories(origin(), "natgeo")
    await chat.wait_for(lambda shown: any("did not answer" in s.text for s in shown))
    assert (await app.store.requests_in_state(RequestState.EXPIRED))
    emulator.resume_callbacks()
    await emulator.wait_for_callbacks(1)
    await app.wait_idle(timeout=5)
    assert chat.items() == []  # a late result is not posted...
    # ...but what the API charged for it is on the ledger, so the figures add up.
    assert await app.store.ledger_total() == emulator.total_charged == 1


async def test_delivery_failure_is_retried_then_reported(make_app: AppFactory,
                                                         emulator: Emulator) -> None:
    adapter = RecordingAdapter()
    adapter.fail_stories = 1
    app, chat = await make_app(adapter=adapter,
                               service_options={"delivery_backoff": 0.01})
    await set_key(app)
    await app.service.request_stories(origin(), "natgeo")
    await app.wait_idle(timeout=10)
    assert len(chat.items()) == 5  # the second attempt delivered everything once

    adapter.fail_stories = 5
    await app.service.request_stories(origin(), "manystories")
    await app.wait_idle(timeout=10)
    assert "could not be posted" in chat.texts()[-1]


async def test_restart_delivers_received_results_exactly_once(tmp_path, emulator: Emulator) -> None:
    settings = make_settings(tmp_path, emulator)
    first = RecordingAdapter()
    first.block_after_albums = 1  # post one album of 10, then hang as if the process froze
    app = App(settings, adapters=[lambda *_: first], public_url="auto")
    await app.start()
    await set_key(app)
    await app.service.request_stories(origin(), "manystories")
    await asyncio.wait_for(first.blocked.wait(), 10)
    await app.stop(timeout=0.1)  # the stop cancels the held delivery: "received", 10 sent
    assert len(first.items()) == 10

    second = await restart_and_settle(settings)
    delivered = first.items() + second.items()
    ids = [i.id for i in delivered]
    assert len(ids) == 23 and len(set(ids)) == 23  # every item once, none twice
    assert [i.id for i in second.items()] == ids[10:]
    assert second.texts()[-1] == "@manystories: 23 stories."
    assert emulator.total_charged == 1


async def test_restart_before_delivery_started(tmp_path, emulator: Emulator) -> None:
    settings = make_settings(tmp_path, emulator)
    first = RecordingAdapter()
    first.block_after_albums = 0
    app = App(settings, adapters=[lambda *_: first], public_url="auto")
    await app.start()
    await set_key(app)
    await app.service.request_stories(origin(), "natgeo")
    await asyncio.wait_for(first.blocked.wait(), 10)
    await app.stop(timeout=0.1)
    assert first.items() == []

    second = await restart_and_settle(settings)
    assert len(second.items()) == 5


async def test_refused_album_is_resent_not_lost(make_app: AppFactory, emulator: Emulator) -> None:
    adapter = RecordingAdapter()
    adapter.refuse_albums = {1}  # the second album of 10 is refused once
    app, chat = await make_app(adapter=adapter, service_options={"delivery_backoff": 0.01})
    await set_key(app)
    await app.service.request_stories(origin(), "manystories")
    await app.wait_idle(timeout=10)
    ids = [i.id for i in chat.items()]
    assert len(ids) == 23 and len(set(ids)) == 23
    assert chat.texts()[-1] == "@manystories: 23 stories."


async def test_uncertain_album_is_not_resent_and_status_is_honest(
        tmp_path, emulator: Emulator) -> None:
    """A crash while an album was in flight: at most once, and the chat is not told that
    everything arrived."""
    settings = make_settings(tmp_path, emulator)

    class CrashMidAlbum(RecordingAdapter):
        async def send_stories(self, origin, delivery):  # type: ignore[no-untyped-def]
            items = list(delivery.items)
            await delivery.tracker.sending(items[:10])
            await self._record_and_hang(origin, items[:10])

        async def _record_and_hang(self, origin, items):  # type: ignore[no-untyped-def]
            from tests.fakes.recording_adapter import Shown

            await self._record(Shown("stories", str(origin.chat), items=items))
            self.blocked.set()
            await asyncio.Event().wait()  # the platform got it; we never heard back

    first = CrashMidAlbum()
    app = App(settings, adapters=[lambda *_: first], public_url="auto")
    await app.start()
    await set_key(app)
    await app.service.request_stories(origin(), "manystories")
    await asyncio.wait_for(first.blocked.wait(), 10)
    await app.stop(timeout=0.1)

    second = await restart_and_settle(settings)
    ids = [i.id for i in first.items() + second.items()]
    assert len(ids) == 23 and len(set(ids)) == 23  # nothing twice
    assert len(second.items()) == 13
    assert second.texts()[-1] == ("@manystories: 13 of 23 stories posted. 10 were being posted "
                                  "when the bot was interrupted and may be missing.")


async def test_a_redelivered_command_is_handled_once(make_app: AppFactory,
                                                     emulator: Emulator) -> None:
    """Platforms redeliver updates after a crash: the same command id fetches once."""
    from msgspec.structs import replace

    app, chat = await make_app(cache_ttl=0)
    await set_key(app)
    command = replace(origin(), command_id="4711")
    await asyncio.gather(*(app.service.request_stories(command, "natgeo") for _ in range(3)))
    await app.wait_idle(timeout=10)
    await app.service.request_stories(command, "natgeo")
    await app.wait_idle(timeout=10)
    assert len(emulator.requests) == 1
    assert len(chat.items()) == 5


async def test_old_results_are_dropped_when_the_bot_starts(make_app: AppFactory,
                                                            emulator: Emulator) -> None:
    """A result two days old is never posted again: the sweeper drops it (and the delivery
    progress) at start, then hourly; the request and the ledger stay."""
    app, chat = await make_app()
    await set_key(app)
    await app.service.request_stories(origin(), "natgeo")
    await app.wait_idle(timeout=10)
    [record] = await app.store.requests_in_state(RequestState.DELIVERED)
    assert await app.store.stored_result(record.id) is not None
    await app.service.prune()  # ended just now: kept
    assert await app.store.stored_result(record.id) is not None
    await app.stop(timeout=2)
    path = app.settings.database_path
    with sqlite3.connect(path) as conn:  # as if it had ended three days ago
        conn.execute("UPDATE requests SET finished_at = finished_at - 3 * 86400")
    again, _ = await make_app()
    deadline = asyncio.get_running_loop().time() + 10
    while await again.store.stored_result(record.id) is not None:
        assert asyncio.get_running_loop().time() < deadline, "not pruned"
        await asyncio.sleep(0.01)
    assert await again.store.item_states(record.id) == {}
    assert (await again.store.get_request(record.id)).state is RequestState.DELIVERED
    assert await again.store.ledger_total() == emulator.total_charged == 1
