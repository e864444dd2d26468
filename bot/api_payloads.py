"""The stories API's shapes as pydantic models, tolerant of real payloads, and their
translation into the neutral domain objects of `bot.models`.

Real Instagram payloads are looser than the documentation: ids come as numbers or strings
(numbers above 2^53 too — kept exact, as strings), `taken_at` may be a string, `expiring_at`
may be missing, `video_versions` may be missing or null, media types we do not know appear,
and dozens of extra fields are ignored. One bad item never spoils the others.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from bot.errors import (
    AccountNotFound,
    AccountPrivate,
    ApiError,
    InvalidApiKey,
    OutOfCredits,
    RateLimited,
    UnexpectedResponse,
    UpstreamUnavailable,
)
from bot.models import MediaKind, MediaVariant, Profile, StoriesResult, StoryItem

log = logging.getLogger(__name__)


def _to_str(value: Any) -> Any:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return str(int(value)) if float(value).is_integer() else str(value)
    return value


def _to_int_or_none(value: Any) -> Any:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            return int(float(value.strip()))
        except ValueError:
            return None
    if isinstance(value, float):
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _to_float_or_none(value: Any) -> Any:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _none_if_not_list(value: Any) -> Any:
    return value if isinstance(value, list) else None


def _none_if_not_dict(value: Any) -> Any:
    return value if isinstance(value, dict) else None


Id = Annotated[str | None, BeforeValidator(_to_str)]
LooseInt = Annotated[int | None, BeforeValidator(_to_int_or_none)]
LooseFloat = Annotated[float | None, BeforeValidator(_to_float_or_none)]
LooseList = Annotated[list[Any] | None, BeforeValidator(_none_if_not_list)]


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)


class ImageVersions(_Loose):
    candidates: LooseList = None


class RawItem(_Loose):
    id: Id = None
    pk: Id = None
    taken_at: LooseInt = None
    expiring_at: LooseInt = None
    media_type: LooseInt = None
    image_versions2: Annotated[ImageVersions | None, BeforeValidator(_none_if_not_dict)] = None
    video_versions: LooseList = None
    video_duration: LooseFloat = None


class RawUser(_Loose):
    pk: Id = None
    id: Id = None
    username: str | None = None
    full_name: str | None = None
    is_private: bool | None = None
    is_verified: bool | None = None
    profile_pic_url: str | None = None


class RawReel(_Loose):
    id: Id = None
    user: Annotated[RawUser | None, BeforeValidator(_none_if_not_dict)] = None
    items: LooseList = None


class Envelope(_Loose):
    """Every documented top-level shape at once: success, processing, failure, auth error."""

    success: bool | None = None
    requestId: Id = None
    status: str | None = None
    message: str | None = None
    error: str | None = None
    data: Annotated[RawReel | None, BeforeValidator(_none_if_not_dict)] = None
    itemCount: LooseInt = None
    creditsCharged: Any = None  # checked by sane_credits


def _variants(raw: list[Any] | None) -> list[MediaVariant]:
    """The usable renditions among `candidates` / `video_versions` entries.

    Each entry is `{url, width, height, …}`. They are read by hand rather than through a
    model: a callback carries ~100 of them and only three fields matter (a URL that is a
    string starting with http(s); sizes as loose ints, junk → unknown)."""
    found: list[MediaVariant] = []
    for entry in raw or []:
        if not isinstance(entry, dict):
            continue
        url = entry.get("url")
        if isinstance(url, str) and url.startswith(("http://", "https://")):
            found.append(MediaVariant(url, _to_int_or_none(entry.get("width")),
                                      _to_int_or_none(entry.get("height"))))
    # Largest first; unknown sizes last, keeping the API's order among equals.
    return sorted(found, key=lambda v: -((v.width or 0) * (v.height or 0)))


def _timestamp(value: int | None) -> datetime | None:
    if value is None or value <= 0:
        return None
    if value > 10**11:  # milliseconds or microseconds
        while value > 10**11:
            value //= 1000
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def to_item(raw: Any) -> StoryItem | None:
    """One API item → `StoryItem`, or None when it cannot be shown (logged, not raised)."""
    if not isinstance(raw, dict):
        return None
    try:
        item = RawItem.model_validate(raw)
    except ValidationError as exc:
        log.info("skipping a story item that does not validate: %s", exc.error_count())
        return None
    images = _variants(item.image_versions2.candidates if item.image_versions2 else None)
    videos = _variants(item.video_versions)
    if item.media_type == 2 or (item.media_type is None and videos):
        kind, variants = MediaKind.VIDEO, videos
    elif item.media_type == 1 or (item.media_type is None and images):
        kind, variants = MediaKind.PHOTO, images
    else:
        log.info("skipping a story item of unknown media_type %r", item.media_type)
        return None
    if not variants:
        log.info("skipping a story item without a usable URL")
        return None
    taken = _timestamp(item.taken_at)
    expiring = _timestamp(item.expiring_at)
    if taken is None:
        taken = (expiring - timedelta(hours=24)) if expiring else datetime.now(UTC)
    if expiring is None:
        expiring = taken + timedelta(hours=24)
    ident = item.id or item.pk or f"{int(taken.timestamp())}:{variants[0].url.split('?')[0]}"
    return StoryItem(
        id=ident,
        kind=kind,
        variants=tuple(variants),
        taken_at=taken,
        expiring_at=expiring,
        duration=item.video_duration if kind is MediaKind.VIDEO else None,
        preview=images[0] if images else None,
    )


MAX_CREDITS = 1_000_000  # per request; anything larger is not a charge but a broken body


def sane_credits(value: Any) -> int:
    """`creditsCharged` as a count we can store: a non-negative int, or 0 for junk."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and 0 <= value <= MAX_CREDITS:
        return value
    if value not in (None, 0):
        log.warning("ignoring an implausible creditsCharged value")
    return 0


def to_result(envelope: Envelope, *, username: str) -> StoriesResult:
    """A `success: true` envelope with `data` → `StoriesResult` (items oldest first)."""
    reel = envelope.data or RawReel()
    user = reel.user or RawUser()
    profile = Profile(
        username=(user.username or username).lower(),
        full_name=user.full_name,
        user_id=user.pk or user.id or reel.id,
        is_private=bool(user.is_private),
        is_verified=bool(user.is_verified),
        profile_pic_url=user.profile_pic_url,
    )
    raw_items = reel.items or []
    items: dict[str, StoryItem] = {}
    for raw in raw_items:
        story = to_item(raw)
        if story is not None and story.id not in items:
            items[story.id] = story
    ordered = tuple(sorted(items.values(), key=lambda s: s.taken_at))
    return StoriesResult(
        profile=profile,
        items=ordered,
        credits_charged=sane_credits(envelope.creditsCharged),
        api_request_id=envelope.requestId,
        skipped_items=len(raw_items) - len(ordered),
    )


_NOT_FOUND = re.compile(r"not\s*found|does\s*n[o']t\s*exist|no\s+such\s+user|unknown\s+user", re.I)
_PRIVATE = re.compile(r"\bprivate\b", re.I)
_CREDITS = re.compile(r"credit|insufficient|balance|payment", re.I)
_RATE = re.compile(r"rate\s*limit|too\s+many", re.I)
_AUTH = re.compile(r"unauthori[sz]ed|invalid.*(key|token)|expired\s+token|forbidden", re.I)


def failure_error(text: str | None, *, request_id: str | None = None,
                  status: int | None = None) -> ApiError:
    """Map a failure text (`success: false` or an error body) to a typed error."""
    detail = (text or "").strip()[:300]
    for pattern, cls in (
        (_NOT_FOUND, AccountNotFound), (_PRIVATE, AccountPrivate), (_CREDITS, OutOfCredits),
        (_AUTH, InvalidApiKey),
    ):
        if pattern.search(detail):
            return cls(detail, status=status, api_request_id=request_id)
    if _RATE.search(detail):
        return RateLimited(detail, status=status, api_request_id=request_id)
    if not detail:
        return UnexpectedResponse("failure without an error text", status=status,
                                  api_request_id=request_id)
    return UpstreamUnavailable(detail, status=status, api_request_id=request_id)


def parse_envelope(body: Any) -> Envelope:
    if not isinstance(body, dict):
        raise UnexpectedResponse(f"expected a JSON object, got {type(body).__name__}")
    try:
        return Envelope.model_validate(body)
    except ValidationError as exc:
        raise UnexpectedResponse(f"unrecognised body ({exc.error_count()} errors)") from None


def result_or_error(body: Any, *, username: str) -> StoriesResult:
    """Interpret a final body (a sync answer or a callback): a result, or raise `ApiError`."""
    envelope = parse_envelope(body)
    if envelope.success is True and envelope.data is not None:
        return to_result(envelope, username=username)
    if envelope.success is False or envelope.error:
        raise failure_error(envelope.error or envelope.message, request_id=envelope.requestId)
    raise UnexpectedResponse("neither a result nor a failure", api_request_id=envelope.requestId)
