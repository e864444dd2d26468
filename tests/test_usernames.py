"""Username normalisation and validation, before any credit is spent."""

from __future__ import annotations

import pytest

from bot.errors import InvalidUsername
from bot.usernames import normalise_username


@pytest.mark.parametrize("typed", [
    "natgeo", "@natgeo", "NatGeo", " @NatGeo ", "https://www.instagram.com/natgeo/",
    "instagram.com/natgeo?igsh=MWQ1ZGUxMzBkMA==", "http://instagram.com/natgeo",
    "https://www.instagram.com/stories/natgeo/3870193736105885141/", "m.instagram.com/NATGEO",
    "www.instagram.com/natgeo#top",
])
def test_accepted_forms(typed: str) -> None:
    assert normalise_username(typed) == "natgeo"


@pytest.mark.parametrize("typed", ["a", "nat.geo", "nat_geo_", "_x", "a" * 29 + "z"])
def test_valid_edge_cases(typed: str) -> None:
    assert normalise_username(typed) == typed.lower()


@pytest.mark.parametrize("typed", [
    "", "   ", "@", "a" * 31, "nat geo", "natgeo!", ".natgeo", "natgeo.", "nat..geo",
    "natgeо",  # Cyrillic о
    "ｎａｔｇｅｏ",  # full-width letters
    "https://example.com/natgeo", "instagram.com/", "instagram.com/p/Cxyz123/",
    "instagram.com/reel/abc/", "javascript:alert(1)", "natgeo\u200b", "x" * 1000,
    "<script>", "nat/geo",
])
def test_refused(typed: str) -> None:
    with pytest.raises(InvalidUsername) as caught:
        normalise_username(typed)
    assert caught.value.user_message  # a sentence for the chat
    assert "Traceback" not in caught.value.user_message
