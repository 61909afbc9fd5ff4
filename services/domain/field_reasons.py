"""msgspec's validation messages in a user's words: "must be at least 1 second", not
"Expected `int` >= 1"; "must be an octal mode like 0644", not the field's regex."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import msgspec.inspect as mi

from services.agent.protocol import DEVICE_ID_PATTERN

FILE_MODE_PATTERN = r"^0?[0-7]{3,4}$"
# Every pattern a request field is checked against, as what it asks for (a unit test checks
# that each Meta(pattern=...) of a request shape is here).
PATTERN_REASONS: dict[str, str] = {
    FILE_MODE_PATTERN: "must be an octal mode like 0644 or 755",
    DEVICE_ID_PATTERN: "must hold only letters, digits, _, : and - (like web-1)",
}
_TYPE_WORDS = {
    "int": "a whole number",
    "float": "a number",
    "str": "text",
    "bool": "true or false",
    "array": "a list",
    "object": "an object",
    "null": "null",
    "datetime": "a date and time",
}
_GOT_WORDS = {**_TYPE_WORDS, "int": "a number", "float": "a decimal number"}
_COMPARISONS = {">=": "at least", "<=": "at most", ">": "more than", "<": "less than"}
_UNITS = ((86400, "day"), (3600, "hour"), (60, "minute"))
_ISO_EXAMPLE = "2026-12-01T14:00:00+01:00"

_BOUND = re.compile(r"Expected `(int|float)` (>=|<=|>|<) (-?[0-9.]+)")
_LENGTH = re.compile(r"Expected `(str|array|object)` of length (>=|<=) ([0-9]+)")
_TYPE = re.compile(r"Expected `([^`]+)`, got `([^`]+)`")
_REGEX = re.compile(r"Expected `str` matching regex (.*)", re.DOTALL)  # the pattern's repr()
_ENUM = re.compile(r"Invalid enum value (.*)", re.DOTALL)


def human_reason(reason: str, field: str, choices: Sequence[object] = ()) -> str:
    """msgspec's `reason` (its message without " - at ...") for `field`, in words; a message
    this does not know comes back as it was, lowercased at its start."""
    if match := _BOUND.fullmatch(reason):
        _, comparison, number = match.groups()
        return f"must be {_COMPARISONS[comparison]} {_amount(number, field)}"
    if match := _LENGTH.fullmatch(reason):
        return _length(*match.groups())
    if match := _TYPE.fullmatch(reason):
        expected, got = match.groups()
        return f"must be {_types(expected)}, not {_GOT_WORDS.get(got, got)}"
    if match := _REGEX.fullmatch(reason):
        known = {repr(pattern): words for pattern, words in PATTERN_REASONS.items()}
        return known.get(match.group(1), "is not in the accepted form")
    if match := _ENUM.fullmatch(reason):
        if choices:
            listed = ", ".join(str(choice) for choice in choices)
            return f"must be one of {listed}, got {match.group(1)}"
        return f"{match.group(1)} is not one of the accepted values"
    if reason == "Invalid RFC3339 encoded datetime":
        return f"must be an ISO 8601 date and time like {_ISO_EXAMPLE}"
    if reason == "Number out of range":
        return "is a number out of range"
    return reason[:1].lower() + reason[1:]


def _amount(number: str, field: str) -> str:
    """ "1 second", "86,400 seconds (1 day)", "0", "2,147,483,647"."""
    value = float(number)
    shown = _count(int(value)) if value.is_integer() else number
    if not field.endswith("_seconds"):
        return shown
    words = f"{shown} second{'' if value == 1 else 's'}"
    for size, unit in _UNITS:
        if value >= size and value % size == 0:
            count = int(value // size)
            return f"{words} ({count} {unit}{'' if count == 1 else 's'})"
    return words


def _length(kind: str, comparison: str, number: str) -> str:
    count = int(number)
    if comparison == ">=" and count == 1:
        return "must not be empty"
    unit = {"str": "character", "array": "item", "object": "entry"}[kind]
    units = {"entry": "entries"}.get(unit, f"{unit}s") if count != 1 else unit
    return f"must hold {_COMPARISONS[comparison]} {_count(count)} {units}"


def _count(number: int) -> str:
    """Thousands separated from five digits on: "4096", "10,000"."""
    return f"{number:,}" if abs(number) >= 10_000 else str(number)


def _types(expected: str) -> str:
    words = [_TYPE_WORDS.get(name.strip(), name.strip()) for name in expected.split("|")]
    return " or ".join(words)


def choices_at(shape: object, path: Sequence[str]) -> tuple[object, ...]:
    """The allowed values of the Literal field at `path` (dotted parts) of msgspec type
    `shape`, or () when that is not a Literal."""
    kinds: list[Any] = [mi.type_info(shape)]
    for part in path:
        found: list[Any] = []
        for kind in _unwrapped(kinds):
            if isinstance(kind, mi.StructType):
                found += [f.type for f in kind.fields if f.encode_name == part]
            elif isinstance(kind, mi.ListType | mi.VarTupleType | mi.SetType | mi.FrozenSetType):
                found += [kind.item_type] if part.isdigit() else []
            elif isinstance(kind, mi.DictType):
                found.append(kind.value_type)
        kinds = found
    values = [kind.values for kind in _unwrapped(kinds) if isinstance(kind, mi.LiteralType)]
    return tuple(value for group in values for value in group)


def _unwrapped(kinds: list[Any]) -> list[Any]:
    out: list[Any] = []
    pending = list(kinds)
    while pending:
        kind = pending.pop(0)
        if isinstance(kind, mi.Metadata):
            pending.append(kind.type)
        elif isinstance(kind, mi.UnionType):
            pending.extend(kind.types)
        else:
            out.append(kind)
    return out
