"""Result rows and the table they are printed as."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Row:
    """One figure: what was measured, the value, the target and whether it was met
    (`ok` None: no target, for information)."""

    figure: str
    value: str
    target: str = ""
    ok: bool | None = None
    command: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return "" if self.ok is None else ("pass" if self.ok else "FAIL")


def mb(value: float) -> str:
    return f"{value / (1024 * 1024):.1f} MiB"


def ms(value: float) -> str:
    return f"{value * 1000:.1f} ms"


def table(rows: list[Row]) -> str:
    """A plain-text table for the terminal."""
    headers = ("figure", "value", "target", "result")
    cells = [(r.figure, r.value, r.target, r.verdict) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)), line]
    out += ["  ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)) for cell in cells]
    return "\n".join(out)


def markdown(rows: list[Row]) -> str:
    out = ["| figure | value | target | result | reproduce |", "|---|---|---|---|---|"]
    for r in rows:
        command = f"`{r.command}`" if r.command else ""
        out.append(f"| {r.figure} | {r.value} | {r.target} | {r.verdict} | {command} |")
    return "\n".join(out)
