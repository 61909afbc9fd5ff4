"""A DeviceRegistered's id names the agent start it records: replicas of the registry, and
registries of an older release whose registrations are in the log, must all agree on it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from services.agent.protocol import Heartbeat
from services.engine.registry import registration_id

# The namespace every release of the registry has used.
REGISTRATIONS = uuid.UUID("5e0c7a52-61a4-4d0b-a0f4-6c2f3d8e9b17")


@pytest.mark.parametrize(
    "device, started_at",
    [
        ("sim-000001", datetime(2026, 12, 1, 5, 39, 7, 123456, tzinfo=UTC)),
        ("web-01:eu_west", datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=-5)))),
        ("X" * 200, datetime(1999, 12, 31, 23, 59, 59, 1, tzinfo=timezone(timedelta(hours=9)))),
    ],
)
def test_a_registration_id_is_the_uuid5_of_the_device_and_its_start(
    device: str, started_at: datetime
) -> None:
    beat = Heartbeat(
        device_id=device,
        hostname=device,
        os="linux",
        agent_version="1",
        started_at=started_at,
        sent_at=started_at,
        interval_seconds=5,
    )
    expected = uuid.uuid5(REGISTRATIONS, f"{device}/{started_at.isoformat()}")
    assert registration_id(beat) == str(expected)
