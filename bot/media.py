"""Streamed, size-capped downloads of story media, shared by every adapter.

Instagram URLs are signed: they are fetched exactly as received, query string untouched.
A download never holds more than `max_bytes` (plus one chunk) and stops as soon as the cap is
passed, so a 50 MB video relayed to a platform that takes 10 MB costs 10 MB at most.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

log = logging.getLogger(__name__)


class MediaError(Exception):
    """The media could not be fetched. The message carries no secret (URLs are not logged
    in full: their signature is a bearer credential of sorts)."""


class MediaTooLarge(MediaError):
    def __init__(self, limit: int, size: int | None = None) -> None:
        super().__init__(f"media larger than {limit} bytes")
        self.limit = limit
        self.size = size


class MediaUnavailable(MediaError):
    pass


def short_url(url: str) -> str:
    """The URL without its query string, for logs."""
    return url.split("?", 1)[0]


@dataclass(frozen=True, slots=True)
class Downloaded:
    """A downloaded file, in memory (`data`) or on disk (`path`)."""

    size: int
    content_type: str | None
    data: bytes | None = None
    path: Path | None = None

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path.read_bytes()


class MediaFetcher:
    """Downloads media with one shared `httpx.AsyncClient` (passed in by the composition root)."""

    def __init__(self, http: httpx.AsyncClient, *, chunk_size: int = 256 * 1024,
                 max_concurrent: int = 16) -> None:
        self._http = http
        self._chunk = chunk_size
        # Requests beyond this wait here, not in httpx's pool: httpcore re-matches every
        # queued request against every connection whenever one starts or ends, so 800 HEADs
        # queued behind 100 connections (100 deliveries planning at once) cost about a
        # minute of CPU on the event loop. A semaphore's queue costs nothing.
        self._gate = asyncio.Semaphore(max_concurrent)

    async def size(self, url: str) -> int | None:
        """The size the server announces (HEAD), or None when it does not say."""
        try:
            async with self._gate:
                response = await self._http.head(url, follow_redirects=True)
        except httpx.HTTPError:
            return None
        if response.status_code >= 400:
            return None
        length = response.headers.get("content-length")
        return int(length) if length and length.isdigit() else None

    async def download(self, url: str, *, max_bytes: int, to_dir: Path | None = None,
                       filename: str | None = None) -> Downloaded:
        """Fetch `url`, refusing more than `max_bytes`. With `to_dir`, stream to a file there
        (memory stays flat whatever the size); otherwise return the bytes."""
        try:
            async with self._gate, self._http.stream("GET", url,
                                                     follow_redirects=True) as response:
                if response.status_code >= 400:
                    raise MediaUnavailable(f"HTTP {response.status_code} for {short_url(url)}")
                announced = response.headers.get("content-length")
                if announced and announced.isdigit() and int(announced) > max_bytes:
                    raise MediaTooLarge(max_bytes, int(announced))
                content_type = response.headers.get("content-type")
                if to_dir is None:
                    return await self._to_memory(response, max_bytes, content_type)
                return await self._to_file(response, max_bytes, content_type, to_dir, filename)
        except httpx.HTTPError as exc:
            raise MediaUnavailable(f"{type(exc).__name__} for {short_url(url)}") from None

    async def _to_memory(self, response: httpx.Response, max_bytes: int,
                         content_type: str | None) -> Downloaded:
        buffer = bytearray()
        async for chunk in response.aiter_bytes(self._chunk):
            buffer += chunk
            if len(buffer) > max_bytes:
                raise MediaTooLarge(max_bytes)
        return Downloaded(size=len(buffer), content_type=content_type, data=bytes(buffer))

    async def _to_file(self, response: httpx.Response, max_bytes: int, content_type: str | None,
                       to_dir: Path, filename: str | None) -> Downloaded:
        path = await asyncio.to_thread(_create_file, to_dir, filename)
        size = 0
        try:
            handle = await asyncio.to_thread(path.open, "wb")
            with handle:
                async for chunk in response.aiter_bytes(self._chunk):
                    size += len(chunk)
                    if size > max_bytes:
                        raise MediaTooLarge(max_bytes)
                    await asyncio.to_thread(handle.write, chunk)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return Downloaded(size=size, content_type=content_type, path=path)


def _create_file(to_dir: Path, filename: str | None) -> Path:
    to_dir.mkdir(parents=True, exist_ok=True)
    if filename:
        return to_dir / filename
    fd, name = tempfile.mkstemp(dir=to_dir)
    os.close(fd)
    return Path(name)
