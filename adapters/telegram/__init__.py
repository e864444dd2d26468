"""The Telegram adapter: python-telegram-bot translated to and from the core.

`TelegramAdapter(settings, service, media)` is what the composition root builds when
`TELEGRAM_BOT_TOKEN` is set. The package's modules, each small:

    adapter.py    the Application's life (long polling in the caller's loop) and `ChatAdapter`
    commands.py   the chat commands and the command menus (`setMyCommands`)
    admin.py      who may change a chat's key or caps
    routing.py    Origin <-> where a Telegram message goes (chat, forum topic, reply)
    sending.py    stories as albums: by URL, else uploaded, else as links
    ordering.py   updates of one chat handled in order, chats handled concurrently
    client.py     python-telegram-bot's ExtBot, paged polling and answers left undecoded
    transport.py  python-telegram-bot's HTTP transport, on aiohttp
    redaction.py  the bot token and /setkey arguments kept out of library logs
"""

from __future__ import annotations

from adapters.telegram.adapter import TelegramAdapter

__all__ = ["TelegramAdapter"]
