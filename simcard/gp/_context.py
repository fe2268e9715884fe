# -*- test-case-name: tests.unit.simcard.test_processor -*-
"""The ISD's working state, shared by the command handlers.

L{GpProcessor} dispatches each command to a handler function in a small
module (GET STATUS, GET DATA, INSTALL/LOAD/DELETE, PUT KEY, STORE DATA);
they all read and change one L{IsdState}: the persistent registry and
profile, and the transient state GP keeps between commands (a LOAD in
progress, GET STATUS paging, the personalization target).  Transient state
is what a card reset or a new SELECT forgets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

import attrs

from bipgw.codec.apdu import ResponseApdu
from simcard.gp._errors import GpError
from simcard.gp._registry import Registry
from simcard.model import CardProfile

if TYPE_CHECKING:
    from simcard.gp._applet import Applet, AppletFactory, SecureChannel

__all__ = [
    "OK",
    "OK_00",
    "GpConfig",
    "IsdState",
    "LoadSession",
    "StatusPaging",
    "StoreSession",
    "lv_fields",
]

SW_OK: Final = 0x9000
OK: Final = ResponseApdu(b"", SW_OK)
OK_00: Final = ResponseApdu(b"\x00", SW_OK)
"""INSTALL, LOAD (last block) and DELETE answer one C{00} byte: no receipt."""


def _positive(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or value <= 0:
        raise ValueError(f"{attribute.name} must be a positive int, got {value!r}")


@attrs.frozen
class GpConfig:
    """Card-wide settings of the GlobalPlatform layer (one instance per fleet).

    @ivar max_response: the most response data one GET STATUS answer
        carries; longer listings are paged with C{6310}.  240 bytes, so a
        realistic registry needs several pages, as on real cards.
    @ivar nvm_total: non-volatile memory available to load files, bytes.
    @ivar ram_free: the free RAM figure GET DATA C{FF21} reports.
    @ivar max_applications: the most applications and SSDs (C{6A84} past it).
    @ivar max_load_files: the most load files (C{6A84} past it).
    @ivar max_load_file_size: the largest load file data block (C{6A84}).
    @ivar max_sd_data: the most bytes STORE DATA may keep in the ISD.
    @ivar require_secure_channel: refuse card-management commands with
        C{6982} unless an SCP03 session is active.  Off by default: in the
        fleet, commands reach the ISD through SCP80 or SCP81 (RAM), whose
        transport security stands for the secure channel.
    @ivar scp03_i: the SCP03 "i" parameter the card advertises (card data
        C{66}, capabilities C{67}).
    """

    max_response: int = attrs.field(default=240, validator=_positive)
    nvm_total: int = attrs.field(default=256 * 1024, validator=_positive)
    ram_free: int = attrs.field(default=2402, validator=_positive)
    max_applications: int = attrs.field(default=32, validator=_positive)
    max_load_files: int = attrs.field(default=32, validator=_positive)
    max_load_file_size: int = attrs.field(default=64 * 1024, validator=_positive)
    max_sd_data: int = attrs.field(default=2048, validator=_positive)
    require_secure_channel: bool = False
    scp03_i: int = 0x70


@attrs.define
class LoadSession:
    """An INSTALL [for load] waiting for its LOAD blocks."""

    elf_aid: bytes
    sd_aid: bytes
    hash: bytes
    next_block: int = 0
    buffer: bytearray = attrs.Factory(bytearray)


@attrs.define
class StatusPaging:
    """The rest of a GET STATUS answer, for the next "get next occurrence"."""

    p1: int
    tlv: bool
    remaining: list[bytes]


@attrs.define
class StoreSession:
    """A STORE DATA sequence in progress (block numbers, buffered data)."""

    next_block: int = 0
    buffer: bytearray = attrs.Factory(bytearray)


class IsdState:
    """Everything the ISD's handlers work on, persistent and transient.

    @ivar registry: the card's registry (persistent).
    @ivar config: the fleet-wide settings.
    @ivar applets: the live applet per instance AID.
    @ivar factories: applet factories per executable module AID.
    @ivar secure_channel: the SCP03 hook, or C{None}.
    @ivar selected: the AID of the selected application (the ISD's AID
        when the ISD is selected).
    """

    __slots__ = (
        "_profile",
        "applets",
        "config",
        "factories",
        "load",
        "paging",
        "perso",
        "registry",
        "secure_channel",
        "selected",
        "store",
    )

    def __init__(
        self,
        profile: CardProfile,
        registry: Registry,
        config: GpConfig,
        factories: Mapping[bytes, AppletFactory],
        secure_channel: SecureChannel | None,
    ) -> None:
        self._profile = profile
        self.registry = registry
        self.config = config
        self.factories = factories
        self.secure_channel = secure_channel
        self.applets: dict[bytes, Applet] = {}
        self.selected = registry.isd.aid
        self.load: LoadSession | None = None
        self.paging: StatusPaging | None = None
        self.perso: bytes | None = None
        self.store: StoreSession | None = None

    @property
    def profile(self) -> CardProfile:
        """The card's current profile."""
        return self._profile

    def replace_profile(self, profile: CardProfile) -> None:
        """Install a new profile (after PUT KEY or DELETE key); marks the card changed."""
        self._profile = profile
        self.registry.changed = True

    @property
    def security_level(self) -> int:
        """The active secure channel's level, or 0."""
        sc = self.secure_channel
        return sc.security_level if sc is not None and sc.is_active else 0

    def forget_transient(self) -> None:
        """Drop what GP keeps only between commands of one selection."""
        self.load = None
        self.paging = None
        self.perso = None
        self.store = None

    def require_management(self) -> None:
        """Refuse card management without a secure channel when configured to.

        @raise GpError: C{6982} when L{GpConfig.require_secure_channel} is
            set and no session is active.
        """
        if self.config.require_secure_channel:
            sc = self.secure_channel
            if sc is None or not sc.is_active:
                raise GpError(0x6982, "card management needs a secure channel")


def lv_fields(data: bytes, what: str) -> list[bytes]:
    """Split C{data} into consecutive one-byte-length LV fields.

    INSTALL, and the key blocks of PUT KEY, are LV sequences (GP Tables
    11-42..44); lengths are one byte, as GP 2.3.1 codes them.

    @raise GpError: C{6A80} if a field runs past the end.
    """
    fields, pos = [], 0
    while pos < len(data):
        size = data[pos]
        end = pos + 1 + size
        if end > len(data):
            raise GpError(0x6A80, f"{what}: field at offset {pos} runs past the data")
        fields.append(data[pos + 1 : end])
        pos = end
    return fields
