"""Benchmark processes and the tiny line protocol the runner drives them with.

The runner starts each part of a scenario (the bot, the fakes, a bare server) as its own
`python -m benchmarks.<module>` process, so that no part steals another's event loop or
pollutes its memory figures. It sends one JSON command per line on the child's stdin
(`{"cmd": "start", "args": {...}}`) and reads one JSON answer per line from its stdout,
prefixed with `@@ ` so that a stray print cannot be mistaken for an answer. The child's
stderr (its logs) goes to a file, shown when something fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "@@ "

Handler = Callable[..., Awaitable[Any]]


class ChildError(RuntimeError):
    pass


def child_env() -> dict[str, str]:
    """The environment of every benchmark process: the project importable, no proxies."""
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Child:
    """One benchmark process, seen from the runner."""

    def __init__(self, module: str, *, name: str | None = None) -> None:
        self.module = module
        self.name = name or module.rsplit(".", 1)[-1]
        self.pid: int | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in close()
            prefix=f"bench-{self.name}-", suffix=".log", delete=False)

    async def start(self) -> Child:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", self.module,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=self._log, env=child_env(), cwd=str(ROOT),
            limit=64 * 1024 * 1024,
        )
        self.pid = self._proc.pid
        await self._answer(60.0)  # the child says hello once its imports are done
        return self

    async def call(self, cmd: str, *, timeout: float = 300.0, **args: Any) -> Any:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write((json.dumps({"cmd": cmd, "args": args}) + "\n").encode())
        await self._proc.stdin.drain()
        return await self._answer(timeout, cmd)

    async def _answer(self, timeout: float, cmd: str = "hello") -> Any:
        assert self._proc is not None and self._proc.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    line = await self._proc.stdout.readline()
                    if not line:
                        raise ChildError(f"{self.name} exited during {cmd!r}\n{self.log_tail()}")
                    text = line.decode()
                    if text.startswith(PREFIX):
                        break
        except TimeoutError:
            raise ChildError(f"{self.name}: no answer to {cmd!r} within {timeout} s\n"
                             f"{self.log_tail()}") from None
        answer = json.loads(text[len(PREFIX):])
        if not answer.get("ok"):
            raise ChildError(f"{self.name}: {cmd!r} failed:\n{answer.get('error')}")
        return answer.get("result")

    def log_tail(self, lines: int = 30) -> str:
        self._log.flush()
        text = Path(self._log.name).read_text(errors="replace").splitlines()
        return "\n".join(f"  [{self.name}] {line}" for line in text[-lines:])

    async def close(self, timeout: float = 20.0) -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ChildError, ConnectionError, BrokenPipeError):
                await self.call("stop", timeout=timeout)
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        self._log.close()
        with contextlib.suppress(OSError):
            os.unlink(self._log.name)

    async def __aenter__(self) -> Child:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# --- the child's side --------------------------------------------------------------------------


def _reply(payload: dict[str, Any]) -> None:
    sys.stdout.write(PREFIX + json.dumps(payload) + "\n")
    sys.stdout.flush()


async def serve(handlers: dict[str, Handler], *, on_stop: Handler | None = None) -> None:
    """Answer the runner's commands until `stop` (or end of stdin), one at a time."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    _reply({"ok": True, "result": {"pid": os.getpid()}})
    stopped = False
    try:
        while line := await reader.readline():
            message = json.loads(line)
            cmd, args = message["cmd"], message.get("args") or {}
            if cmd == "stop":
                stopped = True
                if on_stop is not None:
                    await on_stop()
                _reply({"ok": True, "result": None})
                return
            try:
                result = await handlers[cmd](**args)
            except Exception:
                _reply({"ok": False, "error": traceback.format_exc()})
            else:
                _reply({"ok": True, "result": result})
    finally:
        if not stopped and on_stop is not None:  # the runner went away: clean up anyway
            await on_stop()
