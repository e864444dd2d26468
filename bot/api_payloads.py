"""The stories API's shapes as pydantic models, tolerant of real payloads, and their
translation into the neutral domain objects of `bot.models`.

Real Instagram payloads are looser than the documentation: ids come as numbers or strings
(numbers above 2^53 too — kept exact, as strings), `taken_at` may be a string, `expiring_at`
may be missing, `video_versions` may be missing or null, media types we do not know appear,
and dozens of extra fields are ignored. One bad item never spoils the others.

Bodies are read in two ways that give the same answer (a property test holds them to it):
`decode_body` first decodes straight into msgspec structs of the few fields we use, which
skips the ~100 KB of other fields without building them (about 6x faster than decoding the
whole document and validating it). A body whose fields have any other shape (a list where an
object was expected, a string for a flag...) is decoded as plain JSON instead and read by the
pydantic models, field by field, tolerantly.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from bot import fastjson
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
    if isinstance(value, int):
        return str(value)  # exact, however long
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else str(value)
    return value


def _to_int_or_none(value: Any) -> Any:
    if value is None or value == "":
        return None
    try:
        if isinstance(value, str):
            return int(float(value.strip()))
        if isinstance(value, float):
            return int(value)
    except (ValueError, OverflowError):  # junk, "nan", "1e400", Infinity
        return None
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
    model: a callback carries ~100 of them and only three fields matter."""
    return _usable((entry.get("url"), entry.get("width"), entry.get("height"))
                   for entry in raw or [] if isinstance(entry, dict))


def _usable(entries: Iterable[tuple[Any, Any, Any]]) -> list[MediaVariant]:
    """(url, width, height) → renditions whose URL is a string starting with http(s), sizes
    as loose ints (junk → unknown); largest first, unknown sizes last, the API's order kept
    among equals."""
    return _largest_first([MediaVariant(url, _to_int_or_none(width), _to_int_or_none(height))
                           for url, width, height in entries
                           if isinstance(url, str) and url.startswith(HTTP)])


HTTP = ("http://", "https://")


def _largest_first(variants: list[MediaVariant]) -> list[MediaVariant]:
    variants.sort(key=_area, reverse=True)  # stable: the API's order among equals
    return variants


def _area(variant: MediaVariant) -> int:
    return (variant.width or 0) * (variant.height or 0)


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
    return _story(item.id or item.pk, item.taken_at, item.expiring_at, item.media_type,
                  images, _variants(item.video_versions), item.video_duration)


def _story(ident: str | None, taken_at: int | None, expiring_at: int | None,
           media_type: int | None, images: list[MediaVariant], videos: list[MediaVariant],
           duration: float | None) -> StoryItem | None:
    """The checked fields of one item → `StoryItem`, or None when it cannot be shown."""
    if media_type == 2 or (media_type is None and videos):
        kind, variants = MediaKind.VIDEO, videos
    elif media_type == 1 or (media_type is None and images):
        kind, variants = MediaKind.PHOTO, images
    else:
        log.info("skipping a story item of unknown media_type %r", media_type)
        return None
    if not variants:
        log.info("skipping a story item without a usable URL")
        return None
    taken = _timestamp(taken_at)
    expiring = _timestamp(expiring_at)
    if taken is None:
        taken = (expiring - timedelta(hours=24)) if expiring else datetime.now(UTC)
    if expiring is None:
        expiring = taken + timedelta(hours=24)
    return StoryItem(
        id=ident or f"{int(taken.timestamp())}:{variants[0].url.split('?')[0]}",
        kind=kind,
        variants=tuple(variants),
        taken_at=taken,
        expiring_at=expiring,
        duration=duration if kind is MediaKind.VIDEO else None,
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


def to_result(envelope: Envelope | FastEnvelope, *, username: str) -> StoriesResult:
    """A `success: true` envelope with `data`, of either reading → `StoriesResult` (items
    oldest first)."""
    reel = envelope.data or RawReel()
    user = reel.user or RawUser()
    profile = Profile(
        username=(user.username or username).lower(),
        full_name=user.full_name,
        user_id=_id(user.pk) or _id(user.id) or _id(reel.id),
        is_private=bool(user.is_private),
        is_verified=bool(user.is_verified),
        profile_pic_url=user.profile_pic_url,
    )
    raw_items = reel.items or []
    read = _fast_item if isinstance(envelope, FastEnvelope) else to_item
    return _result(profile, [read(raw) for raw in raw_items], len(raw_items),
                   envelope.creditsCharged, _id(envelope.requestId))


def _result(profile: Profile, stories: Iterable[StoryItem | None], count: int,
            credits: Any, request_id: str | None) -> StoriesResult:
    items: dict[str, StoryItem] = {}
    for story in stories:
        if story is not None and story.id not in items:
            items[story.id] = story
    ordered = tuple(sorted(items.values(), key=lambda s: s.taken_at))
    return StoriesResult(
        profile=profile,
        items=ordered,
        credits_charged=sane_credits(credits),
        api_request_id=request_id,
        skipped_items=count - len(ordered),
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
    """Interpret a final body (a sync answer or a callback, as `decode_body` or any JSON
    decoder gave it): a result, or raise `ApiError`."""
    envelope = body if isinstance(body, FastEnvelope) else parse_envelope(body)
    request_id = _id(envelope.requestId)
    if envelope.success is True and envelope.data is not None:
        return to_result(envelope, username=username)
    if envelope.success is False or envelope.error:
        raise failure_error(envelope.error or envelope.message, request_id=request_id)
    raise UnexpectedResponse("neither a result nor a failure", api_request_id=request_id)


def credits_of(body: Any) -> int:
    """The body's `creditsCharged`, sane, whatever else the body holds."""
    if isinstance(body, FastEnvelope):
        return sane_credits(body.creditsCharged)
    return sane_credits(body.get("creditsCharged")) if isinstance(body, dict) else 0


# --- the fast path -----------------------------------------------------------------------
# The same fields as the models above, typed as narrowly as real payloads allow: anything
# else in them fails the whole decode, and the body is read by the tolerant path instead.

Scalar = str | int | float | bool | None


class _FastVariant(msgspec.Struct):
    url: str | None = None
    width: int | None = None
    height: int | None = None


class _FastImages(msgspec.Struct):
    candidates: list[_FastVariant] | None = None


class _FastItem(msgspec.Struct):
    id: Scalar = None
    pk: Scalar = None
    taken_at: Scalar = None  # a string in some payloads (2018's)
    expiring_at: Scalar = None
    media_type: Scalar = None
    image_versions2: _FastImages | None = None
    video_versions: list[_FastVariant] | None = None
    video_duration: Scalar = None


class _FastUser(msgspec.Struct):
    pk: Scalar = None
    id: Scalar = None
    username: str | None = None
    full_name: str | None = None
    is_private: bool | None = None
    is_verified: bool | None = None
    profile_pic_url: str | None = None


class _FastReel(msgspec.Struct):
    id: Scalar = None
    user: _FastUser | None = None
    items: list[_FastItem] | None = None


class FastEnvelope(msgspec.Struct):
    success: bool | None = None
    requestId: Scalar = None
    status: str | None = None
    message: str | None = None
    error: str | None = None
    data: _FastReel | None = None
    itemCount: Any = None
    creditsCharged: Any = None


_FAST_DECODER = msgspec.json.Decoder(FastEnvelope)


def decode_body(data: bytes) -> Any:
    """A JSON body → what `result_or_error` and `credits_of` read: a `FastEnvelope` when every
    field we use has its usual shape, else the plain JSON value. `ValueError` (or
    `RecursionError`) when it is not JSON at all."""
    try:
        return _FAST_DECODER.decode(data)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return fastjson.loads(data)  # a looser shape, or not JSON: the general decoder decides


def _id(value: Scalar) -> str | None:
    return None if value is None else _to_str(value)


def _fast_variants(raw: list[_FastVariant] | None) -> list[MediaVariant]:
    """As `_usable`, on sizes already decoded as ints (or absent)."""
    if not raw:
        return []
    variants = [MediaVariant(v.url, v.width, v.height) for v in raw
                if v.url is not None and v.url.startswith(HTTP)]
    return _largest_first(variants) if len(variants) > 1 else variants


def _int(value: Scalar) -> int | None:
    return value if type(value) is int else _to_int_or_none(value)


def _fast_item(item: _FastItem) -> StoryItem | None:
    images = _fast_variants(item.image_versions2.candidates if item.image_versions2 else None)
    return _story(_id(item.id) or _id(item.pk), _int(item.taken_at), _int(item.expiring_at),
                  _int(item.media_type), images, _fast_variants(item.video_versions),
                  _to_float_or_none(item.video_duration))
