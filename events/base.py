"""The base Struct every event derives from, and the category of device and group events.

Task and execution events are published under their task's kind (services/domain/kinds).
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

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
