"""The Discord adapter (discord.py): slash commands in, stories and texts out.

    adapter.py    DiscordAdapter — lifecycle and the core's `ChatAdapter` methods
    commands.py   the slash commands and what each asks of the core
    sending.py    posting texts and stories (follow-ups, then the channel; files or links)
    routing.py    where answers go (`Origin.reply`), chats and admin rights of an interaction
    endpoints.py  DISCORD_API_URL / DISCORD_GATEWAY_URL for discord.py
"""

from adapters.discord.adapter import DiscordAdapter

__all__ = ["DiscordAdapter"]
