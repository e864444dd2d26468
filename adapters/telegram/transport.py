"""`AiohttpRequest`: python-telegram-bot's HTTP transport on aiohttp's client.

python-telegram-bot talks to the Bot API through a `BaseRequest`; it ships one on httpx, and
documents the class as the place to plug another client in. Under load, httpx's connection
pool (httpcore on anyio) cost more CPU than everything else the bot does: each call re-scans
every pooled connection and asks each socket for its peer (measured in the benchmarks' stall
scenario: 60 % of the bot's CPU in httpx, 27 % in the pool's bookkeeping alone). aiohttp,
already the bot's web server, keeps its pool in plain Python structures.

What python-telegram-bot expects of a transport, kept here as in its httpx one: files go as
`multipart/form-data` with the other parameters as form fields holding JSON-encoded values
(an open file is streamed in chunks, not read into memory), a timeout raises `TimedOut`, any other
transport failure `NetworkError` (here `NotSent` when no connection was made, `MaybeSent`
otherwise), and the answer is `(status, body)` whatever the status
(python-telegram-bot turns Telegram's errors into exceptions itself). Proxies come from
HTTPS_PROXY / NO_PROXY, as with httpx. A call without files is sent as a JSON body, which the
Bot API accepts alike: form-encoding an album's parameters (a few KB of URLs, every character
of them percent-encoded) was 40 % of aiohttp's CPU for the call.
"""

from __future__ import annotations

import contextlib
import io
import os
from typing import IO, Any

import aiohttp
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData
from yarl import URL

from bot import fastjson
from bot.proxies import EnvProxies

_JSON = {"Content-Type": "application/json"}


def _json_body(parameters: dict[str, Any]) -> bytes | None:
    """The parameters as typed JSON (nested objects as objects), or None when there are none."""
    return fastjson.dumps(parameters) if parameters else None


class NotSent(NetworkError):
    """No connection could be made (refused, unreachable, none free in time): Telegram never
    saw the request, so sending it again cannot post anything twice."""


class MaybeSent(NetworkError):
    """The connection failed while the request was sent or answered: Telegram may have
    acted on it."""


def _given(value: ODVInput[float], default: float | None) -> float | None:
    return default if isinstance(value, DefaultValue) else value


def _own_copy(content: bytes | IO[bytes], stack: contextlib.ExitStack) -> bytes | IO[bytes]:
    """What aiohttp may consume and close: aiohttp closes a file it has sent, but the caller
    may send the same open file again (a retry), so a real file goes as a second handle on a
    duplicated descriptor (it shares the position the caller set)."""
    if isinstance(content, bytes):
        return content
    try:
        descriptor = content.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return content.read()  # an in-memory stream: already in memory
    return stack.enter_context(open(os.dup(descriptor), "rb"))


class AiohttpRequest(BaseRequest):
    """A pool of at most `connection_pool_size` keep-alive connections to the Bot API.

    Timeouts as python-telegram-bot defines them: `connect_timeout` to open a connection,
    `pool_timeout` to wait for a free one, `read_timeout` between two reads of the answer, and
    `write_timeout` (`media_write_timeout` for uploads) to send the request; aiohttp has no
    write timeout of its own, so sending and answering together are bounded by write + read.
    """

    __slots__ = ("_connect", "_limit", "_media_write", "_pool", "_proxies", "_read", "_session",
                 "_write")

    def __init__(self, connection_pool_size: int = 32, *, read_timeout: float | None = 5.0,
                 write_timeout: float | None = 5.0, connect_timeout: float | None = 5.0,
                 pool_timeout: float | None = 1.0,
                 media_write_timeout: float | None = 20.0) -> None:
        if connection_pool_size < 1:
            raise ValueError("connection_pool_size must be at least 1")
        self._limit = connection_pool_size
        self._read = read_timeout
        self._write = write_timeout
        self._connect = connect_timeout
        self._pool = pool_timeout
        self._media_write = media_write_timeout
        self._session: aiohttp.ClientSession | None = None
        self._proxies = EnvProxies()

    @property
    def read_timeout(self) -> float | None:
        return self._read

    @property
    def is_closed(self) -> bool:
        """No connection is open or can be (before `initialize`, after `shutdown`)."""
        return self._session is None or self._session.closed

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit, limit_per_host=self._limit),
                headers={"User-Agent": self.USER_AGENT},
                # Telegram's answers are read whole; its errors are JSON with any status.
                raise_for_status=False)

    async def shutdown(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def do_request(self, url: str, method: str, request_data: RequestData | None = None,
                         read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
                         write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
                         connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
                         pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
                         ) -> tuple[int, bytes]:
        session = self._session
        if session is None or session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        files = request_data.multipart_data if request_data is not None else {}
        data: aiohttp.FormData | bytes | None = None
        if request_data is not None and not files:
            data = _json_body(request_data.parameters)
        read = _given(read_timeout, self._read)
        write = _given(write_timeout, self._media_write if files else self._write)
        connect = _given(connect_timeout, self._connect)
        pool = _given(pool_timeout, self._pool)
        timeout = aiohttp.ClientTimeout(
            total=None if read is None or write is None else read + write,
            connect=None if connect is None or pool is None else connect + pool,
            sock_connect=connect, sock_read=read)
        with contextlib.ExitStack() as stack:
            if files:
                assert request_data is not None
                data = aiohttp.FormData()
                for name, value in request_data.json_parameters.items():
                    data.add_field(name, value)
                for name, (filename, content, mimetype) in files.items():
                    data.add_field(name, _own_copy(content, stack), filename=filename,
                                   content_type=mimetype)
            return await self._send(session, method, url, data, timeout)

    async def _send(self, session: aiohttp.ClientSession, method: str, url: str,
                    data: aiohttp.FormData | bytes | None,
                    timeout: aiohttp.ClientTimeout) -> tuple[int, bytes]:
        proxy, proxy_auth = self._proxies.for_url(url)
        headers = _JSON if isinstance(data, bytes) else None
        try:
            async with session.request(method, url, data=data, headers=headers,
                                       timeout=timeout, proxy=proxy,
                                       proxy_auth=proxy_auth) as response:
                return response.status, await response.read()
        except aiohttp.ConnectionTimeoutError:  # no connection free or made in time
            raise NotSent("timed out waiting for a connection to the Bot API") from None
        except TimeoutError as exc:  # aiohttp's read and total timeouts are TimeoutErrors
            raise TimedOut from exc
        except (aiohttp.ClientError, OSError) as exc:
            # The URL's path holds the bot token: no error text may carry it.
            text = str(exc).replace(url, "<Bot API URL>").replace(URL(url).path, "<path>")
            failure = NotSent if isinstance(exc, aiohttp.ClientConnectorError) else MaybeSent
            raise failure(f"aiohttp.{type(exc).__name__}: {text}") from None
