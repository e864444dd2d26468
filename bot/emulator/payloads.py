"""Turns account specs into reel payloads shaped like the real ones, and wraps them in the API's
envelopes.

The item structure follows a complete natgeo story captured from a HikerAPI response in April
2026 (the field names, nesting and value types of `ig-reel-2026-natgeo-3-videos.json`), with
the looseness real payloads show: ids as numbers and strings, pks above 2^53, `taken_at` as a
string, `expiring_at` missing, `video_versions` missing or null on photos and several sizes on
videos, several image candidates (not always largest first), unknown media types, a DASH
manifest of a few KB, sticker arrays and dozens of fields a client must ignore. The widths and
heights given are those of the files actually served.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

from bot.emulator.accounts import AccountSpec, ItemSpec
from bot.emulator.cdn import PHOTOS, Asset, VideoFamily

DAY = 86400
LONGEST_STORY = 60.0  # seconds
_SHORTCODE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_PK_BASE = 3_870_000_000_000_000_000  # the order of magnitude of 2026 story pks (> 2^53)


@dataclass(frozen=True, slots=True)
class MediaLinks:
    """How the payload builder names files: `url(name)` signs a media name into a URL,
    `padded(name, size)` names `name` padded to `size` bytes."""

    url: Callable[[str], str]
    padded: Callable[[str, int], str]


def _digest(*parts: object) -> bytes:
    return hashlib.sha256(":".join(map(str, parts)).encode()).digest()


def shortcode(pk: int) -> str:
    """Instagram's `code`: the media pk in a URL-safe base-64 alphabet."""
    digits = []
    while pk:
        pk, rest = divmod(pk, 64)
        digits.append(_SHORTCODE_ALPHABET[rest])
    return "".join(reversed(digits)) or "A"


def item_pk(account: AccountSpec, index: int, item: ItemSpec) -> int:
    seed = _digest(account.username, index, item.kind, item.media, item.age)
    return _PK_BASE + int.from_bytes(seed[:8]) % 10**15


def build_user(account: AccountSpec, *, latest_reel_media: int, links: MediaLinks,
               unseen: int) -> dict[str, Any]:
    pk = account.pk
    return {
        "strong_id__": str(pk),
        "pk": pk,
        "pk_id": str(pk),
        "id": str(pk),
        "fbid_v2": 17_841_400_000_000_000 + pk,
        "username": account.username,
        "full_name": account.full_name or account.username.title(),
        "is_private": account.private,
        "is_verified": account.verified,
        "profile_pic_id": f"{3_865_702_555_259_028_436 + pk % 1000}_{pk}",
        "profile_pic_url": links.url(PHOTOS["ocean"].sizes[-1].name),
        "has_anonymous_profile_picture": False,
        "third_party_downloads_enabled": 0,
        "account_badges": [],
        "latest_reel_media": latest_reel_media,
        "is_verified_search_boosted": False,
        "is_ring_creator": False,
        "show_ring_award": False,
        "social_context": None,
        "should_show_category": False,
        "show_text_post_app_badge": False,
        "unseen_count": unseen,
        "friendship_status": None,
        "interop_messaging_user_fbid": 113_671_860_000_000 + pk,
        "is_creator_agent_enabled": False,
        "transparency_product_enabled": False,
        "is_screenshot_blocking_enabled": False,
    }


def _item_user(account: AccountSpec, user: dict[str, Any]) -> dict[str, Any]:
    return {
        "strong_id__": user["strong_id__"], "id": user["id"], "pk": user["pk"],
        "fbid_v2": user["fbid_v2"], "pk_id": user["pk_id"],
        "eligible_for_text_app_activation_badge": False, "account_type": 2,
        "is_private": account.private, "account_badges": [], "full_name": user["full_name"],
        "is_verified": account.verified, "profile_pic_id": user["profile_pic_id"],
        "profile_pic_url": user["profile_pic_url"], "username": account.username,
        "user_activation_info": {},
    }


def _candidates(assets: tuple[Asset, ...], links: MediaLinks, smallest_first: bool,
                pk: int) -> dict[str, Any]:
    candidates = []
    for asset in assets:
        scans = 2000 + pk % 3000
        candidates.append({
            "estimated_scans_sizes": [scans, scans * 2, scans * 3],
            "height": asset.height,
            "scans_profile": "e15",
            "url": links.url(asset.name),
            "width": asset.width,
            "is_spatial_image": False,
        })
    # The largest appears twice, as in captured payloads.
    candidates.insert(1, dict(candidates[0]))
    if smallest_first:
        candidates.reverse()
    return {"candidates": candidates}


def _video_versions(item: ItemSpec, links: MediaLinks, pk: int, size: int | None,
                    sizes: dict[str, int], duration: float) -> list[dict[str, Any]]:
    family = item.family
    assert isinstance(family, VideoFamily)
    best, small = family.sizes[0], family.sizes[-1]
    best_name = links.padded(best.name, size) if size else best.name
    best_bytes = size or sizes[best.name]
    versions = [
        (101, best, best_name, best_bytes),
        (102, small, small.name, sizes[small.name]),
        (103, small, small.name, sizes[small.name]),
    ]
    out = [
        {
            "bandwidth": int(length * 8 / duration),
            "height": asset.height,
            "id": f"{int.from_bytes(_digest(pk, kind)[:6])}v",
            "type": kind,
            "url": links.url(name),
            "url_expiration_timestamp_us": None,
            "width": asset.width,
            "fallback": None,
        }
        for kind, asset, name, length in versions
    ]
    if item.smallest_first:
        out.reverse()
    return out


def _dash_manifest(versions: list[dict[str, Any]], duration: float, has_audio: bool) -> str:
    """An MPD like Instagram's (a few KB of XML that clients must carry and ignore)."""
    reps = []
    for index, version in enumerate(sorted(versions, key=lambda v: -v["width"]) * 2):
        label = f"{version['height'] * 9 // 16}p"
        reps.append(
            f'<Representation id="{version["id"][:-1]}{index}d" bandwidth="{version["bandwidth"]}" '
            f'codecs="avc1.4D401E" mimeType="video/mp4" sar="1:1" width="{version["width"]}" '
            f'height="{version["height"]}" FBEncodingTag="dash_baseline_{index + 1}_v1" '
            f'FBContentLength="{version["bandwidth"] * int(duration) // 8}" '
            f'FBPlaybackResolutionMos="0:100,360:{80 - index},480:{76 - index},720:{70 - index}" '
            f'FBQualityClass="sd" FBQualityLabel="{label}">'
            f"<BaseURL>{escape(version['url'])}</BaseURL>"
            f'<SegmentBase indexRange="{900 + index}-{1043 + index}" timescale="15360" '
            f'FBMinimumPrefetchRange="{1044 + index}-{9000 + index}" '
            f'FBFirstSegmentRange="{1044 + index}-{30000 + index}" '
            f'FBPrefetchSegmentRange="0-{30000 + index}">'
            f'<Initialization range="0-{899 + index}"/></SegmentBase></Representation>'
        )
    audio = (
        '<AdaptationSet id="1" contentType="audio" subsegmentStartsWithSAP="1" '
        'subsegmentAlignment="true"><Representation id="audio0" bandwidth="24000" '
        'codecs="mp4a.40.5" mimeType="audio/mp4" FBAvgBitrate="24000" audioSamplingRate="44100" '
        'FBEncodingTag="dash_ln_heaac_vbr3_audio" FBDefaultQuality="1"><BaseURL>'
        + escape(versions[-1]["url"])
        + '</BaseURL><SegmentBase indexRange="824-899" timescale="44100"><Initialization '
        'range="0-823"/></SegmentBase></Representation></AdaptationSet>'
    ) if has_audio else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" '
        'minBufferTime="PT1.500S" type="static" '
        f'mediaPresentationDuration="PT0H0M{duration:.3f}S" maxSegmentDuration="PT0H0M2.000S" '
        'profiles="urn:mpeg:dash:profile:isoff-on-demand:2011,http://dashif.org/guidelines/'
        'dash264" FBManifestIdentifier="FgAYEmRhc2hfYmFzZWxpbmVfMV92MREAdQRlAA==">'
        f'<Period id="0" duration="PT0H0M{duration:.3f}S"><AdaptationSet id="0" '
        'contentType="video" frameRate="15/1" subsegmentAlignment="true" par="9:16" '
        'FBUnifiedUploadResolutionMos="360:86.2,480:82.1,720:76.4">'
        + "".join(reps)
        + "</AdaptationSet>" + audio + "</Period></MPD>"
    )


def _sponsor_fields(links: MediaLinks) -> dict[str, Any]:
    prada = {
        "strong_id__": "304662892", "pk": 304662892, "pk_id": "304662892", "id": "304662892",
        "username": "prada", "full_name": "Prada", "is_private": False, "is_verified": True,
        "profile_pic_id": "3256058276699330356_304662892",
        "profile_pic_url": links.url(PHOTOS["desert"].sizes[-1].name),
    }
    return {
        "is_paid_partnership": True,
        "sponsor_tags": [{"permission": False, "sponsor_id": None, "username": None,
                          "is_pending": False,
                          "sponsor": {**prada, "is_unpublished": False,
                                      "follower_count": 34037491}}],
        "reel_mentions": [{
            "end_time_ms": 86400.0, "height": 0.0, "id": "1517189826474103",
            "is_fb_sticker": 0, "is_hidden": 0, "is_pinned": 0, "is_sticker": 1,
            "rotation": 0.0, "start_time_ms": 0.0, "width": 0.0, "x": 0.0, "y": 0.0, "z": 0,
            "user": prada,
        }],
    }


def build_item(account: AccountSpec, index: int, item: ItemSpec, *, now: int, user: dict[str, Any],
               links: MediaLinks, sizes: dict[str, int], big_video_bytes: int) -> dict[str, Any]:
    pk = item_pk(account, index, item)
    taken_at = now - int(item.age or 0)
    media_type = {"photo": 1, "video": 2}.get(item.kind, item.media_type or 8)
    pad_to = big_video_bytes if item.big else item.size
    ident = f"{pk}_{account.pk}"
    payload: dict[str, Any] = {
        "strong_id__": ident,
        "id": ident,
        "expiring_at": taken_at + DAY,
        "pk": str(pk) if item.pk_as_string else pk,
        "is_visual_reply_commenter_notice_enabled": True,
        "is_reel_media": True,
        "fbid": 18_000_000_000_000_000 + pk % 10**15,
        "mezql_token": "",
        "should_request_ads": False,
        "is_terminal_video_segment": False,
        "integrity_review_decision": "pending",
        "client_cache_key": base64.b64encode(str(pk).encode()).decode() + ".3",
        "has_privately_liked": False,
        "user": _item_user(account, user),
        "caption": None,
        "commenting_disabled_for_viewer": True,
        "media_type": media_type,
        "original_media_type": media_type,
        "fundraiser_tag": {"has_standalone_fundraiser": False},
        "sharing_friction_info": {"bloks_app_url": None, "should_have_sharing_friction": False,
                                  "sharing_friction_payload": None},
        "has_translation": False,
        "sponsor_tags": [],
        "coauthor_producers": [],
        "media_overlay_info": None,
        "original_width": 1080,
        "original_height": 1920,
        "is_paid_partnership": False,
        "music_metadata": None,
        "organic_tracking_token": base64.b64encode(json.dumps(
            {"version": 5, "payload": {"is_analytics_tracked": True, "uuid": _digest(pk).hex(),
                                       "server_token": f"{now}000|{pk}|{account.pk}|emulator"},
             "signature": ""}, separators=(",", ":")).encode()).decode(),
        "crosspost_metadata": {"fb_downstream_use_xpost_metadata": {
            "downstream_use_xpost_deny_reason": "NONE"}},
        "creative_config": None,
        "cutout_sticker_info": [],
        "gen_ai_detection_method": {"detection_method": "NONE"},
        "taken_at": str(taken_at) if item.taken_at_as_string else taken_at,
        "product_type": "story",
        "has_liked": False,
        "can_viewer_save": False,
        "device_timestamp": taken_at * 1_000_000 + pk % 1_000_000,
        "code": shortcode(pk),
        "filter_type": 0,
        "deleted_reason": 0,
        "can_reshare": True,
        "can_reply": True,
        "supports_reel_reactions": True,
        "show_one_tap_fb_share_tooltip": True,
        "reel_mentions": [],
        "story_polls": [], "story_quizs": [], "story_questions": [], "story_sliders": [],
        "story_hashtags": [], "story_locations": [], "story_feed_media": [],
        "story_music_stickers": [], "story_link_stickers": [], "story_countdowns": [],
    }
    family = item.family
    if isinstance(family, VideoFamily):
        # A padded clip claims the longest a story runs: files of tens of MB are long videos
        # (a 3 s clip of 25 MB would be a bitrate no story has).
        duration = LONGEST_STORY if pad_to else family.duration
        versions = _video_versions(item, links, pk, pad_to, sizes, duration)
        payload.update({
            "is_dash_eligible": 1,
            "video_codec": "avc1.4D401E",
            "number_of_qualities": len(versions),
            "video_versions": versions,
            "video_duration": duration - 0.0330000039935112,
            "has_audio": family.has_audio,
            "image_versions2": _candidates(family.previews, links, item.smallest_first, pk),
            "video_dash_manifest": _dash_manifest(versions, duration, family.has_audio),
        })
    else:
        assets = family.sizes
        if pad_to:
            best = family.sizes[0]
            assets = (Asset(links.padded(best.name, pad_to), "photo", best.width, best.height,
                            best.content_type), *family.sizes[1:])
        payload["image_versions2"] = _candidates(assets, links, item.smallest_first, pk)
        if item.video_versions_null:
            payload["video_versions"] = None
        if item.kind == "unknown":
            payload["carousel_media_count"] = 2
    if item.with_sponsor:
        payload.update(_sponsor_fields(links))
    if item.omit_expiring_at:
        del payload["expiring_at"]
    return payload


def build_reel(account: AccountSpec, *, now: int, links: MediaLinks, sizes: dict[str, int],
               big_video_bytes: int) -> dict[str, Any]:
    """`data` of a success: the reel's `id`, `user` and `items` (oldest first), plus the other
    reel-level fields a real response carries."""
    order = sorted(range(len(account.items)), key=lambda i: -(account.items[i].age or 0))
    latest = max((now - int(item.age or 0) for item in account.items), default=0)
    user = build_user(account, latest_reel_media=latest, links=links, unseen=len(order))
    items = [
        build_item(account, index, account.items[index], now=now, user=user, links=links,
                   sizes=sizes, big_video_bytes=big_video_bytes)
        for index in order
    ]
    reel: dict[str, Any] = {
        "id": account.pk if account.reel_id_as_int else str(account.pk),
        "strong_id__": str(account.pk),
        "latest_reel_media": latest,
        "seen": 0,
        "can_reply": True,
        "can_gif_quick_reply": True,
        "can_reshare": True,
        "reel_type": "user_reel",
        "ad_expiry_timestamp_in_millis": None,
        "is_cta_sticker_available": None,
        "should_treat_link_sticker_as_cta": None,
        "pool_refresh_ttl_in_sec": None,
        "can_react_with_avatar": False,
        "prefetch_count": 0,
        "expiring_at": latest + DAY if latest else 0,
        "user": user,
        "items": items,
        "is_nux": False,
        "has_besties_media": False,
        "media_count": len(items),
        "media_ids": [int(item["pk"]) for item in items],
        "has_fan_club_media": False,
        "is_cacheable": True,
        "disabled_reply_types": ["story_remix_reply", "story_selfie_reply", "story_voice_reply"],
        "is_archived": False,
    }
    return reel


def success_body(request_id: str, reel: dict[str, Any], credits_charged: int) -> dict[str, Any]:
    return {
        "success": True,
        "requestId": request_id,
        "data": reel,
        "itemCount": len(reel["items"]),
        "creditsCharged": credits_charged,
    }


def failure_body(request_id: str, error: str) -> dict[str, Any]:
    return {"success": False, "error": error, "requestId": request_id}


def processing_body(request_id: str) -> dict[str, Any]:
    return {
        "success": True,
        "requestId": request_id,
        "status": "processing",
        "message": "Request accepted; results will be sent to the webhook",
    }
