"""Splitting a SQL script into its statements, so that each can run (and lock) on its own."""

from __future__ import annotations

import re

# What may hide a semicolon: a comment, a quoted string or identifier, a dollar-quoted body.
_TOKEN = re.compile(r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\$(\w*)\$|;", re.S)


def statements(script: str) -> list[str]:
    """The script's statements in order, without their semicolons; comments-only parts dropped.

    Knows comments, '...' and "..." quoting, and $$ / $tag$ bodies (functions, DO blocks).
    """
    found: list[str] = []
    start = position = 0
    while (match := _TOKEN.search(script, position)) is not None:
        position = match.end()
        if match.group(1) is not None:  # a dollar quote: skip to its closing tag
            closing = script.find(match.group(0), position)
            if closing < 0:
                raise ValueError(f"unterminated {match.group(0)} body at offset {match.start()}")
            position = closing + len(match.group(0))
        elif match.group(0) == ";":
            found.append(script[start : match.start()])
            start = position
    found.append(script[start:])
    return [text.strip() for text in found if _has_code(text)]


def _has_code(text: str) -> bool:
    return bool(re.sub(r"--[^\n]*|/\*.*?\*/|\s", "", text, flags=re.S))
