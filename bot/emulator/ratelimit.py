"""Per-key request limits, enforced the way the API documents them (60/min, 1,000/h, 10,000/day).

The bot's own limiter is tested against this one, so it must be exact: a request is admitted
only if every window has room, and a refusal says when the first slot frees (`Retry-After`).
Sliding windows count the last 60 s / 1 h / 24 h; fixed windows count since the start of the
current minute / hour / UTC day. Refused requests do not count.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

WINDOWS = (60.0, 3600.0, 86400.0)


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    retry_after: int = 0  # whole seconds until a slot frees, at least 1 when refused


class RateLimiter:
    """Admits or refuses requests per key. `limits` returns (per minute, per hour, per day),
    read at each call so a test may change them on a running emulator."""

    def __init__(self, limits: Callable[[], tuple[int, int, int]],
                 mode: Callable[[], Literal["sliding", "fixed"]]) -> None:
        self._limits = limits
        self._mode = mode
        self._hits: dict[str, deque[float]] = {}

    def reset(self, key: str | None = None) -> None:
        if key is None:
            self._hits.clear()
        else:
            self._hits.pop(key, None)

    def hit(self, key: str, now: float) -> Verdict:
        """Count one request at `now` if every window has room."""
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - WINDOWS[-1]:
            hits.popleft()
        fixed = self._mode() == "fixed"
        wait = 0.0
        for window, limit in zip(WINDOWS, self._limits(), strict=True):
            start = math.floor(now / window) * window if fixed else now - window
            # Sliding: hits after `start` count; fixed: hits at or after the window's start.
            first = bisect.bisect_left(hits, start) if fixed else bisect.bisect_right(hits, start)
            if len(hits) - first >= limit:
                if fixed:
                    frees_at = start + window
                else:
                    frees_at = hits[len(hits) - limit] + window if limit > 0 else now + window
                wait = max(wait, frees_at - now)
        if wait > 0:
            return Verdict(False, max(1, math.ceil(wait)))
        hits.append(now)
        return Verdict(True)
