"""The base Struct every event derives from, and the categories events are published under."""

from __future__ import annotations

from typing import ClassVar

import msgspec

TASK_TYPES: tuple[str, ...] = ("command", "software_deployment", "file_deployment")
DEVICES_CATEGORY = "devices"


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """An immutable fact. Subclasses set `tag=` to the contract's event name."""

    # Bumped by a subclass when its shape changes; older shapes are upcast on read (codec.py).
    schema_version: ClassVar[int] = 1

    @property
    def type(self) -> str:
        tag = type(self).__struct_config__.tag
        assert isinstance(tag, str)
        return tag
