"""What an agent announces it can run: found on the device, and checked at the boundary."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, get_args, get_type_hints

import msgspec
import pytest

from services.agent.capabilities import arch_of, os_family, package_managers, shells_on
from services.agent.command import SHELLS
from services.agent.protocol import BareHeartbeat, Capabilities, Heartbeat, Shell
from services.domain.execution import offline_reason, time_span
from services.domain.kinds.command import CommandPayload
from services.infra.rejections import Rejections

NOW = datetime(2026, 11, 30, 22, 30, tzinfo=UTC)


def beat(**capabilities: Any) -> bytes:
    return msgspec.json.encode(
        {
            "device_id": "web-1",
            "hostname": "web-1",
            "os": "Linux 6.1",
            "agent_version": "0.1.0",
            "started_at": NOW.isoformat(),
            "sent_at": NOW.isoformat(),
            "interval_seconds": 5,
            "capabilities": capabilities,
        }
    )


def test_the_protocol_shells_are_the_command_kinds() -> None:
    command_shells = get_args(get_type_hints(CommandPayload)["shell"])
    assert set(get_args(Shell)) == set(command_shells) == set(SHELLS)


def test_a_heartbeat_carries_its_capabilities() -> None:
    decoded = msgspec.json.decode(
        beat(shells=["bash", "sh"], package_managers=["apt", "pip"], os="linux", arch="x86_64"),
        type=Heartbeat,
    )
    assert decoded.capabilities == Capabilities(
        shells=["bash", "sh"], package_managers=["apt", "pip"], os="linux", arch="x86_64"
    )


def test_an_older_agents_heartbeat_has_none() -> None:
    raw = msgspec.json.decode(beat())
    del raw["capabilities"]
    assert msgspec.json.decode(msgspec.json.encode(raw), type=Heartbeat).capabilities is None


@pytest.mark.parametrize(
    ("capabilities", "where"),
    [
        ({"shells": ["fish"]}, "$.capabilities.shells[0]"),
        ({"shells": ["bash"] * 17}, "$.capabilities.shells"),
        ({"shells": ["sh", "sh"]}, "shells lists an item twice"),
        ({"package_managers": ["Apt Get"]}, "$.capabilities.package_managers[0]"),
        ({"package_managers": ["x" * 33]}, "$.capabilities.package_managers[0]"),
        ({"package_managers": [f"pm{n}" for n in range(17)]}, "$.capabilities.package_managers"),
        ({"os": "plan9"}, "$.capabilities.os"),
        ({"arch": "x86 64; rm -rf /"}, "$.capabilities.arch"),
        ({"arch": "a" * 17}, "$.capabilities.arch"),
        ({"shells": "bash"}, "$.capabilities.shells"),
        ({"gpu": "yes"}, "gpu"),
    ],
)
def test_bad_capabilities_are_refused_naming_where(
    capabilities: dict[str, Any], where: str
) -> None:
    with pytest.raises(msgspec.ValidationError, match=re.escape(where)):
        msgspec.json.decode(beat(**capabilities), type=Heartbeat)
    # The rest of the heartbeat still reads: the device stays present without them.
    bare = msgspec.json.decode(beat(**capabilities), type=BareHeartbeat)
    assert bare.device_id == "web-1"


@pytest.mark.parametrize(
    ("system", "family"),
    [("Linux", "linux"), ("Darwin", "darwin"), ("Windows", "windows"), ("SunOS", "other")],
)
def test_the_os_family_is_one_of_the_protocols_words(system: str, family: str) -> None:
    assert os_family(system) == family


@pytest.mark.parametrize(
    ("machine", "arch"),
    [("x86_64", "x86_64"), ("AMD64", "x86_64"), ("aarch64", "arm64"), ("", "unknown")],
)
def test_the_arch_has_one_spelling(machine: str, arch: str) -> None:
    assert arch_of(machine) == arch
    Capabilities(arch=arch_of(machine))  # and passes the protocol's pattern


def test_only_shells_on_the_path_are_announced() -> None:
    found = {"bash": "/bin/bash", "python3": "/usr/bin/python3", "sh": "/bin/sh"}
    assert shells_on(found.get) == ["bash", "sh", "python3"]


def test_package_managers_are_those_available_with_a_valid_name() -> None:
    def broken() -> bool:
        raise OSError("no rpm database")

    drivers = [
        ("pip", lambda: True),
        ("apt", lambda: True),
        ("dnf", lambda: False),
        ("yum", broken),
        ("Bad Name", lambda: True),
    ]
    assert package_managers(drivers) == ["apt", "pip"]


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0, "0 s"),
        (42.9, "42 s"),
        (180, "3 min"),
        (3599, "59 min"),
        (7200, "2 h"),
        (7500, "2 h 5 min"),
        (86400, "1 day"),
        (4 * 86400 + 5, "4 days"),
    ],
)
def test_a_time_span_is_in_words(seconds: float, words: str) -> None:
    assert time_span(seconds) == words


def test_an_unreachable_device_says_for_how_long_it_was_offline() -> None:
    reason = offline_reason(NOW - timedelta(minutes=3, seconds=10), NOW)
    assert reason == (
        "the device is offline: offline for 3 min (last heartbeat 2026-11-30 22:26:50 UTC)"
    )


class _Capture:
    def __init__(self) -> None:
        self.args: tuple[Any, ...] = ()

    async def execute(self, _sql: str, *args: Any) -> str:
        self.args = args
        return ""


async def test_a_refusal_is_stored_without_nul_or_lone_surrogates() -> None:
    """A reason can carry a device's own text; one NUL in it failed every registry flush."""
    rejections, db = Rejections(), _Capture()

    rejections.note("web-1", "heartbeat", "bad value 'ba\x00sh\ud800' at $.x", b"{}")
    await rejections.flush(db, NOW)  # type: ignore[arg-type]

    (reason,) = db.args[2]
    assert reason == "bad value 'ba\ufffdsh?' at $.x"
    reason.encode("utf-8")  # storable
