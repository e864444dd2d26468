"""A compact JSON form of `StoriesResult`, as persisted in the store.

The raw API body (often 100 KB of fields we ignore) is parsed once, when it arrives; what is
kept is this normalised form, enough to deliver after a restart.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bot import fastjson
from bot.models import MediaKind, MediaVariant, Profile, StoriesResult, StoryItem


def _variant(v: MediaVariant) -> list[Any]:
    return [v.url, v.width, v.height]


def _unvariant(data: list[Any]) -> MediaVariant:
    return MediaVariant(data[0], data[1], data[2])


def dumps(result: StoriesResult) -> str:
    p = result.profile
    return fastjson.dumps({
        "profile": {
            "username": p.username, "full_name": p.full_name, "user_id": p.user_id,
            "is_private": p.is_private, "is_verified": p.is_verified,
            "profile_pic_url": p.profile_pic_url,
        },
        "items": [
            {
                "id": i.id, "kind": i.kind.value, "variants": [_variant(v) for v in i.variants],
                "taken_at": i.taken_at.timestamp(), "expiring_at": i.expiring_at.timestamp(),
                "duration": i.duration, "preview": _variant(i.preview) if i.preview else None,
            }
            for i in result.items
        ],
        "credits_charged": result.credits_charged,
        "api_request_id": result.api_request_id,
        "skipped_items": result.skipped_items,
    })


def loads(text: str) -> StoriesResult:
    data = fastjson.loads(text)
    items = tuple(
        StoryItem(
            id=i["id"],
            kind=MediaKind(i["kind"]),
            variants=tuple(_unvariant(v) for v in i["variants"]),
            taken_at=datetime.fromtimestamp(i["taken_at"], UTC),
            expiring_at=datetime.fromtimestamp(i["expiring_at"], UTC),
            duration=i.get("duration"),
            preview=_unvariant(i["preview"]) if i.get("preview") else None,
        )
        for i in data["items"]
    )
    return StoriesResult(
        profile=Profile(**data["profile"]),
        items=items,
        credits_charged=data.get("credits_charged", 0),
        api_request_id=data.get("api_request_id"),
        skipped_items=data.get("skipped_items", 0),
    )
