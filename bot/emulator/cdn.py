"""The emulator's stand-in for Instagram's media CDN: real files behind signed, expiring URLs.

Story payloads point at `GET /media/{name}?…&oh=00_<signature>&oe=<hex expiry>&…`, shaped like
Instagram's URLs. The signature covers the path and every other query parameter, so a client
that edits, reorders or trims a query string gets 403 — as it would from Instagram — and
expired URLs answer 403 too. Unknown media is 404.

The shipped files (`media/`, made by `media/generate.sh`) are small real JPEGs and H.264 MP4s.
Large files for upload-limit tests are produced on the fly, never held in memory: a shipped file
padded to an exact size — an MP4 with a trailing `free` box, a JPEG with comment segments after
its SOI marker — both still decodable. Their name says the size: `video-reef-360x640~12582912.mp4`.
Range requests are honoured (single range), like a real CDN.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Literal
from urllib.parse import parse_qsl, quote

from aiohttp import web

MEDIA_PREFIX = "/media/"
CHUNK = 64 * 1024
_ZEROS = bytes(CHUNK)
_MAX_JPEG_SEGMENT = 2 + 65535  # marker + the largest length field (which counts itself)

MediaKindName = Literal["photo", "video"]


@dataclass(frozen=True, slots=True)
class Asset:
    """One shipped file and what a payload says about it."""

    name: str
    kind: MediaKindName
    width: int
    height: int
    content_type: str


@dataclass(frozen=True, slots=True)
class PhotoFamily:
    """One picture in several sizes, largest first."""

    key: str
    sizes: tuple[Asset, ...]


@dataclass(frozen=True, slots=True)
class VideoFamily:
    """One clip in several sizes (largest first), with still previews of the same sizes."""

    key: str
    sizes: tuple[Asset, ...]
    previews: tuple[Asset, ...]
    duration: float
    has_audio: bool


def _photo(name: str, width: int, height: int) -> Asset:
    return Asset(name, "photo", width, height, "image/jpeg")


def _video(name: str, width: int, height: int) -> Asset:
    return Asset(name, "video", width, height, "video/mp4")


def _photo_family(key: str) -> PhotoFamily:
    return PhotoFamily(key, (_photo(f"photo-{key}-540x960.jpg", 540, 960),
                             _photo(f"photo-{key}-270x480.jpg", 270, 480)))


def _video_family(key: str, duration: float, has_audio: bool) -> VideoFamily:
    return VideoFamily(
        key,
        (_video(f"video-{key}-360x640.mp4", 360, 640),
         _video(f"video-{key}-180x320.mp4", 180, 320)),
        (_photo(f"preview-{key}-360x640.jpg", 360, 640),
         _photo(f"preview-{key}-180x320.jpg", 180, 320)),
        duration,
        has_audio,
    )


PHOTOS: dict[str, PhotoFamily] = {key: _photo_family(key) for key in ("aurora", "desert", "ocean")}
VIDEOS: dict[str, VideoFamily] = {
    "reef": _video_family("reef", 3.0, True),
    "lava": _video_family("lava", 2.5, False),
}
ASSETS: dict[str, Asset] = {
    asset.name: asset
    for asset in (
        *(asset for photo in PHOTOS.values() for asset in photo.sizes),
        *(asset for video in VIDEOS.values() for asset in (*video.sizes, *video.previews)),
    )
}

_PADDED = re.compile(r"^(?P<stem>[\w.-]+)~(?P<size>[1-9][0-9]{0,12})(?P<ext>\.(?:mp4|jpg))$")


class AssetStore:
    """Reads shipped files once (they total a few hundred KB) and builds padded ones lazily."""

    def __init__(self, max_padded_bytes: int) -> None:
        self.max_padded_bytes = max_padded_bytes
        self._cache: dict[str, bytes] = {}

    def data(self, name: str) -> bytes:
        if name not in self._cache:
            self._cache[name] = (resources.files(__package__) / "media" / name).read_bytes()
        return self._cache[name]

    def padded_name(self, name: str, size: int) -> str:
        """The name under which `name` is served padded to exactly `size` bytes."""
        self._padded_parts(name, size)  # raises ValueError when impossible
        stem, dot, ext = name.rpartition(".")
        return f"{stem}~{size}{dot}{ext}"

    def open(self, name: str) -> tuple[Asset, VirtualFile] | None:
        """The asset behind a URL name and its bytes, or None for unknown media."""
        if name in ASSETS:
            data = self.data(name)
            return ASSETS[name], VirtualFile((data,))
        match = _PADDED.match(name)
        if not match:
            return None
        base = match["stem"] + match["ext"]
        if base not in ASSETS:
            return None
        try:
            return ASSETS[base], VirtualFile(self._padded_parts(base, int(match["size"])))
        except ValueError:
            return None

    def _padded_parts(self, name: str, size: int) -> tuple[bytes | int, ...]:
        asset = ASSETS[name]
        data = self.data(name)
        padding = size - len(data)
        if size > self.max_padded_bytes:
            raise ValueError(f"{size} bytes is over the emulator's cap of {self.max_padded_bytes}")
        if asset.content_type == "video/mp4":
            return _mp4_padded(data, padding)
        return _jpeg_padded(data, padding)


def _mp4_padded(data: bytes, padding: int) -> tuple[bytes | int, ...]:
    """The MP4 followed by one top-level `free` box (ignored by every player) of `padding`."""
    if padding == 0:
        return (data,)
    if padding < 8:
        raise ValueError("an MP4 can only grow by 8 bytes or more")
    if padding < 2**32:
        return data, struct.pack(">I4s", padding, b"free"), padding - 8
    return data, struct.pack(">I4sQ", 1, b"free", padding), padding - 16  # 64-bit box size


def _jpeg_padded(data: bytes, padding: int) -> tuple[bytes | int, ...]:
    """The JPEG with comment (COM) segments of zeros right after SOI: still a valid JPEG."""
    if padding == 0:
        return (data,)
    if padding < 4:
        raise ValueError("a JPEG can only grow by 4 bytes or more")
    count = -(-padding // _MAX_JPEG_SEGMENT)
    sizes = [_MAX_JPEG_SEGMENT] * (count - 1) + [padding - _MAX_JPEG_SEGMENT * (count - 1)]
    if sizes[-1] < 4:  # borrow from the previous full segment
        sizes[-2] -= 4 - sizes[-1]
        sizes[-1] = 4
    parts: list[bytes | int] = [data[:2]]
    for seg in sizes:
        parts += [b"\xff\xfe" + struct.pack(">H", seg - 2), seg - 4]
    parts.append(data[2:])
    return tuple(parts)


@dataclass(frozen=True, slots=True)
class VirtualFile:
    """File content as parts: `bytes`, or an `int` standing for that many zero bytes."""

    parts: tuple[bytes | int, ...]

    @property
    def size(self) -> int:
        return sum(part if isinstance(part, int) else len(part) for part in self.parts)

    def chunks(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Bytes [start, end) in chunks of at most CHUNK."""
        end = self.size if end is None else end
        offset = 0
        for part in self.parts:
            length = part if isinstance(part, int) else len(part)
            lo, hi = max(start, offset), min(end, offset + length)
            if lo < hi:
                if isinstance(part, int):
                    for pos in range(lo, hi, CHUNK):
                        yield _ZEROS[: min(CHUNK, hi - pos)]
                else:
                    for pos in range(lo, hi, CHUNK):
                        yield part[pos - offset: min(pos + CHUNK, hi) - offset]
            offset += length
            if offset >= end:
                break


class UrlSigner:
    """Builds and checks Instagram-shaped signed media URLs.

    The signature (`oh`) covers the path and every other query parameter, decoded, in order:
    a changed, added, dropped or reordered parameter is refused, while equivalent
    percent-encodings (`%3A` or `:`, as HTTP libraries such as yarl normalise them) are not.
    """

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _signature(self, path: str, params: list[tuple[str, str]]) -> str:
        message = json.dumps([path, params], separators=(",", ":")).encode()
        mac = hmac.new(self._secret, message, hashlib.sha256).digest()
        return "00_" + base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def url(self, base_url: str, name: str, expires: int, host: str) -> str:
        """An absolute URL for `name`, valid until `expires` (Unix seconds)."""
        path = MEDIA_PREFIX + name
        token = hashlib.sha256(f"{name}:{expires}".encode()).digest()
        ext = "jpg" if name.endswith(".jpg") else "mp4"
        before = [
            ("stp", f"dst-{ext}_e35_tt6"),
            ("efg", base64.b64encode(b'{"vencode_tag":"emulator.C3"}').decode()),
            ("_nc_ht", host),
            ("_nc_cat", str(token[0] % 110 + 1)),
            ("_nc_ohc", base64.urlsafe_b64encode(token[16:27]).decode().rstrip("=")),
            ("edm", "ANmP7GQBAAAA"),
            ("ccb", "7-5"),
            ("ig_cache_key", base64.b64encode(token[:16]).decode() + ".3-ccb7-5"),
        ]
        after = [("oe", f"{expires:08X}"), ("_nc_sid", token[27:30].hex())]
        signed = [*before, ("oh", self._signature(path, before + after)), *after]
        query = "&".join(f"{key}={quote(value, safe='')}" for key, value in signed)
        return f"{base_url}{quote(path)}?{query}"

    def check(self, path: str, raw_query: str) -> tuple[bool, int | None]:
        """(signature valid, expiry) for a request's decoded path and raw query string."""
        params = parse_qsl(raw_query, keep_blank_values=True)
        signatures = [value for key, value in params if key == "oh"]
        if len(signatures) != 1:
            return False, None
        rest = [(key, value) for key, value in params if key != "oh"]
        valid = hmac.compare_digest(signatures[0], self._signature(path, rest))
        expiries = [value for key, value in rest if key == "oe"]
        try:
            expiry = int(expiries[0], 16) if len(expiries) == 1 else None
        except ValueError:
            expiry = None
        return valid and expiry is not None, expiry


def parse_range(header: str, size: int) -> tuple[int, int] | Literal[False] | None:
    """[start, end) of a single `bytes=` range; None to send everything; False: unsatisfiable."""
    match = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if not match or (not match[1] and not match[2]):
        return None  # multiple or malformed ranges: answer with the whole file
    if not match[1]:
        length = int(match[2])
        return (max(0, size - length), size) if length else False
    start = int(match[1])
    end = min(size, int(match[2]) + 1) if match[2] else size
    if start >= size or end <= start:
        return False
    return start, end


async def send_file(request: web.Request, asset: Asset, content: VirtualFile) -> web.StreamResponse:
    """Answer GET/HEAD with `content`, honouring a single Range, streaming in chunks."""
    size = content.size
    headers = {
        "Content-Type": asset.content_type,
        "Accept-Ranges": "bytes",
        "Cache-Control": "max-age=1209600, no-transform",
        "Access-Control-Allow-Origin": "*",
        "Last-Modified": "Wed, 08 Apr 2026 14:31:15 GMT",
    }
    start, end, status = 0, size, 200
    if "Range" in request.headers:
        wanted = parse_range(request.headers["Range"], size)
        if wanted is False:
            return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
        if wanted is not None:
            start, end = wanted
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = end - start
    await response.prepare(request)
    if request.method != "HEAD":
        for chunk in content.chunks(start, end):
            await response.write(chunk)
    await response.write_eof()
    return response
