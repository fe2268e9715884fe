"""Shared helpers for the fleet's tests (this module holds no tests).

The file readers here are written from docs/architecture.md alone and do
not import C{bipgw.ingest}: the generator must produce what the document
says, not merely what the gateway's importer happens to accept.  Pushes
are built the way the gateway builds them (docs/architecture.md, "The
loop"), with the codecs, from keys read back out of the generated files.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import MemoryReactorClock

from bipgw.codec.ota import (
    ChecksumKind,
    CommandPacket,
    CounterMode,
    Kic,
    KicAlgorithm,
    Kid,
    KidAlgorithm,
    OtaKeys,
    PorMode,
    Spi,
)
from bipgw.codec.ota import secure_command as secure
from bipgw.codec.ram import (
    BearerDescription,
    BufferSize,
    OtherAddress,
    PushBipOpening,
    TransportLevel,
    TransportProtocol,
    encode_compact,
)
from bipgw.codec.sms import Address, SmsDeliver, UserDataHeader, split_command_packet
from bipgw.keys import Secret, unwrap_from_transport
from simcard.fleet import FleetConfig, GenerateResult, generate_fleet
from simcard.smsc import DeliveryOutcome, scts_at

OTA_ADDRESS = "12345"
"""The gateway's OTA address (examples/gateway.toml), where PoRs go."""

#: SPI 16 39: CC, ciphered, counter higher; PoR always, CC, ciphered, by SMS-SUBMIT.
SPI_1639 = Spi(
    checksum=ChecksumKind.CC,
    ciphered=True,
    counter=CounterMode.HIGHER,
    por=PorMode.ALWAYS,
    por_checksum=ChecksumKind.CC,
    por_ciphered=True,
    por_via_submit=True,
)
#: SPI 16 29: as 16 39 but the PoR comes back in the delivery report.
SPI_1629 = attrs.evolve(SPI_1639, por_via_submit=False)


@attrs.frozen
class VendorFile:
    """A vendor output file as docs/architecture.md describes it."""

    header: dict[str, str]
    columns: list[str]
    rows: list[dict[str, str]]


def luhn_valid(number: str) -> bool:
    """The Luhn check over a whole number, check digit included (ISO/IEC 7812-1 Annex B)."""
    total = 0
    for index, char in enumerate(reversed(number)):
        value = int(char) * (2 if index % 2 else 1)
        total += value // 10 + value % 10
    return total % 10 == 0


def read_vendor_file(text: str) -> VendorFile:
    """Header lines C{Key: value}, the C{Var_Out:} columns, one card per line."""
    header: dict[str, str] = {}
    columns: list[str] | None = None
    rows: list[dict[str, str]] = []
    for line in text.split("\n"):
        if not line.strip() or line.startswith("*"):
            continue
        if columns is None:
            key, sep, value = line.partition(":")
            assert sep, f"not a header line: {line!r}"
            if key == "Var_Out":
                columns = value.strip().split("/")
            else:
                header[key] = value.strip()
            continue
        values = line.split()
        assert len(values) == len(columns), line
        rows.append(dict(zip(columns, values, strict=True)))
    assert columns is not None, "no Var_Out line"
    return VendorFile(header, columns, rows)


def read_msisdn_file(text: str) -> list[list[str]]:
    """C{MSISDN,ICCID,IMSI,OPERATION,EFFECTIVE_TIME} records, fields split."""
    assert text.endswith("\n")
    return [line.split(",") for line in text[:-1].split("\n")]


def transport_key(result: GenerateResult) -> tuple[str, Secret]:
    """The label and key of C{gateway/transport-keys.toml}."""
    data = tomllib.loads(result.transport_keys.read_text())
    [entry] = data["transport_key"]
    assert entry["scheme"] == "aes-kwp"
    return entry["label"], Secret.from_hex(entry["key"])


@attrs.frozen
class CardKeys:
    """One card's keys, unwrapped from the vendor file."""

    iccid: str
    imsi: str
    msisdn: str
    kic: bytes = attrs.field(repr=False)
    kid: bytes = attrs.field(repr=False)
    kik: bytes = attrs.field(repr=False)
    psk_identity: bytes
    psk: bytes = attrs.field(repr=False)

    @property
    def ota(self) -> OtaKeys:
        return OtaKeys(kic_key=self.kic, kid_key=self.kid)


def cards_from_files(result: GenerateResult) -> Iterator[CardKeys]:
    """Every card of a generated fleet, as the gateway would know it from the files."""
    vendor = read_vendor_file(result.vendor_file.read_text())
    _, key = transport_key(result)
    msisdns = {r[1]: r[0] for r in read_msisdn_file(result.msisdn_file.read_text())}
    for row in vendor.rows:
        yield CardKeys(
            row["ICCID"],
            row["IMSI"],
            msisdns[row["ICCID"]],
            unwrap_from_transport(key, row["KIC1"]).reveal(),
            unwrap_from_transport(key, row["KID1"]).reveal(),
            unwrap_from_transport(key, row["KIK1"]).reveal(),
            bytes.fromhex(row["PSK_ID1"]),
            unwrap_from_transport(key, row["PSK1"]).reveal(),
        )


def make_fleet(directory: str, cards: int = 3, **kwargs: Any) -> tuple[GenerateResult, FleetConfig]:
    """Generate a seeded fleet in C{directory}; return it and its configuration."""
    kwargs.setdefault("seed", 42)
    result = generate_fleet(directory, cards=cards, **kwargs)
    return result, FleetConfig.from_file(result.fleet_toml)


def push_parts(
    keys: OtaKeys,
    counter: int,
    *,
    address: str = "127.0.0.1",
    port: int = 8443,
    spi: Spi = SPI_1639,
    algorithm: str = "aes",
    reference: int = 1,
    commands: tuple[bytes, ...] = (),
) -> list[bytes]:
    """The SMS user data parts of a secured PUSH "open BIP channel" to C{address}:C{port},
    as the gateway submits them (SPI 16 39, KIc/KID 12 by default)."""
    push = PushBipOpening(
        bearer=BearerDescription.default(),
        buffer_size=BufferSize(1400),
        transport=TransportLevel(TransportProtocol.TCP_CLIENT_REMOTE, port),
        address=OtherAddress(ip_address(address)),
    ).encode()
    if algorithm == "aes":
        kic, kid = Kic(1, KicAlgorithm.AES_CBC), Kid(1, KidAlgorithm.AES_CMAC)
    else:
        kic, kid = Kic(1, KicAlgorithm.TDES_2KEY), Kid(1, KidAlgorithm.TDES_2KEY)
    packet = CommandPacket(
        spi=spi,
        kic=kic,
        kid=kid,
        tar=b"\x00\x00\x00",
        counter=counter,
        data=encode_compact([*commands, push]),
    )
    return split_command_packet(secure(packet, keys), reference)


def push_tpdus(keys: OtaKeys, counter: int, **kwargs: Any) -> list[bytes]:
    """The SMS-DELIVER TPDUs a handset receives for L{push_parts}."""
    tpdus = []
    for ud in push_parts(keys, counter, **kwargs):
        header, body = UserDataHeader.decode(ud)
        deliver = SmsDeliver(
            originating_address=Address(1, 1, OTA_ADDRESS),
            scts=scts_at(1_700_000_000),
            pid=0x7F,
            dcs=0xF6,
            user_data_header=header,
            user_data=body,
        )
        tpdus.append(deliver.encode())
    return tpdus


class FakeSmsc:
    """The SMSC's way back: records C{submit_mo} calls, answers delivered."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, bytes]] = []

    def submit_mo(
        self, from_msisdn: str, to_address: str, tpdu: bytes
    ) -> Deferred[DeliveryOutcome]:
        self.calls.append((from_msisdn, to_address, tpdu))
        return succeed(DeliveryOutcome.delivered())


class NeverConnects:
    """A TCP endpoint whose connection attempt never completes (until cancelled)."""

    def __init__(self) -> None:
        self.attempts: list[Deferred[Any]] = []

    def connect(self, factory: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.attempts.append(d)
        return d


class RecordingEndpoints:
    """An endpoint factory recording the (host, port) each card connects to."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, int]] = []
        self.endpoints: list[NeverConnects] = []

    def __call__(self, host: str, port: int) -> Any:
        self.requests.append((host, port))
        endpoint = NeverConnects()
        self.endpoints.append(endpoint)
        return endpoint


def fleet_dir(case: Any) -> str:
    """A fresh directory path for a test's fleet (trial's C{mktemp})."""
    return str(Path(case.mktemp()))


def memory_reactor() -> MemoryReactorClock:
    """The fake reactor fleet service tests run on."""
    return MemoryReactorClock()
