"""What docs/upgrades.md promises of old and new replicas side by side during a rollout."""

from __future__ import annotations

from datetime import UTC, datetime

from events.codec import RecordedEvent, Undecodable, decode_or_undecodable, encode_data
from events.device import DeviceRegistered
from services.engine.relay import unpublishable_reason

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def test_a_field_added_by_a_newer_version_is_ignored_by_an_older_one() -> None:
    newer = encode_data(DeviceRegistered(device_id="d", registered_at=NOW))[:-1]
    newer += b',"firmware":"2.1"}'
    decoded = decode_or_undecodable("DeviceRegistered", newer.decode())
    assert decoded == DeviceRegistered(device_id="d", registered_at=NOW)


def test_an_event_from_before_a_field_existed_gets_its_default() -> None:
    older = '{"device_id": "d", "registered_at": "2026-11-01T12:00:00Z"}'
    decoded = decode_or_undecodable("DeviceRegistered", older)
    assert isinstance(decoded, DeviceRegistered) and decoded.labels == {}


def test_a_type_only_a_newer_version_knows_is_set_aside_not_a_failure() -> None:
    decoded = decode_or_undecodable("DeviceRenamed", '{"device_id": "d"}')
    assert isinstance(decoded, Undecodable)
    recorded = RecordedEvent(
        id="e",
        stream_id="device-d",
        version=2,
        position=7,
        tx_id=1,
        category="devices",
        recorded_at=NOW,
        event=decoded,
        metadata={},
    )
    assert "cannot be read by this version" in (unpublishable_reason(recorded) or "")
