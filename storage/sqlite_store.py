"""The SQLite store (sqlite-utils), implementing `bot.store.Store`.

Two connections. The writer runs on the event loop itself: every write and every point read is
a few dozen to a few hundred microseconds of SQLite (WAL, `synchronous=NORMAL`: a commit
appends to the WAL and never waits for the disk), while handing each call to a thread and back
cost ~0.3 ms of CPU in context switches — half of all the work of a callback. What could take
long runs on one worker thread with its own connection: opening and migrating, the usage
aggregates and other scans, and the WAL checkpoints (the only step that waits for the disk;
the writer's own, every ~16 MB of WAL, only finishes what the worker's left). A call on the
loop that ever takes longer than
`SLOW_CALL` is logged. Foreign keys on, numbered migrations; state changes that must agree (a
result and its credits) happen in one transaction.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import sqlite_utils

from bot.messages import mask_key
from bot.models import ChatRef, Origin, RequestState
from bot.store import ChatRecord, DuplicateCommand, Received, RequestRecord, Usage, UsagePeriod
from storage.crypto import KeyCipher
from storage.migrations import migrate

log = logging.getLogger(__name__)

MIN_SQLITE = (3, 35, 0)  # DROP COLUMN (migration 3), UPDATE … RETURNING
PLAINTEXTS_KEPT = 4096  # decrypted routing data kept in memory (a request's row is read often)
SLOW_CALL = 0.02  # seconds: a store call on the loop longer than this is logged
CHECKPOINT_EVERY = 200  # store calls between two WAL checkpoints (on the worker thread)
# The writer's own checkpoint, a backstop: under sustained writes the worker's checkpoints
# never catch up with the writer, and the WAL only starts over after one made by the writer
# itself. By then the worker has copied most pages, so the writer's is short.
WRITER_CHECKPOINT_PAGES = 4000  # ~16 MB of WAL

T = TypeVar("T")

_OPEN_STATES = (RequestState.SUBMITTED.value, RequestState.PROCESSING.value)
# The final states as an SQL list, `('delivered','failed','expired')` (from the enum's own values).
_FINAL_SQL = "(" + ",".join(f"'{s.value}'" for s in RequestState if s.is_final) + ")"


def _ts(value: datetime) -> float:
    return value.timestamp()


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _day_start(now: datetime) -> datetime:
    now = now.astimezone(UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def _month_start(now: datetime) -> datetime:
    return _day_start(now).replace(day=1)


class SqliteStore:
    def __init__(self, path: Path | str, cipher: KeyCipher) -> None:
        self._path = str(path)
        self._cipher = cipher
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite",
                                            initializer=self._mark_worker)
        self._worker_ident: int | None = None
        self._db: sqlite_utils.Database | None = None  # the writer, used on the loop
        self._reader: sqlite_utils.Database | None = None  # the worker thread's
        self._calls = 0
        self._checkpoint: Future[None] | None = None
        self._plain: dict[str, str | None] = {}  # routing data: ciphertext → plaintext

    # plumbing -------------------------------------------------------------------------------

    def _mark_worker(self) -> None:
        self._worker_ident = threading.get_ident()

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """A short call (writes, point reads): on the loop, on the writer connection."""
        began = time.perf_counter()
        try:
            return fn(*args)
        finally:
            took = time.perf_counter() - began
            if took > SLOW_CALL:
                log.warning("a store call took %.0f ms on the event loop (%s)", took * 1000,
                            getattr(fn, "__qualname__", fn))
            self._calls += 1
            if self._calls >= CHECKPOINT_EVERY and self._reader is not None:
                self._start_checkpoint()

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        """A read that may scan (aggregates, listings): on the worker thread's connection,
        which sees everything committed. In-memory databases have one connection only."""
        if self._reader is None:
            return await self._run(fn, *args)
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _start_checkpoint(self) -> None:
        if self._checkpoint is not None and not self._checkpoint.done():
            return
        self._calls = 0
        self._checkpoint = self._executor.submit(self._checkpoint_wal)

    def _checkpoint_wal(self) -> None:
        try:
            self.db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:  # busy or closing: the next one catches up
            log.debug("WAL checkpoint skipped: %s", exc)

    @property
    def db(self) -> sqlite_utils.Database:
        """The connection of the calling thread: the worker's on the worker thread once it
        is open, the writer everywhere else."""
        if self._reader is not None and threading.get_ident() == self._worker_ident:
            return self._reader
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    async def open(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._open)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=5000")
        return conn

    def _open(self) -> None:
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise RuntimeError(
                f"stories-bot needs SQLite {'.'.join(map(str, MIN_SQLITE))} or newer; this "
                f"Python's sqlite3 module has {sqlite3.sqlite_version}")
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        self._db = sqlite_utils.Database(conn)
        if self._path != ":memory:":
            self._db.enable_wal()
            conn.execute(f"PRAGMA wal_autocheckpoint={WRITER_CHECKPOINT_PAGES}")
        conn.execute("PRAGMA synchronous=NORMAL")
        migrate(conn)
        if self._path != ":memory:":
            self._reader = sqlite_utils.Database(self._connect())

    async def close(self) -> None:
        if self._db is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        for database in (self._reader, self._db):
            if database is not None:
                if database is self._db and self._reader is not None:
                    database.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                database.conn.close()
        self._reader = self._db = None

    async def ping(self) -> bool:
        try:
            return await self._run(lambda: self.db.execute("SELECT 1").fetchone() == (1,))
        except Exception:
            return False

    def _tx(self) -> _Transaction:
        return _Transaction(self.db.conn)

    # chats ----------------------------------------------------------------------------------

    def key_fingerprint(self, api_key: str) -> str:
        return self._cipher.fingerprint(api_key)

    def _ensure_chat(self, chat: ChatRef, now: float) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO chats(id, platform, created_at, updated_at) VALUES (?,?,?,?)",
            [str(chat), chat.platform, now, now],
        )

    def _chat_record(self, row: dict[str, Any]) -> ChatRecord:
        key = self._cipher.decrypt(row["api_key_enc"]) if row["api_key_enc"] else None
        return ChatRecord(
            chat=ChatRef.parse(row["id"]),
            api_key=key,
            key_hint=row["key_hint"],
            key_fingerprint=row["key_fingerprint"],
            daily_cap=row["daily_cap"],
            monthly_cap=row["monthly_cap"],
            key_set_by=row["key_set_by"],
            key_set_at=_dt(row["key_set_at"]),
        )

    def _get_chat(self, chat: ChatRef) -> ChatRecord | None:
        rows = list(self.db["chats"].rows_where("id = ?", [str(chat)]))
        return self._chat_record(rows[0]) if rows else None

    async def get_chat(self, chat: ChatRef) -> ChatRecord | None:
        return await self._run(self._get_chat, chat)

    async def set_key(self, chat: ChatRef, api_key: str, *, set_by: str,
                      now: datetime) -> ChatRecord:
        def work() -> ChatRecord:
            with self._tx():
                self._ensure_chat(chat, _ts(now))
                self.db.execute(
                    "UPDATE chats SET api_key_enc=?, key_hint=?, key_fingerprint=?, key_set_by=?,"
                    " key_set_at=?, updated_at=? WHERE id=?",
                    [self._cipher.encrypt(api_key), mask_key(api_key),
                     self._cipher.fingerprint(api_key), set_by, _ts(now), _ts(now), str(chat)],
                )
            record = self._get_chat(chat)
            assert record is not None
            return record

        return await self._run(work)

    async def remove_key(self, chat: ChatRef) -> bool:
        def work() -> bool:
            cursor = self.db.execute(
                "UPDATE chats SET api_key_enc=NULL, key_hint=NULL, key_fingerprint=NULL,"
                " key_set_by=NULL, key_set_at=NULL WHERE id=? AND api_key_enc IS NOT NULL",
                [str(chat)],
            )
            return cursor.rowcount > 0

        return await self._run(work)

    async def set_caps(self, chat: ChatRef, *, daily: int | None, monthly: int | None,
                       now: datetime) -> ChatRecord:
        def work() -> ChatRecord:
            with self._tx():
                self._ensure_chat(chat, _ts(now))
                self.db.execute(
                    "UPDATE chats SET daily_cap=?, monthly_cap=?, updated_at=? WHERE id=?",
                    [daily, monthly, _ts(now), str(chat)],
                )
            record = self._get_chat(chat)
            assert record is not None
            return record

        return await self._run(work)

    # requests -------------------------------------------------------------------------------

    def _remember_plain(self, stored: str, plain: str | None) -> None:
        self._plain[stored] = plain
        if len(self._plain) > PLAINTEXTS_KEPT:
            del self._plain[next(iter(self._plain))]  # the oldest

    def _reply(self, stored: str | None) -> dict[str, Any]:
        """Routing data is encrypted at rest: it can hold interaction tokens. A request's row
        is read several times in its life: the plaintext is cached (in memory only)."""
        if not stored:
            return {}
        if stored in self._plain:
            plain = self._plain[stored]
        else:  # (a failure too is kept: it is logged once, not at every read)
            plain = self._cipher.decrypt(stored)
            self._remember_plain(stored, plain)
        try:
            value = json.loads(plain) if plain else {}
        except ValueError:
            value = {}
        return value if isinstance(value, dict) else {}

    def _request_record(self, row: dict[str, Any]) -> RequestRecord:
        origin = Origin(
            chat=ChatRef.parse(row["chat_id"]),
            user_id=row["user_id"],
            user_name=row["user_name"],
            is_admin=bool(row["is_admin"]),
            reply=self._reply(row["reply_enc"]),
            command_id=row["command_id"],
        )
        created = _dt(row["created_at"])
        deadline = _dt(row["deadline_at"])
        assert created is not None and deadline is not None
        return RequestRecord(
            id=row["id"],
            origin=origin,
            username=row["username"],
            state=RequestState(row["state"]),
            created_at=created,
            deadline_at=deadline,
            key_fingerprint=row["key_fingerprint"],
            source_id=row["source_id"],
            status_ref=row["status_ref"],
            api_request_id=row["api_request_id"],
            error_kind=row["error_kind"],
            error_detail=row["error_detail"],
            credits_charged=row["credits_charged"] or 0,
            received_at=_dt(row["received_at"]),
            token_hash=row["token_hash"],
        )

    _COLUMNS = (
        "id, chat_id, user_id, user_name, is_admin, reply_enc, username, state, key_fingerprint,"
        " source_id, status_ref, api_request_id, error_kind, error_detail, credits_charged,"
        " created_at, deadline_at, received_at, token_hash, command_id"
    )

    def _select(self, where: str, params: Sequence[Any] = ()) -> list[RequestRecord]:
        return self._records(self.db.execute(
            f"SELECT {self._COLUMNS} FROM requests WHERE {where}", params))  # noqa: S608

    def _records(self, cursor: sqlite3.Cursor) -> list[RequestRecord]:
        """The rows of a query for `_COLUMNS` (a SELECT, or a statement RETURNING them)."""
        names = [d[0] for d in cursor.description]
        return [self._request_record(dict(zip(names, row, strict=True))) for row in cursor]

    def _get_request(self, request_id: int) -> RequestRecord | None:
        found = self._select("id = ?", [request_id])
        return found[0] if found else None

    async def create_request(self, origin: Origin, username: str, *, token_hash: str | None,
                             key_fingerprint: str | None, now: datetime, deadline: datetime,
                             source_id: int | None = None,
                             state: RequestState = RequestState.SUBMITTED) -> RequestRecord:
        def work() -> RequestRecord:
            try:
                return insert()
            except sqlite3.IntegrityError as exc:
                if "command_id" in str(exc) or "requests_command" in str(exc):
                    raise DuplicateCommand(origin.command_id) from None
                raise

        def insert() -> RequestRecord:
            reply = json.dumps(origin.reply)
            reply_enc = self._cipher.encrypt(reply)
            self._remember_plain(reply_enc, reply)
            with self._tx():
                self._ensure_chat(origin.chat, _ts(now))
                [record] = self._records(self.db.execute(
                    "INSERT INTO requests(chat_id, user_id, user_name, is_admin, reply_enc,"  # noqa: S608
                    " username, state, token_hash, key_fingerprint, source_id, created_at,"
                    " updated_at, deadline_at, command_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
                    f" RETURNING {self._COLUMNS}",
                    [str(origin.chat), origin.user_id, origin.user_name, int(origin.is_admin),
                     reply_enc, username, state.value, token_hash, key_fingerprint, source_id,
                     _ts(now), _ts(now), _ts(deadline), origin.command_id],
                ))
                return record

        return await self._run(work)

    async def get_request(self, request_id: int) -> RequestRecord | None:
        return await self._run(self._get_request, request_id)

    async def find_by_token(self, token_hash: str) -> RequestRecord | None:
        def work() -> RequestRecord | None:
            found = self._select("token_hash = ?", [token_hash])
            return found[0] if found else None

        return await self._run(work)

    async def mark_processing(self, request_id: int, *, api_request_id: str | None,
                              now: datetime) -> bool:
        def work() -> bool:
            cursor = self.db.execute(
                "UPDATE requests SET state=?, api_request_id=COALESCE(api_request_id, ?),"
                " updated_at=? WHERE id=? AND state=?",
                [RequestState.PROCESSING.value, api_request_id, _ts(now), request_id,
                 RequestState.SUBMITTED.value],
            )
            return cursor.rowcount > 0

        return await self._run(work)

    async def set_status_ref(self, request_id: int, status_ref: str | None) -> None:
        await self._run(lambda: self.db.execute(
            "UPDATE requests SET status_ref=? WHERE id=?", [status_ref, request_id]))

    def _receive(self, request_id: int, *, state: RequestState, result: bytes | None,
                 kind: str | None, detail: str | None, credits: int,
                 api_request_id: str | None, now: datetime) -> Received:
        with self._tx():
            placeholders = ",".join("?" * len(_OPEN_STATES))
            updated = self._records(self.db.execute(
                "UPDATE requests SET state=?, error_kind=?, error_detail=?,"  # noqa: S608
                " credits_charged=?, api_request_id=COALESCE(?, api_request_id),"
                " received_at=?, updated_at=?, finished_at=CASE WHEN ?='failed' THEN ? END"
                f" WHERE id=? AND state IN ({placeholders}) RETURNING {self._COLUMNS}",
                [state.value, kind, detail, credits, api_request_id, _ts(now),
                 _ts(now), state.value, _ts(now), request_id, *_OPEN_STATES],
            ))
            if not updated:
                return Received(False, self._get_request(request_id))
            record = updated[0]
            if result is not None:
                self.db.execute(
                    "INSERT INTO results(request_id, result) VALUES (?, ?)"
                    " ON CONFLICT(request_id) DO UPDATE SET result=excluded.result",
                    [request_id, result])
            self._ledger(record.origin.chat, request_id, "charge", credits, 0,
                         kind or "result", now)
            followers = self._settle_followers(record, state, kind, detail, now)
            caps = self.db.execute(
                "SELECT daily_cap IS NOT NULL OR monthly_cap IS NOT NULL FROM chats WHERE id=?",
                [str(record.origin.chat)]).fetchone()
        return Received(True, record, tuple(followers), bool(caps and caps[0]))

    async def receive_result(self, request_id: int, result: bytes, *, credits: int,
                             api_request_id: str | None, now: datetime) -> Received:
        return await self._run(lambda: self._receive(
            request_id, state=RequestState.RECEIVED, result=result, kind=None,
            detail=None, credits=credits, api_request_id=api_request_id, now=now))

    async def receive_failure(self, request_id: int, *, kind: str, detail: str, credits: int,
                              api_request_id: str | None, now: datetime) -> Received:
        return await self._run(lambda: self._receive(
            request_id, state=RequestState.FAILED, result=None, kind=kind, detail=detail,
            credits=credits, api_request_id=api_request_id, now=now))

    async def keep_raw_body(self, request_id: int, body: str) -> None:
        await self._run(lambda: self.db.execute(
            "INSERT INTO results(request_id, raw_body) VALUES (?, ?)"
            " ON CONFLICT(request_id) DO UPDATE SET raw_body=excluded.raw_body",
            [request_id, body]))

    async def stored_result(self, request_id: int) -> bytes | str | None:
        """The result as stored (`bot.codec.unpack` reads it)."""
        def work() -> bytes | str | None:
            row = self.db.execute(
                "SELECT result FROM results WHERE request_id=?", [request_id]).fetchone()
            return row[0] if row else None

        return await self._run(work)

    async def mark_delivered(self, request_id: int, *, now: datetime) -> None:
        await self._run(lambda: self.db.execute(
            "UPDATE requests SET state=?, updated_at=?, finished_at=? WHERE id=? AND state=?",
            [RequestState.DELIVERED.value, _ts(now), _ts(now), request_id,
             RequestState.RECEIVED.value]))

    async def mark_failed(self, request_id: int, *, kind: str, detail: str,
                          now: datetime) -> bool:
        def work() -> bool:
            cursor = self.db.execute(
                "UPDATE requests SET state=?, error_kind=?, error_detail=?, updated_at=?,"  # noqa: S608
                f" finished_at=? WHERE id=? AND state NOT IN {_FINAL_SQL}",
                [RequestState.FAILED.value, kind, detail[:500], _ts(now), _ts(now), request_id],
            )
            return cursor.rowcount > 0

        return await self._run(work)

    async def expire_due(self, now: datetime) -> list[RequestRecord]:
        def work() -> list[RequestRecord]:
            with self._tx():
                due = self._select(
                    "state IN (?,?) AND deadline_at <= ? AND source_id IS NULL",
                    [*_OPEN_STATES, _ts(now)],
                )
                # Requests sharing an expiring fetch expire with it.
                for record in list(due):
                    due.extend(self._select("source_id = ? AND state IN (?,?)",
                                            [record.id, *_OPEN_STATES]))
                for record in due:
                    self.db.execute(
                        "UPDATE requests SET state=?, updated_at=?, finished_at=? WHERE id=?",
                        [RequestState.EXPIRED.value, _ts(now), _ts(now), record.id],
                    )
            return due

        return await self._run(work)

    async def prune(self, *, finished_before: datetime, batch: int = 25) -> int:
        """Drop the stored results and delivery progress of at most `batch` requests that
        ended before `finished_before` and that no open request shares; how many requests.
        (Stories live 24 hours: an old result is never posted again, and 23 stories' result
        and progress are ~7 KB a request.) The requests and the ledger stay. Each table is
        walked from its oldest rows (request ids grow with time; CROSS JOIN keeps SQLite from
        walking all requests, pruned ones included, instead), so a batch costs about its size
        however long the history."""
        def work() -> int:
            ended = _ts(finished_before)
            with self._tx():
                ids: set[int] = set()
                for table in ("results", "deliveries"):
                    ids.update(row[0] for row in self.db.execute(
                        f"SELECT DISTINCT t.request_id FROM {table} t"  # noqa: S608
                        " CROSS JOIN requests q ON q.id = t.request_id"  # t drives: see above
                        f" WHERE q.state IN {_FINAL_SQL}"
                        "   AND COALESCE(q.finished_at, q.updated_at) < ?"
                        "   AND NOT EXISTS (SELECT 1 FROM requests f WHERE f.source_id = q.id"
                        f"                   AND f.state NOT IN {_FINAL_SQL})"
                        " LIMIT ?", [ended, batch]))
                chosen = sorted(ids)[:batch]
                for table in ("results", "deliveries"):
                    self.db.conn.executemany(
                        f"DELETE FROM {table} WHERE request_id=?",  # noqa: S608
                        [(i,) for i in chosen])
                return len(chosen)

        return await self._run(work)

    async def next_deadline(self) -> datetime | None:
        def work() -> datetime | None:
            row = self.db.execute(
                "SELECT MIN(deadline_at) FROM requests WHERE state IN (?,?) AND source_id IS NULL",
                list(_OPEN_STATES),
            ).fetchone()
            return _dt(row[0]) if row else None

        return await self._run(work)

    async def requests_in_state(self, *states: RequestState) -> list[RequestRecord]:
        placeholders = ",".join("?" * len(states))
        return await self._read(
            self._select, f"state IN ({placeholders}) ORDER BY id", [s.value for s in states])

    async def count_pending(self) -> int:
        def work() -> int:
            row = self.db.execute(
                "SELECT COUNT(*) FROM requests WHERE state IN (?,?,?)",
                [*_OPEN_STATES, RequestState.RECEIVED.value],
            ).fetchone()
            return int(row[0])

        return await self._read(work)

    async def find_shareable(self, username: str, key_fingerprint: str, *,
                             received_since: datetime | None) -> RequestRecord | None:
        """The latest fetch of `username` with this key that is still open, or whose result
        arrived after `received_since` (a recent success; None: open fetches only)."""
        def work() -> RequestRecord | None:
            if received_since is None:
                found = self._select(
                    "username = ? AND key_fingerprint = ? AND source_id IS NULL AND"
                    " state IN (?,?) ORDER BY id DESC LIMIT 1",
                    [username, key_fingerprint, *_OPEN_STATES])
                return found[0] if found else None
            found = self._select(
                "username = ? AND key_fingerprint = ? AND source_id IS NULL AND ("
                " state IN (?,?) OR (state IN (?,?) AND received_at >= ?))"
                " ORDER BY id DESC LIMIT 1",
                [username, key_fingerprint, *_OPEN_STATES, RequestState.RECEIVED.value,
                 RequestState.DELIVERED.value, _ts(received_since)],
            )
            return found[0] if found else None

        return await self._run(work)

    async def seen_command(self, chat: ChatRef, command_id: str) -> bool:
        def work() -> bool:
            return self.db.execute(
                "SELECT 1 FROM requests WHERE chat_id=? AND command_id=?",
                [str(chat), command_id]).fetchone() is not None

        return await self._run(work)

    async def open_requests(self, chat: ChatRef) -> list[RequestRecord]:
        return await self._run(
            self._select, "chat_id = ? AND state IN (?,?,?) ORDER BY id",
            [str(chat), *_OPEN_STATES, RequestState.RECEIVED.value])

    async def settle_followers(self, source_id: int, *, state: RequestState,
                               kind: str | None, detail: str | None,
                               now: datetime) -> list[RequestRecord]:
        """Move the open requests sharing `source_id`'s fetch to `state` (received or failed);
        a received follower gets a 'shared' ledger line with the credits it saved."""
        def work() -> list[RequestRecord]:
            with self._tx():
                source = self._get_request(source_id)
                if source is None:
                    return []
                return self._settle_followers(source, state, kind, detail, now)

        return await self._run(work)

    def _settle_followers(self, source: RequestRecord, state: RequestState, kind: str | None,
                          detail: str | None, now: datetime) -> list[RequestRecord]:
        followers = self._select("source_id = ? AND state IN (?,?)", [source.id, *_OPEN_STATES])
        for record in followers:
            self.db.execute(
                "UPDATE requests SET state=?, error_kind=?, error_detail=?, received_at=?,"
                " updated_at=?, finished_at=CASE WHEN ?='failed' THEN ? END WHERE id=?",
                [state.value, kind, detail, _ts(now), _ts(now), state.value, _ts(now),
                 record.id],
            )
            if state is RequestState.RECEIVED:
                self._ledger(record.origin.chat, record.id, "shared", 0, source.credits_charged,
                             None, now)
        return [msgspec.structs.replace(r, state=state, error_kind=kind, error_detail=detail,
                                        received_at=now) for r in followers]

    def _ledger(self, chat: ChatRef, request_id: int | None, kind: str, credits: int,
                saved: int, note: str | None, now: datetime) -> None:
        self.db.execute(
            "INSERT INTO ledger(chat_id, request_id, kind, credits, saved, note, created_at)"
            " VALUES (?,?,?,?,?,?,?)",
            [str(chat), request_id, kind, credits, saved, note, _ts(now)],
        )

    async def add_ledger(self, chat: ChatRef, request_id: int | None, kind: str, *,
                         credits: int = 0, saved: int = 0, note: str | None = None,
                         now: datetime) -> None:
        def work() -> None:
            with self._tx():
                self._ensure_chat(chat, _ts(now))
                self._ledger(chat, request_id, kind, credits, saved, note, now)

        await self._run(work)

    async def record_late(self, request_id: int, *, credits: int, now: datetime) -> bool:
        """A callback for an expired request: keep what the API charged, once."""
        def work() -> bool:
            with self._tx():
                record = self._get_request(request_id)
                if record is None or record.received_at is not None:
                    return False
                self.db.execute("UPDATE requests SET received_at=?, credits_charged=? WHERE id=?",
                                [_ts(now), credits, request_id])
                self._ledger(record.origin.chat, request_id, "late", credits, 0, None, now)
                return True

        return await self._run(work)

    async def mark_warned(self, chat: ChatRef, *, daily_on: str | None = None,
                          monthly_on: str | None = None) -> None:
        def work() -> None:
            if daily_on is not None:
                self.db.execute("UPDATE chats SET daily_warned_on=? WHERE id=?",
                                [daily_on, str(chat)])
            if monthly_on is not None:
                self.db.execute("UPDATE chats SET monthly_warned_on=? WHERE id=?",
                                [monthly_on, str(chat)])

        await self._run(work)

    async def warned(self, chat: ChatRef) -> tuple[str | None, str | None]:
        def work() -> tuple[str | None, str | None]:
            row = self.db.execute(
                "SELECT daily_warned_on, monthly_warned_on FROM chats WHERE id=?",
                [str(chat)]).fetchone()
            return (row[0], row[1]) if row else (None, None)

        return await self._run(work)

    async def all_chats(self) -> list[ChatRef]:
        return await self._read(lambda: [
            ChatRef.parse(row[0])
            for row in self.db.execute("SELECT id FROM chats ORDER BY id")])

    async def migrate_chat(self, old: ChatRef, new: ChatRef, *, now: datetime) -> None:
        def work() -> None:
            with self._tx():
                exists = self.db.execute("SELECT 1 FROM chats WHERE id=?", [str(new)]).fetchone()
                if not exists:
                    self.db.execute(
                        "INSERT INTO chats(id, platform, api_key_enc, key_hint, key_fingerprint,"
                        " key_set_by, key_set_at, daily_cap, monthly_cap, daily_warned_on,"
                        " monthly_warned_on, created_at, updated_at)"
                        " SELECT ?, platform, api_key_enc, key_hint, key_fingerprint, key_set_by,"
                        " key_set_at, daily_cap, monthly_cap, daily_warned_on, monthly_warned_on,"
                        " created_at, ? FROM chats WHERE id=?",
                        [str(new), _ts(now), str(old)])
                for table in ("requests", "ledger"):
                    self.db.execute(f"UPDATE {table} SET chat_id=? WHERE chat_id=?",  # noqa: S608
                                    [str(new), str(old)])
                if not exists:
                    self.db.execute("DELETE FROM chats WHERE id=?", [str(old)])

        await self._run(work)

    # delivery progress ---------------------------------------------------------------------

    async def item_states(self, request_id: int) -> dict[str, str]:
        def work() -> dict[str, str]:
            cursor = self.db.execute(
                "SELECT item_id, state FROM deliveries WHERE request_id=?", [request_id])
            return {row[0]: row[1] for row in cursor}

        return await self._run(work)

    async def mark_items(self, request_id: int, item_ids: Sequence[str], state: str,
                         *, now: datetime) -> None:
        def work() -> None:
            with self._tx():
                self.db.conn.executemany(
                    "INSERT INTO deliveries(request_id, item_id, state, updated_at)"
                    " VALUES (?,?,?,?) ON CONFLICT(request_id, item_id)"
                    " DO UPDATE SET state=excluded.state, updated_at=excluded.updated_at",
                    [(request_id, item_id, state, _ts(now)) for item_id in item_ids],
                )

        await self._run(work)

    async def clear_items(self, request_id: int, item_ids: Sequence[str]) -> None:
        def work() -> None:
            self.db.conn.executemany(
                "DELETE FROM deliveries WHERE request_id=? AND item_id=? AND state='sending'",
                [(request_id, item_id) for item_id in item_ids])

        await self._run(work)

    # usage ------------------------------------------------------------------------------------

    def _period(self, chat: ChatRef, since: datetime | None) -> UsagePeriod:
        where, params = "chat_id = ?", [str(chat)]
        if since is not None:
            where += " AND created_at >= ?"
            params.append(_ts(since))
        requests = self.db.execute(
            f"SELECT COUNT(*) FROM requests WHERE {where}", params).fetchone()[0]  # noqa: S608
        credits, saved, shared = self.db.execute(
            "SELECT COALESCE(SUM(credits), 0), COALESCE(SUM(saved), 0),"  # noqa: S608
            " COALESCE(SUM(kind = 'shared'), 0)"
            f" FROM ledger WHERE {where}", params).fetchone()
        return UsagePeriod(requests=int(requests), credits=int(credits), saved=int(saved),
                           shared=int(shared))

    async def usage(self, chat: ChatRef, *, now: datetime) -> Usage:
        def work() -> Usage:
            record = self._get_chat(chat)
            return Usage(
                chat=chat,
                today=self._period(chat, _day_start(now)),
                month=self._period(chat, _month_start(now)),
                total=self._period(chat, None),
                daily_cap=record.daily_cap if record else None,
                monthly_cap=record.monthly_cap if record else None,
                key_hint=record.key_hint if record else None,
            )

        return await self._read(work)

    async def ledger_total(self) -> int:
        def work() -> int:
            return int(self.db.execute("SELECT COALESCE(SUM(credits),0) FROM ledger").fetchone()[0])

        return await self._read(work)


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT/ROLLBACK on an autocommit connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._conn.execute("ROLLBACK" if exc_type else "COMMIT")
