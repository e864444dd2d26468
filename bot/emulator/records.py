"""What an emulator remembers, for tests to assert on: every API request, every callback attempt
and every callback delivery. API keys never appear here in plain text, only as fingerprints.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

Outcome = Literal[
    "success", "empty", "not_found", "private", "processing", "unauthorized", "rate_limited",
    "bad_request", "payment_required", "fault", "hung",
]


def key_fingerprint(key: str) -> str:
    """A stable, non-reversible name for a key, safe for logs and records."""
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:10]


def redact_url(url: str) -> str:
    """`http://host:8080/callbacks/…`: the last path segment of a callback URL is its secret."""
    parts = urlsplit(url)
    head, _, _ = parts.path.rpartition("/")
    return f"{parts.scheme}://{parts.netloc}{head}/…"


@dataclass
class RequestRecord:
    """One `POST /api/instagram/stories`. In webhook mode `outcome` starts as "processing" and
    becomes the result's outcome when it is produced; `result` is the body the client got
    (sync) or the callback body (webhook)."""

    request_id: str
    at: float
    status: int
    outcome: Outcome
    key: str | None = None  # fingerprint, see key_fingerprint()
    username: str | None = None
    mode: Literal["sync", "webhook"] | None = None
    webhook_url: str | None = None
    credits_charged: int = 0
    retry_after: int | None = None
    result: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class CallbackAttempt:
    """One POST of a result to a webhook URL."""

    request_id: str
    url: str
    attempt: int  # 1-based within its delivery
    copy: int  # 1, or 2 for the duplicate of `duplicate_callbacks`
    status: int | None  # None: no HTTP answer (connection error, timeout)
    error: str | None
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class CallbackDelivery:
    """One result sent to one webhook URL, with however many attempts it took. `finished` is
    set when it was delivered, given up on, or dropped (`drop_callbacks`)."""

    request_id: str
    url: str
    copy: int
    body: dict[str, Any]
    attempts: list[CallbackAttempt] = field(default_factory=list)
    delivered: bool = False
    dropped: bool = False
    finished: bool = False
