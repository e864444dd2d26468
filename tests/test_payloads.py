"""Parsing of API bodies: the documented shapes and real, looser Instagram payloads."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot import codec
from bot.api_payloads import FastEnvelope, decode_body, result_or_error
from bot.errors import (
    AccountNotFound,
    AccountPrivate,
    OutOfCredits,
    UnexpectedResponse,
    UpstreamUnavailable,
)
from bot.models import MediaKind

DATA = Path(__file__).parent / "data"


def envelope(reel: dict[str, Any], credits: int = 1) -> dict[str, Any]:
    return {"success": True, "requestId": "req-1",
            "data": {"id": reel.get("id"), "user": reel.get("user"), "items": reel.get("items")},
            "itemCount": len(reel.get("items") or []), "creditsCharged": credits}


Read = Callable[[Any], Any]


@pytest.fixture(params=["decoded", "raw"])
def read(request: pytest.FixtureRequest) -> Read:
    """Every test reads its body both ways: as a decoded JSON value (the pydantic path) and as
    the raw bytes a callback brings (`decode_body`: the msgspec path where the shapes allow)."""
    if request.param == "decoded":
        return lambda body: body
    return lambda body: decode_body(json.dumps(body).encode())


@pytest.mark.parametrize("name,key", [("ig-reel-2026-natgeo-3-videos.json", "reel"),
                                      ("ig-reel-2018-private-api.json", "data"),
                                      ("ig-reel-2026-natgeo-partial.json", "reel")])
def test_real_payloads_take_the_fast_path_with_the_same_result(name: str, key: str) -> None:
    body = envelope(json.loads((DATA / name).read_text())[key])
    fast = decode_body(json.dumps(body).encode())
    assert isinstance(fast, FastEnvelope)
    assert result_or_error(fast, username="x") == result_or_error(body, username="x")


def test_a_result_is_stored_compressed_and_read_back_in_either_form() -> None:
    reel = json.loads((DATA / "ig-reel-2026-natgeo-3-videos.json").read_text())["reel"]
    result = result_or_error(envelope(reel), username="natgeo")
    packed = codec.pack(result)
    assert isinstance(packed, bytes) and len(packed) < len(codec.dumps(result)) / 2
    assert codec.unpack(packed) == result
    assert codec.unpack(codec.dumps(result)) == result  # JSON text, as stored before


def test_other_shapes_fall_back_to_plain_json() -> None:
    body = {"success": "true", "data": {"items": ["not a dict"]}}
    assert decode_body(json.dumps(body).encode()) == body
    assert decode_body(b"[1, 2]") == [1, 2]
    for garbage in (b"{not json", b"\xff\xfe\x00garbage", b"", b'{"a": Infinity'):
        with pytest.raises(ValueError):  # UnicodeDecodeError is one too
            decode_body(garbage)


def test_2026_natgeo_three_videos(read: Read) -> None:
    reel = json.loads((DATA / "ig-reel-2026-natgeo-3-videos.json").read_text())["reel"]
    result = result_or_error(read(envelope(reel)), username="natgeo")
    assert result.profile.username == "natgeo"
    assert result.profile.user_id == "787132"
    assert result.credits_charged == 1
    assert len(result.items) == 3
    assert all(i.kind is MediaKind.VIDEO for i in result.items)
    first = result.items[0]
    assert first.width == 720 and first.height == 1280
    assert first.duration is not None and 13 < first.duration < 15
    assert first.preview is not None and first.preview.width == 640
    assert [i.taken_at for i in result.items] == sorted(i.taken_at for i in result.items)
    assert (first.expiring_at - first.taken_at).total_seconds() == 86400
    # big-integer ids survive exactly, as strings
    assert all("_787132" in i.id for i in result.items)


def test_2018_private_api_strings_and_masked_ids(read: Read) -> None:
    reel = json.loads((DATA / "ig-reel-2018-private-api.json").read_text())["data"]
    result = result_or_error(read(envelope(reel)), username="whoever")
    assert len(result.items) == 1
    item = result.items[0]
    assert item.kind is MediaKind.PHOTO
    assert item.width == 1080 and item.height == 1920  # the largest candidate first
    assert item.taken_at.timestamp() == 1533822620  # "taken_at" was a string


def test_partial_item_is_skipped_not_fatal(read: Read) -> None:
    reel = json.loads((DATA / "ig-reel-2026-natgeo-partial.json").read_text())["reel"]
    result = result_or_error(read(envelope(reel)), username="natgeo")
    assert result.items == ()
    assert result.skipped_items == 1
    assert result.profile.full_name == "National Geographic"


@pytest.mark.parametrize("value,credits", [
    (1, 1), ("3", 3), (2.0, 2), (-1, 0), (True, 0), (10**30, 0), ("x", 0), (None, 0), (1.5, 0)])
def test_credits_are_sane(read: Read, value: Any, credits: int) -> None:
    body = {"success": True, "data": {"items": []}, "creditsCharged": value}
    assert result_or_error(read(body), username="x").credits_charged == credits


def test_loose_items(read: Read) -> None:
    photo = {"id": 1, "taken_at": "1700000000", "media_type": 1, "video_versions": None,
             "image_versions2": {"candidates": [
                 {"url": "https://x/small.jpg?oe=1", "width": 240, "height": 426},
                 {"url": "https://x/big.jpg?oe=1&sig=a", "width": "1080", "height": 1920}]}}
    video = {"pk": 3870193736105885141, "taken_at": 1700000100, "expiring_at": None,
             "media_type": 2, "video_duration": "7.5",
             "video_versions": [{"type": 101, "url": "https://x/v.mp4", "width": 720,
                                 "height": 1280, "id": "9v"}],
             "image_versions2": {"candidates": []}}
    unknown = {"id": "u", "taken_at": 1700000050, "media_type": 8,
               "image_versions2": {"candidates": [{"url": "https://x/c.jpg"}]}}
    no_url = {"id": "n", "taken_at": 1700000060, "media_type": 1, "image_versions2": None}
    junk = ["not a dict", None, 42]
    body = {"success": True, "requestId": 77, "data": {
        "id": 5, "user": {"pk": 5, "username": "Someone", "is_private": False},
        "items": [video, unknown, photo, no_url, *junk, photo]}, "creditsCharged": "2"}
    result = result_or_error(read(body), username="someone")
    assert [i.kind for i in result.items] == [MediaKind.PHOTO, MediaKind.VIDEO]
    assert result.items[0].url == "https://x/big.jpg?oe=1&sig=a"  # query string untouched
    assert result.items[1].id == "3870193736105885141"
    assert result.items[1].duration == 7.5
    assert (result.items[1].expiring_at - result.items[1].taken_at).total_seconds() == 86400
    assert result.api_request_id == "77"
    assert result.credits_charged == 2
    assert result.skipped_items == 6  # unknown type, no URL, 3 junk entries, one duplicate
    assert codec.unpack(codec.dumps(result)) == result


@pytest.mark.parametrize("body,error", [
    ({"success": False, "error": "User not found", "requestId": "r"}, AccountNotFound),
    ({"success": False, "error": "This account is private"}, AccountPrivate),
    ({"success": False, "error": "Insufficient credits"}, OutOfCredits),
    ({"success": False, "error": "Instagram is down"}, UpstreamUnavailable),
    ({"success": False}, UnexpectedResponse),
    ({"hello": "world"}, UnexpectedResponse),
    ([1, 2], UnexpectedResponse),
    ("text", UnexpectedResponse),
    ({"success": True, "status": "processing"}, UnexpectedResponse),
    ({"success": True, "data": "nope"}, UnexpectedResponse),
])
def test_failure_shapes(read: Read, body: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        result_or_error(read(body), username="x")
