# -*- test-case-name: tests.unit.simcard.test_registry -*-
"""The entries of the GlobalPlatform registry: load files and applications.

Frozen values, so that a fleet's thousands of cards share the entries of
their common content (see L{simcard.gp._registry}).  Validation raises
L{GpError} with C{6A80}, because these values arrive in INSTALL and LOAD
commands and a bad one is "incorrect data".
"""

from __future__ import annotations

from typing import Any

import attrs

from bipgw.codec.tlv import TlvError, decode_ber
from simcard.gp._constants import APP_LOCKED_BIT, APP_SELECTABLE, ELF_LOADED, PRIV_SECURITY_DOMAIN
from simcard.gp._errors import GpError

__all__ = ["Application", "LoadFile"]

_SW_DATA = 0x6A80


def _aid(optional: bool) -> Any:
    def check(_: Any, attribute: Any, value: Any) -> None:
        if type(value) is not bytes:
            raise GpError(_SW_DATA, f"{attribute.name} must be bytes")
        if optional and not value:
            return
        if not 5 <= len(value) <= 16:
            raise GpError(_SW_DATA, f"{attribute.name} must be 5..16 bytes, got {len(value)}")

    return check


def _byte(_: Any, attribute: Any, value: Any) -> None:
    if type(value) is not int or not 0 <= value <= 0xFF:
        raise GpError(_SW_DATA, f"{attribute.name} must be one byte, got {value!r}")


def _modules(_: Any, __: Any, value: Any) -> None:
    if type(value) is not tuple:
        raise GpError(_SW_DATA, "modules must be a tuple")
    for module in value:
        if type(module) is not bytes or not 5 <= len(module) <= 16:
            raise GpError(_SW_DATA, "module AIDs must be 5..16 bytes")


@attrs.frozen
class LoadFile:
    """An executable load file (a Java Card package) in the registry.

    The card does not execute CAP files: it keeps what GET STATUS reports
    and what the free-memory figure needs.

    @ivar modules: the executable module (applet class) AIDs, in load order.
    @ivar sd_aid: the associated Security Domain.
    @ivar version: the load file version, two bytes major/minor (tag C{CE}),
        or empty when unknown.
    @ivar size: the load file data block's size in bytes (counts against
        the card's non-volatile memory).
    @ivar digest: SHA-256 of the load file data block, for tests and audits.
    """

    aid: bytes = attrs.field(validator=_aid(False))
    sd_aid: bytes = attrs.field(validator=_aid(False))
    modules: tuple[bytes, ...] = attrs.field(default=(), validator=_modules)
    version: bytes = attrs.field(default=b"")
    size: int = attrs.field(default=0)
    digest: bytes = attrs.field(default=b"")
    life_cycle: int = attrs.field(default=ELF_LOADED, validator=_byte)

    def __repr__(self) -> str:
        return f"LoadFile(aid={self.aid.hex().upper()}, modules={len(self.modules)})"


def _privileges(_: Any, __: Any, value: Any) -> None:
    if type(value) is not bytes or len(value) != 3:
        raise GpError(_SW_DATA, "privileges must be 3 bytes")


@attrs.frozen
class Application:
    """An application or Security Domain instance in the registry.

    The ISD is one too (its C{elf_aid}/C{module_aid} are empty and its life
    cycle is the card's).  An entry with the Security Domain privilege is a
    Security Domain (the ISD, or an SSD).

    @ivar sd_aid: the associated Security Domain; empty for the ISD.
    @ivar privileges: the three privilege bytes (GP Table 6-1).
    @ivar install_params: the install parameters field as INSTALL carried
        it (C{C9}, and optionally C{EF}/C{EA}/...).
    """

    aid: bytes = attrs.field(validator=_aid(False))
    elf_aid: bytes = attrs.field(validator=_aid(True))
    module_aid: bytes = attrs.field(validator=_aid(True))
    sd_aid: bytes = attrs.field(validator=_aid(True))
    life_cycle: int = attrs.field(validator=_byte)
    privileges: bytes = attrs.field(default=b"\x00\x00\x00", validator=_privileges)
    install_params: bytes = attrs.field(default=b"")

    def __repr__(self) -> str:
        return (
            f"Application(aid={self.aid.hex().upper()}, life_cycle={self.life_cycle:02X},"
            f" privileges={self.privileges.hex().upper()})"
        )

    @property
    def is_security_domain(self) -> bool:
        """Whether this entry has the Security Domain privilege."""
        return bool(self.privileges[0] & PRIV_SECURITY_DOMAIN)

    @property
    def is_locked(self) -> bool:
        """Whether the entry is LOCKED (bit 8 of its life cycle)."""
        return bool(self.life_cycle & APP_LOCKED_BIT)

    @property
    def is_selectable(self) -> bool:
        """Whether SELECT may pick it: past INSTALLED and not locked."""
        return not self.is_locked and self.life_cycle & APP_SELECTABLE == APP_SELECTABLE

    @property
    def application_params(self) -> bytes:
        """The value of C{C9} (application specific parameters), or C{b""}."""
        try:
            for tlv in decode_ber(self.install_params):
                if tlv.tag == 0xC9:
                    return tlv.value
        except TlvError:
            pass
        return b""
