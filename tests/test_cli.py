"""The command line as a user runs it: subprocesses, real stdin/stdout, exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from bot.emulator import Emulator
from tests.conftest import API_KEY


def env(tmp_path: Path, **extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("TELEGRAM_", "DISCORD_", "PUBLIC_URL", "DEFAULT_API_KEY",
                                  "DATABASE_PATH", "SECRET_KEY"))}
    clean.update({"NO_PROXY": "127.0.0.1,localhost", "DATABASE_PATH": str(tmp_path / "db.sqlite3")})
    clean.update(extra)
    return clean


async def run_cli(*args: str, cwd: Path, env: dict[str, str], stdin: bytes = b"",
                  timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", *args, cwd=cwd, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_demo_piped(tmp_path: Path) -> None:
    code, out, err = await run_cli(
        "demo", cwd=tmp_path, env=env(tmp_path),
        stdin=b"/stories natgeo\n/stories privateuser\n/stories nobody_here\n/usage\n")
    assert code == 0, err
    assert "Fetching the stories of @natgeo…" in out
    assert out.count("saved to ") == 5
    assert "photo" in out and "video" in out
    assert "@natgeo: 5 stories." in out
    assert "That Instagram account is private" in out
    assert "No Instagram account has that username." in out
    assert "Today: 3 requests, 1 credits" in out
    assert "Traceback" not in err
    # the files the demo saved are real media
    saved = [line.split("saved to ")[1].split(" (")[0] for line in out.splitlines()
             if "saved to " in line]
    heads = {Path(p).suffix: Path(p).read_bytes()[:12] for p in saved}
    assert heads[".jpg"][:2] == b"\xff\xd8"
    assert heads[".mp4"][4:8] == b"ftyp"


async def test_run_without_adapters_says_what_to_set(tmp_path: Path) -> None:
    code, out, err = await run_cli("run", cwd=tmp_path, env=env(tmp_path))
    assert code == 2
    assert "TELEGRAM_BOT_TOKEN" in err and "DISCORD_BOT_TOKEN" in err
    assert "Traceback" not in err


async def test_bad_setting_is_one_clear_line(tmp_path: Path) -> None:
    for name, value in (("PUBLIC_URL", "not a url"), ("REQUEST_TIMEOUT", "-5"),
                        ("CALLBACK_PORT", "99999"), ("BOT_OWNER_IDS", "12345")):
        code, out, err = await run_cli("run", cwd=tmp_path, env=env(tmp_path, **{name: value}))
        assert code == 2, name
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and name in lines[0], err
        assert "Traceback" not in err


async def test_fetch_prints_a_table(tmp_path: Path, emulator: Emulator) -> None:
    settings_env = env(tmp_path, ETERNALSOCIAL_API_URL=emulator.base_url)
    code, out, err = await run_cli("fetch", "@NatGeo", "--api-key", API_KEY, "--sync",
                                   cwd=tmp_path, env=settings_env)
    assert code == 0, err
    assert "@natgeo (National Geographic): 5 stories, 1 credits charged" in out
    assert len([line for line in out.splitlines() if " photo " in line or " video " in line]) == 5
    code, out, err = await run_cli("fetch", "natgeo", "--api-key", "sk_live_bogus_key_1",
                                   cwd=tmp_path, env=settings_env)
    assert code == 1
    assert "rejected" in err and "sk_live_bogus_key_1" not in err + out


async def test_fetch_webhook_mode(tmp_path: Path, emulator: Emulator) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings_env = env(tmp_path, ETERNALSOCIAL_API_URL=emulator.base_url,
                       PUBLIC_URL=f"http://127.0.0.1:{port}", CALLBACK_PORT=str(port),
                       DEFAULT_API_KEY=API_KEY)
    code, out, err = await run_cli("fetch", "natgeo", "--json", cwd=tmp_path, env=settings_env)
    assert code == 0, err
    assert len(json.loads(out)["items"]) == 5
    assert emulator.requests[-1].mode == "webhook"


async def test_usage_command(tmp_path: Path) -> None:
    # produce some usage with the demo on a persistent database, then report it
    code, out, err = await run_cli("usage", cwd=tmp_path, env=env(tmp_path))
    assert code == 1 and "no database" in err
    from bot.app import App
    from tests.conftest import make_settings

    emulator = Emulator()
    await emulator.start()
    try:
        settings = make_settings(tmp_path, emulator, database_path=tmp_path / "db.sqlite3",
                                 default_api_key="demo-key")
        from tests.conftest import origin
        from tests.fakes.recording_adapter import RecordingAdapter

        chat = RecordingAdapter("telegram")
        app = App(settings, adapters=[lambda *_: chat], public_url="auto")
        await app.start()
        await app.service.request_stories(origin("-100", platform="telegram"), "natgeo")
        await app.wait_idle(timeout=10)
        await app.stop()
    finally:
        await emulator.stop()
    code, out, err = await run_cli("usage", cwd=tmp_path,
                                   env=env(tmp_path, SECRET_KEY="test-secret-key-for-fernet"))
    assert code == 0, err
    assert "telegram:-100" in out
    code, out, err = await run_cli("usage", "--chat", "telegram:-100", "--json", cwd=tmp_path,
                                   env=env(tmp_path, SECRET_KEY="test-secret-key-for-fernet"))
    report = json.loads(out)
    assert report[0]["chat"] == "telegram:-100"
    assert report[0]["total"]["credits"] == 1 and report[0]["total"]["requests"] == 1
