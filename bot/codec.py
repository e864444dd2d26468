"""A compact JSON form of `StoriesResult`, as persisted in the store.

The raw API body (often 100 KB of fields we ignore) is parsed once, when it arrives; what is
kept is this normalised form, enough to deliver after a restart.
"""

from __future__ import annotations

import msgspec

from bot.models import StoriesResult


def dumps(result: StoriesResult) -> str:
    """Timestamps as numbers; renditions as `[url, width, height]` (`MediaVariant` is an
    array-like struct)."""
    p = result.profile
    return _ENCODER.encode({
        "profile": {
            "username": p.username, "full_name": p.full_name, "user_id": p.user_id,
            "is_private": p.is_private, "is_verified": p.is_verified,
            "profile_pic_url": p.profile_pic_url,
        },
        "items": [
            {
                "id": i.id, "kind": i.kind.value, "variants": i.variants,
                "taken_at": i.taken_at.timestamp(), "expiring_at": i.expiring_at.timestamp(),
                "duration": i.duration, "preview": i.preview,
            }
            for i in result.items
        ],
        "credits_charged": result.credits_charged,
        "api_request_id": result.api_request_id,
        "skipped_items": result.skipped_items,
    }).decode()


def loads(text: str) -> StoriesResult:
    return _DECODER.decode(text)


# Straight into the domain objects (`bot.models` are msgspec structs), ten times faster than
# building them from decoded JSON. Not strict: timestamps are stored as numbers.
_DECODER = msgspec.json.Decoder(StoriesResult, strict=False)
_ENCODER = msgspec.json.Encoder()
