"""Run every benchmark and print a results table.

    python -m benchmarks.run            # the full run (a few minutes)
    python -m benchmarks.run --quick    # a short smoke run (under a minute), smaller loads
    python -m benchmarks.run --only ingest,latency --json results.json --markdown table.md

Scenarios: ingest, latency, stalls, memory, startup (see each module's docstring). Every part
runs in its own process on 127.0.0.1 with OS-chosen ports; the machine is described first,
since every figure depends on it. Exit status 1 if a target was missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

if __package__ in (None, ""):  # `python benchmarks/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import ingest, latency, memory, stalls, startup
from benchmarks.common import Steal, machine
from benchmarks.report import Row, markdown, table

SCENARIOS: dict[str, Callable[[bool], Awaitable[list[Row]]]] = {
    "ingest": ingest.run,
    "latency": latency.run,
    "stalls": stalls.run,
    "memory": memory.run,
    "startup": startup.run,
}


def describe(info: dict[str, object]) -> str:
    return (f"{info['nproc']} CPUs ({info['cpu']}), {info['ram_gib']} GiB RAM, "
            f"{info['implementation']} {info['python']}, {info['os']}, SQLite {info['sqlite']}, "
            f"aiohttp {info['aiohttp']}, load average {info['load_avg_1m']} at start")


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short smoke run, smaller loads")
    parser.add_argument("--only", default="", help="comma-separated scenarios: "
                        + ", ".join(SCENARIOS))
    parser.add_argument("--json", type=Path, help="also write every figure and detail here")
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown here")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()] or list(SCENARIOS)
    unknown = [name for name in chosen if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")

    info = machine()
    print(f"machine: {describe(info)}", flush=True)
    rows: list[Row] = []
    timings: dict[str, float] = {}
    stolen: dict[str, str] = {}
    for name in chosen:
        print(f"running {name}{' (quick)' if args.quick else ''}...", flush=True)
        began = time.perf_counter()
        steal = Steal()
        steal.start()
        rows += await SCENARIOS[name](args.quick)
        timings[name] = round(time.perf_counter() - began, 1)
        share = steal.share()
        stolen[name] = "n/a" if share is None else f"{share:.1%}"
    print()
    print(table(rows))
    print(f"\n(scenario seconds: {timings})")
    print(f"(CPU time the hypervisor gave other guests, per scenario: {stolen})")
    if args.json:
        args.json.write_text(json.dumps({
            "machine": info, "quick": args.quick, "seconds": timings, "steal": stolen,
            "rows": [{"figure": r.figure, "value": r.value, "target": r.target,
                      "result": r.verdict, "command": r.command, "details": r.details}
                     for r in rows],
        }, indent=2))
    if args.markdown:
        args.markdown.write_text(f"Machine: {describe(info)}\n\n{markdown(rows)}\n\n"
                                 f"CPU time the hypervisor gave other guests: {stolen}\n")
    return 1 if any(r.ok is False for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
