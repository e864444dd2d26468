"""A client-side limiter per API key, so the bot queues briefly instead of collecting 429s.

The API allows 60 requests a minute, 1,000 an hour and 10,000 a day per account. `reserve`
books the earliest slot that fits every window and returns how long to wait for it; the caller
sleeps that long (and tells the user when it is long). Sliding windows, in memory: after a
restart the API's own 429 (with Retry-After) is the backstop.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

DEFAULT_WINDOWS: tuple[tuple[float, int], ...] = ((60.0, 60), (3600.0, 1000), (86400.0, 10000))


class KeyRateLimiter:
    def __init__(self, windows: tuple[tuple[float, int], ...] = DEFAULT_WINDOWS,
                 *, clock: Callable[[], float] = time.monotonic, margin: float = 1.0) -> None:
        # `margin` widens each window a little: the API counts a request when it arrives,
        # a moment after it was booked here.
        self._windows = tuple((span + margin, limit) for span, limit in windows if limit > 0)
        self._clock = clock
        self._booked: dict[str, deque[float]] = {}
        self._blocked_until: dict[str, float] = {}

    def block(self, key: str, seconds: float) -> None:
        """The API said 429 (another client may share the key): no slot for `seconds`."""
        until = self._clock() + max(0.0, seconds)
        self._blocked_until[key] = max(until, self._blocked_until.get(key, 0.0))

    def reserve(self, key: str) -> float:
        """Book a slot for `key`; return the seconds to wait before using it (0 = now)."""
        now = self._clock()
        booked = self._booked.setdefault(key, deque())
        longest = max((span for span, _ in self._windows), default=0.0)
        while booked and booked[0] <= now - longest:
            booked.popleft()
        at = max(now, self._blocked_until.get(key, now))
        for span, limit in self._windows:
            # The slot must be at least `span` after the limit-th most recent booking.
            if len(booked) >= limit:
                at = max(at, booked[-limit] + span)
        booked.append(at)  # stays sorted: a binding window only ever pushes `at` later
        return max(0.0, at - now)
