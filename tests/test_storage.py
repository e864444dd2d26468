"""The SQLite store: migrations, key encryption at rest, the generated secret file."""

from __future__ import annotations

import os
import sqlite3
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot import codec
from bot.models import (
    ChatRef,
    MediaKind,
    MediaVariant,
    Origin,
    Profile,
    RequestState,
    StoriesResult,
    StoryItem,
)
from storage import sqlite_store
from storage.crypto import KeyCipher, load_or_create_secret
from storage.sqlite_store import SqliteStore
from tests.conftest import db_file_bytes

KEY = "sk_live_supersecret_0123456789_9f2c"


async def test_key_is_encrypted_at_rest(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    store = SqliteStore(path, KeyCipher(load_or_create_secret(path)))
    await store.open()
    chat = ChatRef("telegram", "-1001")
    now = datetime.now(UTC)
    record = await store.set_key(chat, KEY, set_by="telegram:5", now=now)
    assert record.api_key == KEY
    assert record.key_hint == "sk_live_…9f2c"
    assert "supersecret" not in repr(record) and "sk_live_…9f2c" in repr(record)
    assert KEY.encode() not in db_file_bytes(path)
    assert b"supersecret" not in db_file_bytes(path)
    await store.close()
    assert KEY.encode() not in db_file_bytes(path)

    # the generated secret is private to the owner, and reopening reads the key back
    secret_file = tmp_path / "bot.sqlite3.secret"
    assert stat.S_IMODE(os.stat(secret_file).st_mode) == 0o600
    again = SqliteStore(path, KeyCipher(load_or_create_secret(path)))
    await again.open()
    assert (await again.get_chat(chat)).api_key == KEY
    assert await again.remove_key(chat) is True
    assert (await again.get_chat(chat)).api_key is None
    await again.close()


async def test_wrong_secret_cannot_read_keys(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    store = SqliteStore(path, KeyCipher("one secret"))
    await store.open()
    await store.set_key(ChatRef("discord", "9"), KEY, set_by="discord:1", now=datetime.now(UTC))
    await store.close()
    other = SqliteStore(path, KeyCipher("another secret"))
    await other.open()
    record = await other.get_chat(ChatRef("discord", "9"))
    assert record is not None and record.api_key is None
    await other.close()


async def test_migrations_are_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    for _ in range(2):
        store = SqliteStore(path, KeyCipher("s"))
        await store.open()
        assert await store.ping()
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        versions = [r[0] for r in store.db.execute("SELECT version FROM schema_migrations")]
        assert versions == [1, 2, 3, 4]
        await store.close()


NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
RESULT = StoriesResult(
    profile=Profile("natgeo", full_name="National Geographic"),
    items=(StoryItem(id="1", kind=MediaKind.PHOTO,
                     variants=(MediaVariant("https://cdn.example/1.jpg", 1080, 1920),),
                     taken_at=NOW, expiring_at=NOW + timedelta(hours=24)),),
    credits_charged=1, api_request_id="r1")


async def test_v2_database_keeps_results_and_progress_through_migrations_3_and_4(
        tmp_path: Path) -> None:
    """A database written by the previous release (results inside `requests`, progress in a
    rowid table) is migrated in place: a received result is still delivered after the
    upgrade, and what was posted stays posted."""
    import sqlite3

    from storage.migrations import MIGRATIONS

    path = tmp_path / "bot.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL)")
    for version, script in MIGRATIONS[:2]:
        conn.executescript(f"BEGIN; {script}; INSERT INTO schema_migrations"  # noqa: S608
                           f" VALUES ({version}, 0); COMMIT;")
    conn.execute("INSERT INTO chats(id, platform, created_at, updated_at)"
                 " VALUES ('telegram:1', 'telegram', 0, 0)")
    conn.execute("INSERT INTO requests(id, chat_id, user_id, username, state, created_at,"
                 " updated_at, deadline_at, result_json, raw_body)"
                 " VALUES (7, 'telegram:1', '5', 'natgeo', 'received', 0, 0, 0, ?,"
                 " NULL), (8, 'telegram:1', '5', 'odd', 'processing', 0, 0, 0, NULL, 'weird')",
                 [codec.dumps(RESULT)])
    conn.execute("INSERT INTO deliveries VALUES (7, 'a', 'sent', 0), (7, 'b', 'sending', 0)")
    conn.close()

    store = SqliteStore(path, KeyCipher("s"))
    await store.open()
    assert codec.unpack(await store.stored_result(7)) == RESULT  # JSON text, as it was
    assert await store.item_states(7) == {"a": "sent", "b": "sending"}
    assert store.db.execute("SELECT raw_body FROM results WHERE request_id=8").fetchone() == (
        "weird",)
    columns = {row[1] for row in store.db.execute("PRAGMA table_info(requests)")}
    assert "result_json" not in columns and "raw_body" not in columns
    columns = {row[1] for row in store.db.execute("PRAGMA table_info(results)")}
    assert columns == {"request_id", "result", "raw_body"}
    await store.mark_items(7, ["b", "c"], "sent", now=datetime.now(UTC))
    assert await store.item_states(7) == {"a": "sent", "b": "sent", "c": "sent"}
    await store.close()


async def test_reply_routing_is_encrypted_at_rest(tmp_path: Path) -> None:
    """`Origin.reply` can carry a Discord interaction token: not in the file in clear."""
    from datetime import timedelta

    from bot.models import Origin

    path = tmp_path / "bot.sqlite3"
    store = SqliteStore(path, KeyCipher("s3cret"))
    await store.open()
    token = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5MDpzZWNyZXQtdG9rZW4tdmFsdWU"
    origin = Origin(ChatRef("discord", "42"), "7", reply={"token": token, "channel": "9"})
    now = datetime.now(UTC)
    record = await store.create_request(origin, "natgeo", token_hash=None, key_fingerprint=None,
                                        now=now, deadline=now + timedelta(minutes=5))
    assert (await store.get_request(record.id)).origin.reply == origin.reply
    await store.close()
    assert token.encode() not in db_file_bytes(path)


async def test_migrate_chat_moves_key_history_and_ledger(tmp_path: Path) -> None:
    from datetime import timedelta

    from bot.models import Origin

    store = SqliteStore(tmp_path / "bot.sqlite3", KeyCipher("s"))
    await store.open()
    old, new = ChatRef("telegram", "-1"), ChatRef("telegram", "-1001")
    now = datetime.now(UTC)
    await store.set_key(old, KEY, set_by="telegram:5", now=now)
    await store.set_caps(old, daily=3, monthly=None, now=now)
    record = await store.create_request(Origin(old, "5"), "natgeo", token_hash="h",
                                        key_fingerprint=None, now=now,
                                        deadline=now + timedelta(minutes=5))
    await store.receive_result(record.id, "{}", credits=1, api_request_id=None, now=now)
    await store.migrate_chat(old, new, now=now)
    moved = await store.get_chat(new)
    assert moved is not None and moved.api_key == KEY and moved.daily_cap == 3
    assert await store.get_chat(old) is None
    usage = await store.usage(new, now=now)
    assert (usage.total.requests, usage.total.credits) == (1, 1)
    await store.close()


async def test_wal_stays_bounded_under_sustained_writes(tmp_path: Path) -> None:
    """Checkpoints run on the worker thread, with the writer's own as a backstop every
    `WRITER_CHECKPOINT_PAGES` (~16 MB): 12,000 small transactions in a row (no pause for the
    worker to catch up) leave ~25 MB of WAL without it."""
    from datetime import timedelta

    from bot.models import Origin

    path = tmp_path / "bot.sqlite3"
    store = SqliteStore(path, KeyCipher("s"))
    await store.open()
    now = datetime.now(UTC)
    record = await store.create_request(Origin(ChatRef("telegram", "1"), "5"), "natgeo",
                                        token_hash=None, key_fingerprint=None, now=now,
                                        deadline=now)
    for n in range(12_000):  # each one changes a row (an unchanged row writes nothing)
        await store.mark_items(record.id, [f"item-{n % 50}"], "sent",
                               now=now + timedelta(seconds=n))
    wal = Path(f"{path}-wal")
    assert wal.stat().st_size < 20 * 1024 * 1024
    await store.close()
    assert not wal.exists() or wal.stat().st_size == 0  # truncated on close


async def test_an_old_sqlite_is_refused_with_a_clear_error(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.31.1")
    store = SqliteStore(tmp_path / "bot.sqlite3", KeyCipher("s"))
    with pytest.raises(RuntimeError, match=r"needs SQLite 3\.35\.0 or newer.*has 3\.31\.1"):
        await store.open()
    await store.close()
    assert not (tmp_path / "bot.sqlite3").exists()  # refused before anything was created


async def test_routing_data_reads_back_whatever_the_plaintext_cache_holds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Decrypted routing data is kept in memory for a bounded number of requests; a request
    read after its plaintext was dropped is decrypted again."""
    monkeypatch.setattr(sqlite_store, "PLAINTEXTS_KEPT", 3)
    path = tmp_path / "bot.sqlite3"
    store = SqliteStore(path, KeyCipher("s"))
    await store.open()
    now = datetime.now(UTC)
    created = [await store.create_request(
        Origin(chat=ChatRef("telegram", "-1001"), user_id="5", reply={"message_id": n}),
        "natgeo", token_hash=f"hash{n}", key_fingerprint=None, now=now,
        deadline=now + timedelta(hours=1)) for n in range(5)]
    assert [r.origin.reply for r in created] == [{"message_id": n} for n in range(5)]
    again = [await store.get_request(r.id) for r in created]
    assert [r.origin.reply for r in again if r is not None] == [{"message_id": n}
                                                               for n in range(5)]
    assert len(store._plain) <= 3
    assert b"message_id" not in db_file_bytes(path)
    await store.close()


def test_routing_data_is_not_shown_by_repr() -> None:
    """An interaction token in `Origin.reply` lets anyone answer as the bot: a record that
    ends up in a log line or an assertion message shows the keys only."""
    origin = Origin(chat=ChatRef("discord", "9"), user_id="5",
                    reply={"interaction_token": "aW50ZXJhY3Rpb246c2VjcmV0", "channel_id": 7})
    assert "aW50ZXJhY3Rpb246c2VjcmV0" not in repr(origin)
    assert "channel_id, interaction_token" in repr(origin)


async def test_prune_drops_old_results_and_progress_but_nothing_still_needed(
        tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "bot.sqlite3", KeyCipher("s"))
    await store.open()
    old, recent = NOW - timedelta(days=3), NOW - timedelta(hours=1)
    packed = codec.pack(RESULT)

    async def request(name: str, at: datetime, *, source_id: int | None = None) -> int:
        record = await store.create_request(
            Origin(ChatRef("telegram", "1"), "5"), name, token_hash=None, key_fingerprint=None,
            now=at, deadline=at + timedelta(minutes=5), source_id=source_id)
        await store.mark_processing(record.id, api_request_id=None, now=at)
        return record.id

    async def delivered(name: str, at: datetime) -> int:
        request_id = await request(name, at)
        await store.receive_result(request_id, packed, credits=1, api_request_id=None, now=at)
        await store.mark_items(request_id, ["1"], "sent", now=at)
        await store.mark_delivered(request_id, now=at)
        return request_id

    gone = [await delivered("old", old), await delivered("old2", old)]
    kept = [await delivered("recent", recent)]
    shared = await delivered("shared", old)  # an open request still posts its result
    follower = await request("shared", NOW, source_id=shared)
    kept.append(shared)
    waiting = await request("waiting", old)  # received, not yet delivered
    await store.receive_result(waiting, packed, credits=1, api_request_id=None, now=old)
    kept.append(waiting)
    odd = await request("odd", old)  # a body of unknown shape, then expired
    await store.keep_raw_body(odd, "weird")
    assert [r.id for r in await store.expire_due(old + timedelta(minutes=10))] == [odd]
    gone.append(odd)

    assert await store.prune(finished_before=NOW - timedelta(days=2), batch=2) == 2
    assert await store.prune(finished_before=NOW - timedelta(days=2), batch=2) == 1
    assert await store.prune(finished_before=NOW - timedelta(days=2), batch=2) == 0
    for request_id in gone:
        assert await store.stored_result(request_id) is None
        assert await store.item_states(request_id) == {}
        assert await store.get_request(request_id) is not None  # the request itself stays
    for request_id in kept:
        assert codec.unpack(await store.stored_result(request_id)) == RESULT
    assert await store.item_states(shared) == {"1": "sent"}
    assert await store.ledger_total() == 5  # what was charged stays on the ledger
    assert (await store.get_request(follower)).state is RequestState.PROCESSING
    await store.close()
