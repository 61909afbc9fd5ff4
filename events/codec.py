"""Encoding of events to stored JSON and back, the envelope of the contract, and upcasting."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec

from events.base import Event
from events.device import DEVICE_EVENTS
from events.execution import EXECUTION_EVENTS
from events.task import TASK_EVENTS

EVENT_TYPES: dict[str, type[Event]] = {
    cls.__struct_config__.tag: cls  # type: ignore[misc]
    for cls in (*TASK_EVENTS, *EXECUTION_EVENTS, *DEVICE_EVENTS)
}

# (event type, stored schema version) -> function turning that shape into the next version's.
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
UPCASTERS: dict[tuple[str, int], Upcaster] = {}

_encoder = msgspec.json.Encoder()
_decoders = {name: msgspec.json.Decoder(cls) for name, cls in EVENT_TYPES.items()}


class UnknownEventType(Exception):
    """The log holds a type this code does not know: an older binary reading a newer log."""


class Undecodable(Event, frozen=True, kw_only=True, tag="Undecodable"):
    """A stored event this code cannot read (a newer type, a shape it cannot upcast).

    Never appended: readers of the log get it in place of the event, so that one such row
    is set aside as a dead letter instead of failing every read of the log after it.
    """

    event_type: str
    error: str
    data: str


class RecordedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event as it stands in the log, with its place there."""

    id: str
    stream_id: str
    version: int
    position: int
    tx_id: int
    category: str
    recorded_at: datetime
    event: Event
    metadata: dict[str, Any] = {}

    @property
    def type(self) -> str:
        return self.event.type


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """The contract's wire form of an event (NATS, `deployx events`, the events API)."""

    id: str
    type: str
    stream_id: str
    version: int
    position: int
    recorded_at: datetime
    data: msgspec.Raw
    metadata: dict[str, Any]


def encode_data(event: Event) -> bytes:
    return _encoder.encode(event)


def decode_or_undecodable(event_type: str, data: str, schema_version: int = 1) -> Event:
    """decode_data, or an Undecodable that says why not."""
    try:
        return decode_data(event_type, data, schema_version)
    except (UnknownEventType, msgspec.DecodeError, KeyError, ValueError, TypeError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
        return Undecodable(event_type=event_type, error=reason, data=data)


def decode_data(event_type: str, data: bytes | str, schema_version: int = 1) -> Event:
    decoder = _decoders.get(event_type)
    if decoder is None:
        raise UnknownEventType(event_type)
    cls = EVENT_TYPES[event_type]
    if schema_version == cls.schema_version:
        return decoder.decode(data)
    shape: dict[str, Any] = msgspec.json.decode(data)
    for version in range(schema_version, cls.schema_version):
        shape = UPCASTERS[(event_type, version)](shape)
    return msgspec.convert(shape, cls)


def to_envelope(recorded: RecordedEvent) -> Envelope:
    return Envelope(
        id=recorded.id,
        type=recorded.type,
        stream_id=recorded.stream_id,
        version=recorded.version,
        position=recorded.position,
        recorded_at=recorded.recorded_at,
        data=msgspec.Raw(encode_data(recorded.event)),
        metadata=recorded.metadata,
    )


def encode_envelope(recorded: RecordedEvent) -> bytes:
    return _encoder.encode(to_envelope(recorded))
