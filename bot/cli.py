"""The `stories-bot` command line: run, demo, emulator, fetch, usage.

Each subcommand reads the settings once and hands them to the composition root.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from bot.logs import setup_logging
from bot.settings import Settings, SettingsError, load_settings

log = logging.getLogger("stories-bot")


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        print(f"stories-bot: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


# run ----------------------------------------------------------------------------------------


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT/SIGTERM. Installed before start-up: /healthz answers 200 before
    `App.start()` returns, and a SIGTERM sent then must still shut down gracefully."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    return stop


async def _run(settings: Settings) -> int:
    from bot.app import App, settle_heap

    app = App(settings)
    stop = _stop_on_signals()
    await app.start()
    settle_heap()
    try:
        await stop.wait()
        log.info("shutting down: finishing deliveries in progress")
    finally:
        await app.stop(timeout=15)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    settings = _settings()
    setup_logging(settings.log_level)
    if not settings.telegram_bot_token and not settings.discord_bot_token:
        print("stories-bot: no chat platform is configured. Set TELEGRAM_BOT_TOKEN and/or "
              "DISCORD_BOT_TOKEN (in the environment or .env; see .env.example), "
              "or try `stories-bot demo`.", file=sys.stderr)
        return 2
    return asyncio.run(_run(settings))


# demo ---------------------------------------------------------------------------------------


async def _demo(args: argparse.Namespace) -> int:
    from adapters.console import ConsoleAdapter
    from bot.app import App
    from bot.emulator import Emulator, EmulatorConfig

    workdir = Path(tempfile.mkdtemp(prefix="stories-bot-demo-"))
    emulator = Emulator(EmulatorConfig(keys={"demo-key": 1000}, webhook_delay=0.3))
    await emulator.start()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        eternalsocial_api_url=emulator.base_url,
        default_api_key="demo-key",
        database_path=workdir / "demo.sqlite3",
        secret_key="demo-secret-not-for-production",  # noqa: S106 - a throwaway database
        callback_host="127.0.0.1",
        callback_port=0,
        telegram_bot_token=None,
        discord_bot_token=None,
        request_timeout=args.timeout,
        user_cooldown=0,
        log_level=args.log_level,
    )
    downloads = None if args.no_download else workdir / "media"
    console: ConsoleAdapter | None = None

    def make_console(settings: Settings, service: Any, media: Any) -> ConsoleAdapter:
        nonlocal console
        console = ConsoleAdapter(settings, service, media, download_dir=downloads,
                                 wait_each=not sys.stdin.isatty())
        return console

    app = App(settings, adapters=[make_console], public_url="auto")
    await app.start()
    interactive = sys.stdin.isatty()
    out = sys.stdout
    out.write(
        "stories-bot demo — a local emulator of the stories API, the callback server and the "
        f"core, on a temporary database in {workdir}.\n"
        "Try: /stories natgeo · /stories manystories · /stories privateuser · /stories nobody_here"
        " · /usage · /help" + (" · /quit\n" if interactive else "\n"))
    out.flush()
    assert console is not None
    try:
        await console.finished.wait()
    finally:
        await app.stop()
        await emulator.stop()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    return asyncio.run(_demo(args))


# emulator -----------------------------------------------------------------------------------


def cmd_emulator(args: argparse.Namespace) -> int:
    from bot.emulator import EmulatorConfig, serve

    setup_logging("INFO")
    keys: dict[str, int] = {}
    for spec in args.key or []:
        key, _, credits = spec.partition(":")
        keys[key] = int(credits) if credits.isdigit() else 1000
    config = EmulatorConfig(keys=keys) if keys else EmulatorConfig()
    if args.webhook_delay is not None:
        config.webhook_delay = args.webhook_delay
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port, config, public_url=args.public_url))
    return 0


# fetch --------------------------------------------------------------------------------------


async def _fetch(args: argparse.Namespace, settings: Settings) -> int:
    from aiohttp import web

    from bot.api_client import Accepted, StoriesApiClient
    from bot.api_payloads import result_or_error
    from bot.errors import StoriesBotError
    from bot.models import StoriesResult
    from bot.usernames import normalise_username

    try:
        username = normalise_username(args.username)
    except StoriesBotError as exc:
        print(exc.user_message, file=sys.stderr)
        return 2
    key = args.api_key or (settings.default_api_key.get_secret_value()
                           if settings.default_api_key else None)
    if not key:
        print("stories-bot: give --api-key or set DEFAULT_API_KEY", file=sys.stderr)
        return 2
    sync = args.sync or settings.callback_base is None
    async with StoriesApiClient(settings.api_url, timeout=settings.api_timeout,
                                sync_timeout=max(settings.request_timeout, 30.0)) as api:
        try:
            if sync:
                answer = await api.request_stories(key, username)
            else:
                answer = await _fetch_via_webhook(api, key, username, settings, web)
        except StoriesBotError as exc:
            print(f"{type(exc).__name__}: {exc.user_message}", file=sys.stderr)
            return 1
        except TimeoutError:
            print(f"no callback within {settings.request_timeout:g} s", file=sys.stderr)
            return 1
    if isinstance(answer, Accepted):
        print("accepted but no result", file=sys.stderr)
        return 1
    if not isinstance(answer, StoriesResult):
        try:
            answer = result_or_error(answer, username=username)
        except StoriesBotError as exc:
            print(f"{type(exc).__name__}: {exc.user_message}", file=sys.stderr)
            return 1
    _print_result(answer, as_json=args.json)
    return 0


async def _fetch_via_webhook(api: Any, key: str, username: str, settings: Settings,
                             web: Any) -> Any:
    import secrets

    token = secrets.token_urlsafe(32)
    received: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def handler(request: Any) -> Any:
        if request.match_info["token"] != token:
            return web.Response(status=404)
        body = await request.read()
        if not received.done():
            with contextlib.suppress(ValueError):
                received.set_result(json.loads(body))
        return web.Response(status=200)

    app = web.Application(client_max_size=settings.callback_max_body)
    app.router.add_post("/callbacks/{token}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.callback_host, settings.callback_port).start()
    try:
        webhook = f"{settings.callback_base}/callbacks/{token}"
        answer = await api.request_stories(key, username, webhook)
        if not hasattr(answer, "api_request_id") or hasattr(answer, "items"):
            return answer
        print(f"accepted (request {answer.api_request_id}); waiting for the callback…",
              file=sys.stderr)
        return await asyncio.wait_for(received, settings.request_timeout)
    finally:
        await runner.cleanup()


def _print_result(result: Any, *, as_json: bool) -> None:
    if as_json:
        from bot import codec

        print(codec.dumps(result))
        return
    profile = result.profile
    print(f"@{profile.username} ({profile.full_name or '-'}): {len(result.items)} stories, "
          f"{result.credits_charged} credits charged"
          + (f", {result.skipped_items} items skipped" if result.skipped_items else ""))
    if result.items:
        print(f"{'#':>3}  {'kind':<5}  {'size':>9}  {'taken (UTC)':<16}  {'duration':>8}  url")
    for index, item in enumerate(result.items, 1):
        size = f"{item.width}x{item.height}" if item.width and item.height else "?"
        duration = f"{item.duration:.1f}s" if item.duration else ""
        print(f"{index:>3}  {item.kind.value:<5}  {size:>9}  {item.taken_at:%Y-%m-%d %H:%M}  "
              f"{duration:>8}  {item.url}")


def cmd_fetch(args: argparse.Namespace) -> int:
    settings = _settings()
    setup_logging("WARNING")
    return asyncio.run(_fetch(args, settings))


# usage --------------------------------------------------------------------------------------


async def _usage(args: argparse.Namespace, settings: Settings) -> int:
    from bot.app import open_store
    from bot.models import ChatRef
    from bot.service import utc_now

    if not settings.database_path.exists():
        print(f"stories-bot: no database at {settings.database_path}", file=sys.stderr)
        return 1
    store = open_store(settings)
    await store.open()
    try:
        if args.chat:
            try:
                chats = [ChatRef.parse(args.chat)]
            except ValueError as exc:
                print(f"stories-bot: {exc}", file=sys.stderr)
                return 2
        else:
            chats = await store.all_chats()
        now = utc_now()
        reports = [await store.usage(chat, now=now) for chat in chats]
    finally:
        await store.close()
    if args.json:
        print(json.dumps([_usage_dict(u) for u in reports], indent=2))
        return 0
    header = (f"{'chat':<28} {'key':<18} {'req today':>9} {'cr today':>8} {'cr month':>8} "
              f"{'cr total':>8} {'saved':>6} {'daily cap':>9} {'monthly cap':>11}")
    print(header)
    for u in reports:
        print(f"{u.chat!s:<28} {(u.key_hint or '-'):<18} {u.today.requests:>9} "
              f"{u.today.credits:>8} {u.month.credits:>8} {u.total.credits:>8} "
              f"{u.total.saved:>6} {_cap(u.daily_cap):>9} {_cap(u.monthly_cap):>11}")
    if not reports:
        print("(no chats yet)")
    return 0


def _cap(value: int | None) -> str:
    return "-" if value is None else str(value)


def _usage_dict(u: Any) -> dict[str, Any]:
    def period(p: Any) -> dict[str, int]:
        return {"requests": p.requests, "credits": p.credits, "shared": p.shared,
                "saved": p.saved}

    return {"chat": str(u.chat), "key": u.key_hint, "today": period(u.today),
            "month": period(u.month), "total": period(u.total), "daily_cap": u.daily_cap,
            "monthly_cap": u.monthly_cap}


def cmd_usage(args: argparse.Namespace) -> int:
    settings = _settings()
    setup_logging("WARNING")
    return asyncio.run(_usage(args, settings))


# entry point --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stories-bot",
        description="Post Instagram stories into Telegram and Discord chats "
        "(eternalsocial.dev API).")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="start the callback server and every configured adapter")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="everything local, no accounts: chat on stdin/stdout")
    p.add_argument("--no-download", action="store_true", help="print URLs, do not save media")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a callback")
    p.add_argument("--log-level", default="WARNING")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("emulator", help="run the local stand-in of the stories API")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3222)
    p.add_argument("--key", action="append", metavar="KEY[:CREDITS]",
                   help="accept this API key (repeatable); default: demo-key")
    p.add_argument("--webhook-delay", type=float, default=None,
                   help="seconds before a result is POSTed to the webhook")
    p.add_argument("--public-url", default=None,
                   help="root used in media URLs (when listening on 0.0.0.0)")
    p.set_defaults(func=cmd_emulator)

    p = sub.add_parser("fetch", help="fetch one account's stories once and print a table")
    p.add_argument("username")
    p.add_argument("--api-key", help="API key (default: DEFAULT_API_KEY)")
    p.add_argument("--sync", action="store_true", help="ask for the data directly, no webhook")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("usage", help="requests and credits per chat")
    p.add_argument("--chat", help="one chat, e.g. telegram:-1001234")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_usage)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
