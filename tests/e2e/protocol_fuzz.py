"""Agent protocol messages for fuzzing, generated from the msgspec types themselves.

Each is a well-formed message (every field drawn within its type's constraints, as
msgspec.inspect describes them), one with a field replaced by any JSON value or an edge value
(huge numbers, NUL, long or deep texts), one with a field left out, or raw bytes no JSON
decoder should accept. Generation is derandomized: every run sends the same messages.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC
from typing import Any

import msgspec
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from msgspec import inspect

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
EDGE = st.sampled_from(
    [
        2**31,
        -(2**31) - 1,
        2**40,
        2**63,
        -(2**64),
        1e300,
        -1e300,
        5e-324,
        0,
        -1,
        "",
        "\x00",
        "a\x00b",
        "x" * 200_000,
        "é" * 50_000,
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "2026-01-01T00:00:00",
        "not a time",
        "../../etc/passwd",
        "deployx.agents.other.results",
        "*",
        ">",
        [],
        {},
        {"k" * 100: "v"},
        {f"label{i}": "v" for i in range(200)},
    ]
)
RAW = st.sampled_from(
    [
        b"",
        b"null",
        b"[]",
        b"{",
        b'{"job_id": ',
        b"\xff\xfe\xfd",
        b'{"job_id": "\xed\xa0\x80"}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 20_000 + b"1" + b"}" * 20_000,
        b"\x00" * 100,
    ]
)


def values(info: inspect.Type) -> st.SearchStrategy[Any]:
    """JSON values that a field of this msgspec type accepts."""
    match info:
        case inspect.StrType(pattern=str(pattern), max_length=limit):
            return st.from_regex(pattern, fullmatch=True).filter(lambda t: len(t) <= (limit or 99))
        case inspect.StrType(max_length=limit):
            return st.text(max_size=min(limit or 300, 300))
        case inspect.IntType(ge=low, le=high):
            return st.integers(low, high)
        case inspect.FloatType(ge=low, le=high):
            return st.floats(low, high, allow_nan=False, allow_infinity=False)
        case inspect.DateTimeType():
            return st.datetimes(timezones=st.just(UTC)).map(lambda t: t.isoformat())
        case inspect.LiteralType(values=choices):
            return st.sampled_from(choices)
        case inspect.UnionType(types=types):
            return st.one_of([values(member) for member in types])
        case inspect.NoneType():
            return st.none()
        case inspect.DictType(key_type=keys, value_type=items, max_length=limit):
            return st.dictionaries(values(keys), values(items), max_size=min(limit or 8, 8))
        case _:
            return JSON


def documents(struct: type[msgspec.Struct]) -> st.SearchStrategy[dict[str, Any]]:
    """Well-formed messages of struct: required fields always, optional ones sometimes."""
    info = inspect.type_info(struct)
    assert isinstance(info, inspect.StructType)
    return st.fixed_dictionaries(
        {f.encode_name: values(f.type) for f in info.fields if f.required},
        optional={f.encode_name: values(f.type) for f in info.fields if not f.required},
    )


def messages(struct: type[msgspec.Struct], fixed: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """Messages shaped by struct, with fixed's fields set (e.g. the job id it answers)."""
    valid = documents(struct).map(lambda doc: {**doc, **fixed})

    def one_field_changed(doc: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
        keys = st.sampled_from([*doc, "unexpected_field"])
        return st.tuples(keys, JSON | EDGE).map(lambda kv: {**doc, kv[0]: kv[1]})

    def one_field_dropped(doc: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
        return st.sampled_from(list(doc)).map(
            lambda key: {k: v for k, v in doc.items() if k != key}
        )

    shaped = valid | valid.flatmap(one_field_changed) | valid.flatmap(one_field_dropped)
    return shaped.map(lambda doc: json.dumps(doc).encode()) | RAW


def examples(strategy: st.SearchStrategy[bytes], count: int) -> list[bytes]:
    """count examples of strategy, the same ones on every run."""
    found: list[bytes] = []

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    @given(strategy)
    def collect(value: bytes) -> None:
        found.append(value)

    run: Callable[[], None] = collect
    run()
    return found
