"""How long dropping old results takes on the event loop (`SqliteStore.prune`), with a long
history: not one of the issue's figures, so not part of `benchmarks.run`.

    python -m benchmarks.prune                   # 50,000 old requests, 1,000 recent
    python -m benchmarks.prune --old 5000 --batch 100

Builds a database with the store's schema and pragmas, in a temporary directory: `--old`
delivered requests that ended five days ago and `--recent` that ended now, each with a
4.7 KB stored result (what a compressed 23-story result weighs) and 23 delivery rows. Then
prunes as the sweeper does, `--batch` requests per store call, and prints the calls' median
and largest duration. Each call runs on the loop, so it is a step the loop cannot interleave.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # `python benchmarks/prune.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.service import PRUNE_BATCH, RESULTS_KEPT
from storage.crypto import KeyCipher
from storage.sqlite_store import SqliteStore

ITEMS = 23
RESULT_BYTES = 4700


async def measure(old: int, recent: int, batch: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-prune-") as tmp:
        path = Path(tmp) / "bot.sqlite3"
        store = SqliteStore(path, KeyCipher("bench"))
        await store.open()
        try:
            now = time.time()
            ended = now - 5 * 86400
            conn = store.db.conn
            conn.execute("BEGIN")
            conn.execute("INSERT INTO chats(id, platform, created_at, updated_at)"
                         " VALUES ('telegram:1', 'telegram', 0, 0)")
            ids = range(1, old + recent + 1)
            conn.executemany(
                "INSERT INTO requests(id, chat_id, user_id, username, state, created_at,"
                " updated_at, deadline_at, finished_at)"
                " VALUES (?, 'telegram:1', '5', 'natgeo', 'delivered', ?, ?, ?, ?)",
                [(i, ended, ended, ended, ended if i <= old else now) for i in ids])
            blob = os.urandom(RESULT_BYTES)  # compressed data does not compress again
            conn.executemany("INSERT INTO results(request_id, result) VALUES (?, ?)",
                             [(i, blob) for i in ids])
            conn.executemany(
                "INSERT INTO deliveries(request_id, item_id, state, updated_at)"
                " VALUES (?, ?, 'sent', 0)",
                [(i, f"{i}-{k:02d}") for i in ids for k in range(ITEMS)])
            conn.execute("COMMIT")
            size = path.stat().st_size
            before = datetime.now(UTC) - RESULTS_KEPT
            calls: list[float] = []
            pruned = 0
            while True:
                began = time.perf_counter()
                done = await store.prune(finished_before=before, batch=batch)
                calls.append(time.perf_counter() - began)
                pruned += done
                if done < batch:
                    break
            left = conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        finally:
            await store.close()
    return {"database_mb": size / 1e6, "pruned": pruned, "left": left, "calls": len(calls),
            "median_ms": statistics.median(calls) * 1000, "max_ms": max(calls) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=int, default=50_000)
    parser.add_argument("--recent", type=int, default=1_000)
    parser.add_argument("--batch", type=int, default=PRUNE_BATCH)
    args = parser.parse_args()
    figures = asyncio.run(measure(args.old, args.recent, args.batch))
    print(f"{figures['database_mb']:.0f} MB database: pruned {figures['pruned']:,} requests "
          f"({figures['left']:,} recent kept) in {figures['calls']:,} store calls of "
          f"{args.batch}, median {figures['median_ms']:.1f} ms, largest "
          f"{figures['max_ms']:.1f} ms")


if __name__ == "__main__":
    main()
