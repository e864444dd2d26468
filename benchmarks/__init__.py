"""Benchmarks of stories-bot: speed and memory, measured side by side on one machine.

`python -m benchmarks.run` runs every scenario and prints a results table (`--quick` for a
short smoke run). Each scenario runs the project's real code (`bot.app.App`, the Telegram
adapter, the SQLite store) against the stories API emulator and the fake Telegram Bot API,
all on 127.0.0.1 with OS-chosen ports. The bot, the fakes and the load generator run in
separate processes (`benchmarks.child`), so that a client never steals the loop it measures.
Results and the machine they came from are kept in `docs/performance.md`.
"""
