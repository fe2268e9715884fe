# -*- test-case-name: tests.unit.simcard.test_filesystem_applet -*-
"""The USIM application's file system, for remote file management (RFM).

A platform reaches a card's files over the air by addressing the USIM
application: in an SCP81 admin session the gateway sends the script with
C{X-Admin-Targeted-Application: //aid/A000000087/1002...} (GP Amendment B),
the card's agent SELECTs that application and runs the script in it, and
the commands are the ISO/IEC 7816-4 file commands of TS 102 221 / TS 31.102
(the ADF USIM RFM of TS 102 226 section 7.3).

The simulated ADF holds a few transparent elementary files (TS 31.102
section 4.2):

  - C{6F07} EF_IMSI (9 bytes): length C{08}, then the IMSI in BCD with the
    parity nibble C{9} (odd digit count) or C{1} first; written from the
    card's profile until the file is updated;
  - C{6F46} EF_SPN (17 bytes): display condition C{01}, then the service
    provider name "bipgw" in GSM 7-bit default alphabet, padded with C{FF};
  - C{6FAD} EF_AD (4 bytes): C{00 00 00 02} (normal operation, MNC of
    two digits);
  - C{6F78} EF_ACC (2 bytes): the access class of the IMSI's last digit.

Commands (CLA C{00}, or C{0X} on another logical channel):

  - SELECT C{00 A4 00 P2 02 FID}: an EF above, or C{7FFF} (the current
    ADF: no EF selected).  P2 C{04} answers the FCP template (C{62}: file
    descriptor C{82}, identifier C{83}, size C{80}, life cycle C{8A}),
    C{0C} nothing.  Unknown FID C{6A82}; other P1 C{6A86}; Lc other than 2
    C{6700}.
  - READ BINARY C{00 B0 P1 P2 Le}: offset P1P2 (15 bits; an SFI in P1,
    b8 set, is not supported: C{6981}); no EF selected C{6986}; an offset
    past the end C{6B00}; fewer bytes left than Le: those bytes with
    C{6282}.  No Le, or Le C{00}: the rest of the file, C{9000}.
  - UPDATE BINARY C{00 D6 P1 P2 Lc data}: writes at the offset; past the
    end C{6B00}, data running past the end C{6700}.

A write is kept (L{FileSystemApplet.save}: JSON of the written files, by
FID in hex), so a fleet that saves its cards keeps it across restarts.
"""

from __future__ import annotations

import json
from typing import Final

from bipgw.codec.apdu import CommandApdu, ResponseApdu
from simcard.gp import AppletContext, Application, GpError

__all__ = [
    "USIM_INSTANCE_AID",
    "USIM_MODULE_AID",
    "FileSystemApplet",
    "FileSystemStateError",
    "filesystem_applet_factory",
]

USIM_MODULE_AID: Final = bytes.fromhex("A0000000871002")
"""The USIM executable module (3GPP RID, application code C{1002})."""

USIM_INSTANCE_AID: Final = bytes.fromhex("A0000000871002FFFFFFFF8900000100")
"""The USIM instance every simulated card carries (L{simcard.gp.default_registry})."""

EF_IMSI: Final = 0x6F07
EF_SPN: Final = 0x6F46
EF_AD: Final = 0x6FAD
EF_ACC: Final = 0x6F78
_ADF: Final = 0x7FFF

_SPN_NAME: Final = b"bipgw"
_SIZES: Final = {EF_IMSI: 9, EF_SPN: 17, EF_AD: 4, EF_ACC: 2}

_INS_SELECT: Final = 0xA4
_INS_READ_BINARY: Final = 0xB0
_INS_UPDATE_BINARY: Final = 0xD6


class FileSystemStateError(ValueError):
    """Saved file-system data that cannot be restored."""


def encode_imsi(imsi: str) -> bytes:
    """EF_IMSI's content (TS 31.102 section 4.2.2) for C{imsi}."""
    digits = [int(c) for c in imsi]
    parity = 0x9 if len(digits) % 2 else 0x1
    nibbles = [parity, *digits]
    if len(nibbles) % 2:
        nibbles.append(0xF)
    body = bytes(nibbles[i] | (nibbles[i + 1] << 4) for i in range(0, len(nibbles), 2))
    return (bytes((len(body),)) + body).ljust(9, b"\xff")


def _initial(fid: int, imsi: str) -> bytes:
    if fid == EF_IMSI:
        return encode_imsi(imsi)
    if fid == EF_SPN:
        return (b"\x01" + _SPN_NAME).ljust(17, b"\xff")
    if fid == EF_AD:
        return bytes.fromhex("00000002")
    last = int(imsi[-1]) if imsi and imsi[-1].isdigit() else 0
    return (1 << last).to_bytes(2, "big")


def _fcp(fid: int, size: int) -> bytes:
    body = (
        bytes.fromhex("82024121")
        + b"\x83\x02"
        + fid.to_bytes(2, "big")
        + b"\x80\x02"
        + size.to_bytes(2, "big")
        + bytes.fromhex("8A0105")
    )
    return bytes((0x62, len(body))) + body


class FileSystemApplet:
    """The ADF USIM's transparent files (see the module docstring).

    @ivar aid: the instance AID.
    """

    def __init__(self, aid: bytes, written: dict[int, bytes] | None = None) -> None:
        self.aid = aid
        self._written: dict[int, bytes] = dict(written or {})
        self._current: int | None = None

    @classmethod
    def restore(cls, aid: bytes, saved: bytes) -> FileSystemApplet:
        """The instance L{save} described.

        @raise FileSystemStateError: C{saved} is not such a description.
        """
        try:
            data = json.loads(saved)
            written = {int(fid, 16): bytes.fromhex(value) for fid, value in data.items()}
        except (ValueError, TypeError, AttributeError) as e:
            raise FileSystemStateError(f"file-system state: {e}") from None
        for fid, value in written.items():
            if _SIZES.get(fid) != len(value):
                raise FileSystemStateError(f"file-system state: file {fid:04X} is not one of ours")
        return cls(aid, written)

    def save(self) -> bytes:
        """The written files, as JSON (FID hex to content hex)."""
        return json.dumps(
            {f"{fid:04X}": value.hex().upper() for fid, value in sorted(self._written.items())}
        ).encode()

    def content(self, fid: int, ctx: AppletContext) -> bytes:
        """The current content of EF C{fid}."""
        written = self._written.get(fid)
        return written if written is not None else _initial(fid, ctx.profile.identity.imsi)

    def select(self, ctx: AppletContext) -> ResponseApdu:
        """Selected as an application: the ADF is current, no EF."""
        self._current = None
        fci = bytes((0x6F, 2 + len(self.aid), 0x84, len(self.aid))) + self.aid
        return ResponseApdu(fci, 0x9000)

    def deselect(self, ctx: AppletContext) -> None:
        """Another application was selected."""
        self._current = None

    def process(self, apdu: CommandApdu, ctx: AppletContext) -> ResponseApdu:
        """One file command (see the module docstring)."""
        if apdu.cla & 0x80:
            raise GpError(0x6E00, "the file system takes interindustry classes only")
        if apdu.ins == _INS_SELECT:
            return self._select(apdu)
        if apdu.ins == _INS_READ_BINARY:
            return self._read(apdu, ctx)
        if apdu.ins == _INS_UPDATE_BINARY:
            return self._update(apdu, ctx)
        raise GpError(0x6D00, f"INS {apdu.ins:02X}")

    def _select(self, apdu: CommandApdu) -> ResponseApdu:
        if apdu.p1 != 0x00:
            raise GpError(0x6A86, f"SELECT P1 {apdu.p1:02X}: only by file identifier")
        if apdu.p2 not in (0x04, 0x0C):
            raise GpError(0x6A86, f"SELECT P2 {apdu.p2:02X}")
        if len(apdu.data) != 2:
            raise GpError(0x6700, "a file identifier has 2 bytes")
        fid = int.from_bytes(apdu.data, "big")
        if fid == _ADF:
            self._current = None
            return ResponseApdu(b"", 0x9000)
        size = _SIZES.get(fid)
        if size is None:
            raise GpError(0x6A82, f"no file {fid:04X}")
        self._current = fid
        return ResponseApdu(_fcp(fid, size) if apdu.p2 == 0x04 else b"", 0x9000)

    def _offset(self, apdu: CommandApdu) -> tuple[int, int]:
        if apdu.p1 & 0x80:
            raise GpError(0x6981, "short file identifiers are not supported")
        if self._current is None:
            raise GpError(0x6986, "no EF selected")
        offset = (apdu.p1 << 8) | apdu.p2
        size = _SIZES[self._current]
        if offset >= size:
            raise GpError(0x6B00, f"offset {offset} past the end of a {size}-byte file")
        return self._current, offset

    def _read(self, apdu: CommandApdu, ctx: AppletContext) -> ResponseApdu:
        fid, offset = self._offset(apdu)
        data = self.content(fid, ctx)
        if apdu.le is None or apdu.le == 256:  # no Le, or Le 00: the rest of the file
            return ResponseApdu(data[offset:], 0x9000)
        chunk = data[offset : offset + apdu.le]
        return ResponseApdu(chunk, 0x9000 if len(chunk) == apdu.le else 0x6282)

    def _update(self, apdu: CommandApdu, ctx: AppletContext) -> ResponseApdu:
        fid, offset = self._offset(apdu)
        data = self.content(fid, ctx)
        if not apdu.data or offset + len(apdu.data) > len(data):
            raise GpError(0x6700, f"{len(apdu.data)} bytes at {offset} do not fit the file")
        self._written[fid] = data[:offset] + apdu.data + data[offset + len(apdu.data) :]
        return ResponseApdu(b"", 0x9000)


def filesystem_applet_factory(application: Application, saved: bytes | None) -> FileSystemApplet:
    """The L{simcard.gp.AppletFactory} of the USIM module.

    @raise FileSystemStateError: C{saved} is not a file-system state.
    """
    if saved is None:
        return FileSystemApplet(application.aid)
    return FileSystemApplet.restore(application.aid, saved)
