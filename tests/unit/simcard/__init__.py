"""Tests for simcard, and the builders they share.

The builders make what a platform would send a real card: CAP load files
(Header and Applet components per the JCVM specification), LOAD block
sequences, keys encrypted under a DEK for PUT KEY.  They are written from
the specifications, independently of the code under test.
"""

from __future__ import annotations

import hashlib
from typing import TypeVar

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bipgw.codec.apdu import CommandApdu, ResponseApdu
from bipgw.codec.tlv import encode_ber
from simcard.gp import AppletContext, Application, GpError, SecureChannelError
from simcard.model import (
    AdminDefaults,
    CardIdentity,
    CardProfile,
    OtaAlgorithm,
    OtaKeySet,
    PskCredential,
    Scp03Keys,
)

T = TypeVar("T")

ICCID = "8988211000000000018"
DEK = bytes.fromhex("404142434445464748494A4B4C4D4E4F")
ENC = bytes.fromhex("505152535455565758595A5B5C5D5E5F")
MAC = bytes.fromhex("606162636465666768696A6B6C6D6E6F")
KIC = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
KID = bytes.fromhex("101112131415161718191A1B1C1D1E1F")
KIK = bytes.fromhex("202122232425262728292A2B2C2D2E2F")
PSK = bytes.fromhex("303132333435363738393A3B3C3D3E3F")


def make_profile(iccid: str = ICCID, msisdn: str | None = "31600000001") -> CardProfile:
    """A profile with one AES OTA key set, a PSK and an SCP03 key set."""
    return CardProfile(
        CardIdentity(iccid, "001010000000001", msisdn),
        (OtaKeySet(1, OtaAlgorithm.AES, KIC, KID, KIK),),
        PskCredential(iccid.encode("ascii"), PSK),
        (Scp03Keys(0x30, ENC, MAC, DEK),),
        AdminDefaults("gw.example"),
    )


def found(value: T | None) -> T:
    """C{value}, which a test expects to exist (fails the test otherwise)."""
    assert value is not None, "expected a value, got None"
    return value


def h(text: str) -> bytes:
    """Bytes from hex with spaces."""
    return bytes.fromhex(text.replace(" ", ""))


def cap_component(tag: int, info: bytes) -> bytes:
    """One CAP component: tag u1, size u2, info."""
    return bytes((tag,)) + len(info).to_bytes(2, "big") + info


def cap_file(package: bytes, applets: list[bytes], version: tuple[int, int] = (1, 0)) -> bytes:
    """A minimal CAP load file: Header, Applet (if any) and a Method component."""
    header = b"\xde\xca\xff\xed" + bytes((2, 2, 0)) + bytes((version[1], version[0]))
    header += bytes((len(package),)) + package
    parts = [cap_component(1, header)]
    if applets:
        body = bytes((len(applets),))
        for i, aid in enumerate(applets):
            body += bytes((len(aid),)) + aid + (0x10 * (i + 1)).to_bytes(2, "big")
        parts.append(cap_component(3, body))
    parts.append(cap_component(7, bytes(range(40))))
    return b"".join(parts)


def load_apdus(
    elf: bytes, data: bytes, block: int = 240, with_hash: bool = False, sd: bytes = b""
) -> list[CommandApdu]:
    """INSTALL [for load] followed by the LOAD blocks of C{C4 data}."""
    digest = hashlib.sha256(data).digest() if with_hash else b""
    fields = [elf, sd, digest, b"", b""]
    body = b"".join(bytes((len(f),)) + f for f in fields)
    apdus = [CommandApdu(0x80, 0xE6, 0x02, 0x00, body, 256)]
    blob = encode_ber(0xC4, data)
    chunks = [blob[i : i + block] for i in range(0, len(blob), block)]
    for n, chunk in enumerate(chunks):
        last = n == len(chunks) - 1
        apdus.append(CommandApdu(0x80, 0xE8, 0x80 if last else 0x00, n, chunk))
    return apdus


def install_apdu(
    elf: bytes,
    module: bytes,
    app: bytes,
    privileges: bytes = b"\x00",
    params: bytes = b"\xc9\x00",
    p1: int = 0x0C,
) -> CommandApdu:
    """INSTALL [for install (and make selectable)]."""
    fields = [elf, module, app, privileges, params, b""]
    body = b"".join(bytes((len(f),)) + f for f in fields)
    return CommandApdu(0x80, 0xE6, p1, 0x00, body, 256)


def encrypt_key(key: bytes, dek: bytes = DEK, length_prefix: bool = True) -> bytes:
    """A GP key component block: [clear length] AES-CBC(DEK, zero IV, padded key)."""
    padded = key + b"\x00" * (-len(key) % 16)
    enc = Cipher(algorithms.AES(dek), modes.CBC(b"\x00" * 16)).encryptor()
    block = enc.update(padded) + enc.finalize()
    if length_prefix and len(key) % 16 == 0:
        # Force the Table 11-70 form: pad one more block so a length is needed.
        enc = Cipher(algorithms.AES(dek), modes.CBC(b"\x00" * 16)).encryptor()
        block = enc.update(key + b"\x00" * 16) + enc.finalize()
        return bytes((len(key),)) + block
    return (bytes((len(key),)) if len(key) % 16 else b"") + block


class RecordingApplet:
    """An applet that records its calls and answers from a small script."""

    def __init__(self, application: Application, saved: bytes | None) -> None:
        self.aid = application.aid
        self.params = application.application_params
        self.data = bytearray(saved or b"")
        self.calls: list[tuple[str, object]] = []
        self.refuse_select = False
        self.fail_with: BaseException | None = None

    def select(self, ctx: AppletContext) -> ResponseApdu:
        self.calls.append(("select", ctx.life_cycle))
        if self.refuse_select:
            return ResponseApdu(b"", 0x6999)
        return ResponseApdu(encode_ber(0x6F, encode_ber(0x84, self.aid) + b"\xa5\x00"), 0x9000)

    def deselect(self, ctx: AppletContext) -> None:
        self.calls.append(("deselect", None))

    def process(self, apdu: CommandApdu, ctx: AppletContext) -> ResponseApdu:
        self.calls.append(("process", (apdu, ctx.via_security_domain)))
        if self.fail_with is not None:
            raise self.fail_with
        if apdu.ins == 0xE2:
            self.data += apdu.data
            return ResponseApdu(b"", 0x9000)
        if apdu.ins == 0x01:
            ctx.set_life_cycle(apdu.p1)
            return ResponseApdu(b"", 0x9000)
        return ResponseApdu(bytes(self.data) + apdu.data, 0x9000)

    def save(self) -> bytes:
        return bytes(self.data)


class RecordingFactory:
    """Creates L{RecordingApplet}s and remembers them."""

    def __init__(self, refuse: int | None = None) -> None:
        self.made: list[RecordingApplet] = []
        self.refuse = refuse

    def __call__(self, application: Application, saved: bytes | None) -> RecordingApplet:
        if self.refuse is not None:
            raise GpError(self.refuse, "refused by test factory")
        applet = RecordingApplet(application, saved)
        self.made.append(applet)
        return applet


class FakeSecureChannel:
    """A stand-in for the SCP03 card side, with the same contract.

    Its "MAC" is the first 8 bytes of SHA-256 over the header and data,
    appended to the data: enough to check that the processor unwraps every
    command of a session and refuses what the channel refuses.
    """

    def __init__(self) -> None:
        self.is_active = False
        self.security_level = 0
        self.key_version: int | None = None
        self.events: list[str] = []

    def initialize_update(self, apdu: CommandApdu) -> ResponseApdu:
        self.events.append("initialize_update")
        self.is_active = False
        self.key_version = apdu.p1 or 0x30
        return ResponseApdu(b"\x00" * 29, 0x9000)

    def external_authenticate(self, apdu: CommandApdu) -> ResponseApdu:
        self.events.append("external_authenticate")
        self.is_active = True
        self.security_level = apdu.p1
        return ResponseApdu(b"", 0x9000)

    @staticmethod
    def mac(apdu: CommandApdu) -> bytes:
        return hashlib.sha256(bytes((apdu.cla, apdu.ins, apdu.p1, apdu.p2)) + apdu.data).digest()[
            :8
        ]

    @classmethod
    def protect(cls, apdu: CommandApdu) -> CommandApdu:
        plain = CommandApdu(apdu.cla | 0x04, apdu.ins, apdu.p1, apdu.p2, apdu.data)
        return CommandApdu(
            apdu.cla | 0x04, apdu.ins, apdu.p1, apdu.p2, apdu.data + cls.mac(plain), apdu.le
        )

    def unwrap(self, apdu: CommandApdu) -> CommandApdu:
        self.events.append("unwrap")
        if not apdu.cla & 0x04 or len(apdu.data) < 8:
            raise SecureChannelError(0x6982, "no MAC")
        body, tag = apdu.data[:-8], apdu.data[-8:]
        if self.mac(CommandApdu(apdu.cla, apdu.ins, apdu.p1, apdu.p2, body)) != tag:
            self.is_active = False
            raise SecureChannelError(0x6982, "bad MAC")
        return CommandApdu(apdu.cla & ~0x04, apdu.ins, apdu.p1, apdu.p2, body, apdu.le)

    def wrap(self, response: ResponseApdu) -> ResponseApdu:
        self.events.append("wrap")
        return ResponseApdu(response.data + b"\xaa", response.sw)

    def reset(self) -> None:
        self.events.append("reset")
        self.is_active = False
        self.security_level = 0
        self.key_version = None
