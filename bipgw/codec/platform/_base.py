# -*- test-case-name: tests.unit.codec.test_platform_messages -*-
"""What every platform channel message shares: JSON both ways, and C{open.timeouts}.

L{_Message} turns a message's attrs fields into a JSON object and back,
refusing unknown fields and naming the first wrong one; the message set
itself is L{bipgw.codec.platform._messages}.  Twisted-free, like the codec.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar, cast

import attrs

from bipgw.codec.platform._fields import (
    MAX_TIMEOUT,
    MessageError,
    json_field,
    read_number,
    read_object,
    seconds_up_to,
)

__all__ = ["Timeouts", "_Message", "read_timeouts"]


_M = TypeVar("_M", bound="_Message")


@attrs.frozen
class _Layout:
    """A message class's fields as JSON sees them, worked out once per class:
    every message in and out of the gateway used to ask attrs for them."""

    names: tuple[str, ...]
    readers: dict[str, tuple[Any, str]]  # field -> (reader, "type.field")
    required: tuple[str, ...]


_LAYOUTS: dict[type, _Layout] = {}


def _layout(cls: type) -> _Layout:
    layout = _LAYOUTS.get(cls)
    if layout is None:
        fields = attrs.fields(cast(Any, cls))
        type_name = cast(Any, cls).TYPE
        layout = _LAYOUTS[cls] = _Layout(
            names=tuple(a.name for a in fields),
            readers={
                a.name: (a.metadata["json"], f"{type_name}.{a.name}")
                for a in fields
                if "json" in a.metadata
            },
            required=tuple(a.name for a in fields if a.default is attrs.NOTHING),
        )
    return layout


class _Message:
    """JSON conversion shared by every message (its fields are attrs fields)."""

    TYPE: ClassVar[str]

    def to_json(self) -> dict[str, object]:
        """The message as a JSON object, C{type} first, absent fields left out."""
        out: dict[str, object] = {"type": self.TYPE}
        for name in _layout(type(self)).names:
            value = getattr(self, name)
            if value is not None:
                out[name] = _to_json(value)
        return out

    @classmethod
    def from_json(cls: type[_M], obj: Mapping[str, object]) -> _M:
        """Read a decoded JSON object (its C{type}, if present, must match).

        @raise MessageError: naming the first field that is missing,
            unknown, of the wrong JSON type or out of range.
        """
        layout = _layout(cls)
        readers = layout.readers
        values: dict[str, object] = {}
        for key, value in obj.items():
            if key == "type":
                if value != cls.TYPE:
                    raise MessageError(f"{value!r} is not {cls.TYPE!r}", field="type")
                continue
            reader = readers.get(key)
            if reader is None:
                raise MessageError("unknown field", field=f"{cls.TYPE}.{key}")
            if value is not None:
                values[key] = reader[0](value, reader[1])
        for name in layout.required:
            if name not in values:
                raise MessageError("missing", field=f"{cls.TYPE}.{name}")
        return cls(**values)


def _to_json(value: object) -> object:
    if isinstance(value, bytes):
        return value.hex().upper()
    if isinstance(value, tuple):
        return [_to_json(v) for v in value]
    if isinstance(value, Timeouts):
        return value.to_json()
    return value


@attrs.frozen(kw_only=True)
class Timeouts:
    """Limits a platform sets on one session (C{open.timeouts}), in seconds.

    The channel enforces them with the gateway's clock, on top of the
    gateway's own policy, so a platform with a tighter budget than the
    operator's defaults needs no timers of its own.

    @ivar ready: the card must connect within this, else the session is
        closed and C{failed} with reason C{ready-timeout}.
    @ivar command: each command must be answered within this, else it gets
        C{error} C{command-timeout} and the session is closed (the card's
        state after an unanswered script is unknown).
    """

    TYPE: ClassVar[str] = "open.timeouts"
    ready: float | None = json_field(
        f"seconds in (0, {MAX_TIMEOUT:g}]", seconds_up_to(MAX_TIMEOUT), optional=True
    )
    command: float | None = json_field(
        f"seconds in (0, {MAX_TIMEOUT:g}]", seconds_up_to(MAX_TIMEOUT), optional=True
    )

    def to_json(self) -> dict[str, object]:
        """The timeouts as a JSON object, absent ones left out."""
        return {
            k: v for k, v in (("ready", self.ready), ("command", self.command)) if v is not None
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, object], field: str = "open.timeouts") -> Timeouts:
        """Read C{{"ready": s, "command": s}}; either may be absent."""
        for key in obj:
            if key not in ("ready", "command"):
                raise MessageError("unknown field", field=f"{field}.{key}")
        return cls(**{k: read_number(v, f"{field}.{k}") for k, v in obj.items() if v is not None})


def read_timeouts(value: object, field: str) -> Timeouts:
    """The reader of C{open.timeouts}: a JSON object, as L{Timeouts}."""
    return Timeouts.from_json(read_object(value, field), field)
