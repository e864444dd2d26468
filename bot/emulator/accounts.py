"""The Instagram accounts the emulator knows, described as small specs.

A spec says what an account holds (kinds, ages, sizes, payload quirks); `payloads.py` turns it
into a real-looking reel at request time. Stories slide with the emulator's clock: an item of
`age` 3600 is always "taken an hour ago", so the sample accounts never run dry however far a
test moves the clock, and their ids stay the same from one request to the next.

Built-in accounts:

    natgeo        6 items: 3 photos, 2 videos and 1 item of unknown media_type 8, over 23 h
    manystories   23 items: 16 photos and 7 videos (every third), over 23 h
    bigvideo      2 items: a photo, then a video whose best variant is `big_video_bytes`
    nostories     no items (success, itemCount 0)
    privateuser   private ("This account is private")
    anything else "User not found"
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from bot.emulator.cdn import PHOTOS, VIDEOS, PhotoFamily, VideoFamily

ItemKind = Literal["photo", "video", "unknown"]
HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class ItemSpec:
    """One story. Only `kind` is needed; the rest has sensible defaults.

    - `age`: seconds before the request that it was taken (None: spread by `AccountSpec`).
    - `media`: which shipped picture or clip (`aurora`/`desert`/`ocean`, `reef`/`lava`);
      None picks one in turn.
    - `size`: pad the best variant to exactly this many bytes (big-file tests); `big=True`
      uses the emulator's `big_video_bytes` instead, read at request time. A padded video
      says it runs 60 s (a file that big is a long video).
    - `media_type`: the raw number for `kind="unknown"` (default 8).
    - The quirk flags reproduce the looseness of real payloads on this one item.
    """

    kind: ItemKind = "photo"
    age: float | None = None
    media: str | None = None
    size: int | None = None
    big: bool = False
    media_type: int | None = None
    pk_as_string: bool = False
    taken_at_as_string: bool = False
    omit_expiring_at: bool = False
    video_versions_null: bool = False  # photos: `video_versions: null` instead of no key
    smallest_first: bool = False  # list candidates / video versions smallest first
    with_sponsor: bool = False  # a paid-partnership sticker and mention, as in the natgeo sample

    @property
    def family(self) -> PhotoFamily | VideoFamily:
        """The shipped picture or clip this item shows."""
        if self.kind == "video":
            return VIDEOS[self.media or "reef"]
        return PHOTOS[self.media or "aurora"]

    def __post_init__(self) -> None:
        if self.kind not in ("photo", "video", "unknown"):
            raise ValueError(f"unknown item kind {self.kind!r}")
        shipped = VIDEOS if self.kind == "video" else PHOTOS
        if self.media is not None and self.media not in shipped:
            raise ValueError(f"no shipped {self.kind} called {self.media!r}")


@dataclass(frozen=True, slots=True)
class AccountSpec:
    username: str
    items: tuple[ItemSpec, ...] = ()
    private: bool = False
    full_name: str | None = None
    verified: bool = False
    user_pk: int | None = None
    reel_id_as_int: bool = False  # natgeo's reel id is a number, others' a string

    def __post_init__(self) -> None:
        object.__setattr__(self, "username", self.username.strip().lower())
        object.__setattr__(self, "items", _with_media_and_ages(self.items))
        if self.user_pk is None:
            digest = hashlib.sha256(self.username.encode()).digest()
            object.__setattr__(self, "user_pk", 10_000_000 + int.from_bytes(digest[:4]) % 10**9)

    @property
    def pk(self) -> int:
        assert self.user_pk is not None
        return self.user_pk


ItemLike = ItemSpec | str | Mapping[str, Any]


def item_spec(value: ItemLike) -> ItemSpec:
    """`"video"`, `{"kind": "video", "size": 55_000_000}` or an `ItemSpec`."""
    if isinstance(value, ItemSpec):
        return value
    if isinstance(value, str):
        return ItemSpec(kind=value)  # type: ignore[arg-type]
    return ItemSpec(**dict(value))


def account_spec(username: str, items: Iterable[ItemLike] = (), *, private: bool = False,
                 full_name: str | None = None, verified: bool = False) -> AccountSpec:
    return AccountSpec(username, tuple(item_spec(item) for item in items), private=private,
                       full_name=full_name, verified=verified)


def _with_media_and_ages(items: tuple[ItemSpec, ...]) -> tuple[ItemSpec, ...]:
    """Fill in missing ages (spread from 23 h ago to 5 min ago in the given order; a lone item
    is an hour old) and media (shipped files in turn), so `["photo", "video"]` is a complete
    account."""
    photos, videos = list(PHOTOS), list(VIDEOS)
    out = []
    count = len(items)
    for index, item in enumerate(items):
        changes: dict[str, Any] = {}
        if item.age is None:
            span = 23 * HOUR - 300
            changes["age"] = 23 * HOUR - span * index / (count - 1) if count > 1 else HOUR
        if item.media is None:
            pool = videos if item.kind == "video" else photos
            changes["media"] = pool[index % len(pool)]
        out.append(replace(item, **changes) if changes else item)
    return tuple(out)


def builtin_accounts() -> dict[str, AccountSpec]:
    natgeo = AccountSpec(
        "natgeo",
        (
            ItemSpec("photo", age=23 * HOUR, media="aurora"),
            ItemSpec("video", age=20 * HOUR, media="reef", taken_at_as_string=True,
                     with_sponsor=True),
            ItemSpec("unknown", age=15 * HOUR, media="desert", media_type=8),
            ItemSpec("photo", age=9 * HOUR, media="desert", video_versions_null=True,
                     omit_expiring_at=True),
            ItemSpec("video", age=3 * HOUR, media="lava", pk_as_string=True, smallest_first=True),
            ItemSpec("photo", age=25 * 60, media="ocean", smallest_first=True),
        ),
        full_name="National Geographic",
        verified=True,
        user_pk=787132,
        reel_id_as_int=True,
    )
    many = account_spec(
        "manystories",
        ["video" if index % 3 == 2 else "photo" for index in range(23)],
        full_name="Many Stories",
    )
    big = AccountSpec(
        "bigvideo",
        (ItemSpec("photo", age=2 * HOUR, media="ocean"),
         ItemSpec("video", age=HOUR, media="reef", big=True)),
        full_name="Big Video",
    )
    accounts = [
        natgeo, many, big,
        AccountSpec("nostories", (), full_name="No Stories Today"),
        AccountSpec("privateuser", (ItemSpec("photo"),), private=True, full_name="Private User"),
    ]
    return {account.username: account for account in accounts}


@dataclass
class AccountBook:
    """The accounts of one emulator; tests add their own."""

    accounts: dict[str, AccountSpec] = field(default_factory=builtin_accounts)

    def get(self, username: str) -> AccountSpec | None:
        return self.accounts.get(username.strip().lower())

    def add(self, account: AccountSpec) -> AccountSpec:
        self.accounts[account.username] = account
        return account

    def remove(self, username: str) -> None:
        self.accounts.pop(username.strip().lower(), None)
