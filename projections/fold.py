"""A projection folded in memory: the log in, each read table's final rows out.

`deployx replay` folds the whole log this way and writes each table once with COPY, instead
of applying it batch by batch with the live projector's statements (services/engine/
bulk_rebuild.py). A fold holds the same rules as its projection's statements, written as
plain Python on rows; tests/integration/test_folds.py applies a log with every event type
both ways and requires the same tables, so the two cannot drift apart unnoticed.

A fold must leave exactly what applying every event in log order leaves, re-applies and
all: an UPDATE of a row that is not there changes nothing, an INSERT ... ON CONFLICT DO
NOTHING keeps the first row, a version guard skips an event of an older version.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, Protocol

from events.base import Event
from events.codec import RecordedEvent


@dataclass(frozen=True)
class Rows:
    """One table's final rows, in the order of `columns` (every column of the table)."""

    table: str
    columns: tuple[str, ...]
    records: Iterable[tuple[Any, ...]]


class Fold(Protocol):
    """One projection's tables, built in memory from the log in order."""

    # The event types (the log's `type` column) that change this projection's tables.
    handled: frozenset[str]

    def evolve(self, recorded: RecordedEvent) -> None: ...

    def rows(self) -> list[Rows]: ...


def type_names(kinds: tuple[type[Event], ...]) -> frozenset[str]:
    """The names the log's `type` column gives these event classes."""
    return frozenset(str(kind.__struct_config__.tag) for kind in kinds)


def hour_of(moment: datetime, zone: tzinfo) -> datetime:
    """date_trunc('hour', moment) as PostgreSQL works it out in the session's time zone."""
    local = moment.astimezone(zone)
    return local.replace(minute=0, second=0, microsecond=0)
