"""The store interface the core defines (implemented in `storage/`), and its records.

Times are timezone-aware UTC datetimes. Nothing outside `storage/` writes SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

import msgspec

from bot.models import ChatRef, Origin, RequestState


class DuplicateCommand(Exception):
    """A request for this chat's command (`Origin.command_id`) exists already."""


class ChatRecord(msgspec.Struct, frozen=True, gc=False):
    chat: ChatRef
    api_key: str | None  # decrypted; never log it
    key_hint: str | None  # masked form, safe to show
    key_fingerprint: str | None  # keyed hash: groups chats that share a key
    daily_cap: int | None = None
    monthly_cap: int | None = None
    key_set_by: str | None = None
    key_set_at: datetime | None = None

    def __repr__(self) -> str:  # the key itself never: only its masked form
        return (f"ChatRecord(chat={self.chat!r}, key={self.key_hint!r}, "
                f"daily_cap={self.daily_cap!r}, monthly_cap={self.monthly_cap!r}, "
                f"key_set_by={self.key_set_by!r}, key_set_at={self.key_set_at!r})")


class RequestRecord(msgspec.Struct, frozen=True, gc=False):
    id: int
    origin: Origin
    username: str
    state: RequestState
    created_at: datetime
    deadline_at: datetime
    key_fingerprint: str | None = None
    source_id: int | None = None  # a shared result: the request whose fetch this one uses
    status_ref: str | None = None
    api_request_id: str | None = None
    error_kind: str | None = None
    error_detail: str | None = None
    credits_charged: int = 0
    received_at: datetime | None = None
    token_hash: str | None = None


class Received(msgspec.Struct, frozen=True, gc=False):
    """What `receive_*` did, in one transaction: `changed` is False for a duplicate or late
    callback; `followers` are the requests sharing this fetch, settled with it; `has_caps`
    says whether the chat has spending caps (then a warning may be due)."""

    changed: bool
    request: RequestRecord | None
    followers: tuple[RequestRecord, ...] = ()
    has_caps: bool = False


class UsagePeriod(msgspec.Struct, frozen=True, gc=False):
    requests: int
    credits: int
    saved: int  # credits that shared results avoided spending
    shared: int = 0  # requests served from a shared result


class Usage(msgspec.Struct, frozen=True, gc=False):
    chat: ChatRef
    today: UsagePeriod
    month: UsagePeriod
    total: UsagePeriod
    daily_cap: int | None
    monthly_cap: int | None
    key_hint: str | None


class Store(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> bool: ...

    # chats and keys
    async def get_chat(self, chat: ChatRef) -> ChatRecord | None: ...
    async def set_key(self, chat: ChatRef, api_key: str, *, set_by: str,
                      now: datetime) -> ChatRecord: ...
    async def remove_key(self, chat: ChatRef) -> bool: ...
    async def set_caps(self, chat: ChatRef, *, daily: int | None, monthly: int | None,
                       now: datetime) -> ChatRecord: ...
    def key_fingerprint(self, api_key: str) -> str: ...

    # requests
    async def create_request(self, origin: Origin, username: str, *, token_hash: str | None,
                             key_fingerprint: str | None, now: datetime, deadline: datetime,
                             source_id: int | None = None,
                             state: RequestState = RequestState.SUBMITTED) -> RequestRecord: ...
    async def get_request(self, request_id: int) -> RequestRecord | None: ...
    async def find_by_token(self, token_hash: str) -> RequestRecord | None: ...
    async def mark_processing(self, request_id: int, *, api_request_id: str | None,
                              now: datetime) -> bool: ...
    async def set_status_ref(self, request_id: int, status_ref: str | None) -> None: ...
    async def receive_result(self, request_id: int, result: bytes, *, credits: int,
                             api_request_id: str | None, now: datetime) -> Received: ...
    async def receive_failure(self, request_id: int, *, kind: str, detail: str, credits: int,
                              api_request_id: str | None, now: datetime) -> Received: ...
    async def keep_raw_body(self, request_id: int, body: str) -> None: ...
    async def stored_result(self, request_id: int) -> bytes | str | None: ...
    async def mark_delivered(self, request_id: int, *, now: datetime) -> None: ...
    async def mark_failed(self, request_id: int, *, kind: str, detail: str,
                          now: datetime) -> bool: ...
    async def expire_due(self, now: datetime) -> list[RequestRecord]: ...
    async def next_deadline(self) -> datetime | None: ...
    async def prune(self, *, finished_before: datetime, batch: int = 25) -> int: ...
    async def requests_in_state(self, *states: RequestState) -> list[RequestRecord]: ...
    async def count_pending(self) -> int: ...

    async def find_shareable(self, username: str, key_fingerprint: str, *,
                             received_since: datetime | None) -> RequestRecord | None: ...
    async def open_requests(self, chat: ChatRef) -> list[RequestRecord]: ...
    async def seen_command(self, chat: ChatRef, command_id: str) -> bool: ...
    async def settle_followers(self, source_id: int, *, state: RequestState,
                               kind: str | None, detail: str | None,
                               now: datetime) -> list[RequestRecord]: ...
    async def add_ledger(self, chat: ChatRef, request_id: int | None, kind: str, *,
                         credits: int = 0, saved: int = 0, note: str | None = None,
                         now: datetime) -> None: ...
    async def record_late(self, request_id: int, *, credits: int, now: datetime) -> bool: ...
    async def mark_warned(self, chat: ChatRef, *, daily_on: str | None = None,
                          monthly_on: str | None = None) -> None: ...
    async def warned(self, chat: ChatRef) -> tuple[str | None, str | None]: ...
    async def all_chats(self) -> list[ChatRef]: ...
    async def migrate_chat(self, old: ChatRef, new: ChatRef, *, now: datetime) -> None: ...

    # delivery progress
    async def item_states(self, request_id: int) -> dict[str, str]: ...
    async def mark_items(self, request_id: int, item_ids: Sequence[str], state: str,
                         *, now: datetime) -> None: ...
    async def clear_items(self, request_id: int, item_ids: Sequence[str]) -> None: ...

    # usage
    async def usage(self, chat: ChatRef, *, now: datetime) -> Usage: ...
    async def ledger_total(self) -> int: ...
