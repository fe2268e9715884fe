# -*- test-case-name: tests.unit.simcard.test_processor_content -*-
"""What the card reads from a loaded Java Card CAP file: AIDs and version.

The simulated card never runs CAP code, but GET STATUS must list the
executable modules of a load file, and INSTALL [for install] must refuse a
module the file does not contain.  A load file data block (the value of
C{C4} in LOAD) is, for Java Card, the concatenation of the CAP components,
each C{tag u1, size u2, info} (JCVM specification 3.0.5, chapter 6).  Two of
them say what we need:

  - Header (tag 1): C{magic DECAFFED, minor, major, flags,
    package_info {minor, major, AID_length, AID}, ...}: the package (load
    file) AID and its version;
  - Applet (tag 3): C{count, {AID_length, AID, install_method_offset u2}*}:
    the applet classes, i.e. the executable modules.

Convention for anything else: a data block that does not parse as CAP
components is kept as a load file with no executable modules (a library, as
far as the registry is concerned).
"""

from __future__ import annotations

from typing import Final

import attrs

__all__ = ["CapInfo", "read_cap"]

_MAGIC: Final = b"\xde\xca\xff\xed"
_HEADER: Final = 1
_APPLET: Final = 3
_LAST_TAG: Final = 12


@attrs.frozen
class CapInfo:
    """What the registry keeps from a CAP load file.

    @ivar package_aid: the package AID from the Header component, or
        C{None} when the data block is not a CAP file.
    @ivar version: C{major minor} of the package, or C{b""}.
    @ivar modules: the applet AIDs of the Applet component.
    """

    package_aid: bytes | None = None
    version: bytes = b""
    modules: tuple[bytes, ...] = ()


def _header(info: bytes) -> tuple[bytes, bytes] | None:
    if len(info) < 10 or info[:4] != _MAGIC:
        return None
    size = info[9]
    aid = info[10 : 10 + size]
    if len(aid) != size or not 5 <= size <= 16:
        return None
    return aid, bytes((info[8], info[7]))


def _applets(info: bytes) -> tuple[bytes, ...] | None:
    if not info:
        return None
    count, pos, found = info[0], 1, []
    for _ in range(count):
        if pos >= len(info):
            return None
        size = info[pos]
        aid = info[pos + 1 : pos + 1 + size]
        if len(aid) != size or not 5 <= size <= 16 or pos + 3 + size > len(info):
            return None
        found.append(aid)
        pos += 3 + size
    return tuple(found) if pos == len(info) else None


def read_cap(data: bytes) -> CapInfo:
    """Find the package AID, version and applet AIDs in a load file data block.

    Never raises: anything that is not a well-formed sequence of CAP
    components gives an empty L{CapInfo}.
    """
    pos = 0
    header: tuple[bytes, bytes] | None = None
    modules: tuple[bytes, ...] = ()
    while pos < len(data):
        if pos + 3 > len(data):
            return CapInfo()
        tag = data[pos]
        size = int.from_bytes(data[pos + 1 : pos + 3], "big")
        info = data[pos + 3 : pos + 3 + size]
        if not 1 <= tag <= _LAST_TAG or len(info) != size:
            return CapInfo()
        if tag == _HEADER:
            header = _header(info)
            if header is None:
                return CapInfo()
        elif tag == _APPLET:
            applets = _applets(info)
            if applets is None:
                return CapInfo()
            modules = applets
        pos += 3 + size
    if header is None:
        return CapInfo()
    return CapInfo(header[0], header[1], modules)
