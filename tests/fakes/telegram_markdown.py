"""A validator of Telegram's MarkdownV2, as strict as the Bot API about escaping.

The fake Bot API server uses it to refuse what Telegram refuses ("can't parse entities"), so a
test catches a badly escaped text before a real chat does. It checks syntax only: which
characters must be escaped where, and that every entity is closed. Rules, from the Bot API docs:

- anywhere, `\\` followed by a character of code 1..126 escapes it;
- inside `code` and ```pre```, only `` ` `` and `\\` need escaping;
- inside the `(...)` of an inline link, only `)` and `\\` need escaping;
- everywhere else ``_*[]()~`>#+-=|{}.!`` must be escaped, unless they open or close an entity
  (`*bold*`, `_italic_`, `__underline__`, `~strike~`, `||spoiler||`, `[text](url)`, `>quote`
  at the start of a line, `**>expandable quote`).
"""

from __future__ import annotations

RESERVED = frozenset("_*[]()~`>#+-=|{}.!")

_NAMES = {
    "*": "Bold",
    "_": "Italic",
    "__": "Underline",
    "~": "Strikethrough",
    "||": "Spoiler",
    "`": "Code",
    "```": "Pre",
    "[": "TextUrl",
    "(": "TextUrl",
}


class MarkdownError(ValueError):
    """The text is not valid MarkdownV2; the message is Telegram's wording."""


def _reserved(char: str) -> MarkdownError:
    return MarkdownError(
        f"Character '{char}' is reserved and must be escaped with the preceding '\\'"
    )


def check_markdown_v2(text: str) -> None:
    """Raise `MarkdownError` (with Telegram's description) unless `text` parses."""
    stack: list[tuple[str, int]] = []  # (opening token, byte offset where it opened)
    offsets = _byte_offsets(text)
    i, n = 0, len(text)
    line_start = True

    def toggle(token: str) -> None:
        open_tokens = [tok for tok, _ in stack]
        if token in open_tokens:
            if stack[-1][0] != token:  # closes across another entity: not properly nested
                tok, at = stack[-1]
                raise MarkdownError(f"Can't find end of {_NAMES[tok]} entity at byte offset {at}")
            stack.pop()
        else:
            stack.append((token, offsets[i]))

    while i < n:
        char = text[i]
        top = stack[-1][0] if stack else None
        if char == "\\":
            if i + 1 >= n or not 1 <= ord(text[i + 1]) <= 126:
                raise _reserved("\\")
            i += 2
            line_start = False
            continue
        if top in ("`", "```"):
            if top == "```" and text.startswith("```", i):
                stack.pop()
                i += 3
            elif top == "`" and char == "`":
                stack.pop()
                i += 1
            else:
                i += 1
            continue
        if top == "(":
            if char == ")":
                stack.pop()
            i += 1
            continue
        if char == "\n":
            line_start = True
            i += 1
            continue
        was_line_start, line_start = line_start, False
        if was_line_start and text.startswith("**>", i):
            i += 3
        elif char == ">" and was_line_start:
            i += 1
        elif char == "`":
            token = "```" if text.startswith("```", i) else "`"
            stack.append((token, offsets[i]))
            i += len(token)
        elif char == "_":
            token = "__" if text.startswith("__", i) else "_"
            toggle(token)
            i += len(token)
        elif char in "*~":
            toggle(char)
            i += 1
        elif char == "|":
            if not text.startswith("||", i):
                raise _reserved("|")
            toggle("||")
            i += 2
        elif char == "[":
            stack.append(("[", offsets[i]))
            i += 1
        elif char == "]":
            if top != "[":
                raise _reserved("]")
            if not text.startswith("(", i + 1):
                raise _reserved("]")
            stack[-1] = ("(", stack[-1][1])
            i += 2
        elif char in RESERVED:
            raise _reserved(char)
        else:
            i += 1
    if stack:
        token, at = stack[-1]
        raise MarkdownError(f"Can't find end of {_NAMES[token]} entity at byte offset {at}")


def escape_markdown_v2(text: str) -> str:
    """Escape every reserved character (and the backslash) for use outside entities."""
    return "".join("\\" + c if c in RESERVED or c == "\\" else c for c in text)


def _byte_offsets(text: str) -> list[int]:
    offsets, total = [], 0
    for char in text:
        offsets.append(total)
        total += len(char.encode("utf-8"))
    offsets.append(total)
    return offsets
