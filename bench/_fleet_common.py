"""What the fleet benchmarks share: the gateway's view of a fleet, pushes, memory readings.

The benchmarks drive the fleet as the gateway would: each card's keys are
read out of the generated vendor file (unwrapped with the transport key of
C{gateway/transport-keys.toml}) and each push is a real secured PUSH
"open BIP channel" (SPI 16 39, AES, KIc/KID 12), split into SMS-DELIVER
TPDUs as the SMSC hands them to the fleet.
"""

from __future__ import annotations

import os
import platform
import resource
import time
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from ipaddress import ip_address
from pathlib import Path

import attrs

from bipgw.codec.ota import CommandPacket, OtaKeys, secure_command
from bipgw.codec.sms import Address, SmsDeliver, UserDataHeader, split_command_packet
from bipgw.keys import Secret, unwrap_from_transport
from bipgw.push import CallbackAddress, PushProfile, push_script
from simcard.smsc import scts_at

#: The gateway's own default push (SPI 16 39, KIc/KID 12, the ISD's TAR), with the
#: fleet's buffer size.
_PUSH = PushProfile(buffer_size=1400)


@attrs.frozen
class BenchCard:
    """One card as the gateway knows it from the fleet's files."""

    iccid: str
    msisdn: str
    ota: OtaKeys = attrs.field(repr=False)
    psk_identity: bytes
    psk: bytes = attrs.field(repr=False)


def read_cards(directory: Path, *, limit: int | None = None) -> Iterator[BenchCard]:
    """The fleet's cards, from C{vendor/*.out}, C{msisdn/*.csv} and the transport key."""
    keys = tomllib.loads((directory / "gateway/transport-keys.toml").read_text())
    transport = Secret.from_hex(keys["transport_key"][0]["key"])
    [mapping] = (directory / "msisdn").glob("*.csv")
    msisdns = {}
    for line in mapping.read_text().splitlines():
        msisdn, iccid, *_ = line.split(",")
        msisdns[iccid] = msisdn
    [vendor] = (directory / "vendor").glob("*.out")
    columns: list[str] = []
    count = 0
    with vendor.open() as f:
        for line in f:
            if line.startswith("*") or not line.strip():
                continue
            if line.startswith("Var_Out:"):
                columns = line.split(":", 1)[1].strip().split("/")
                continue
            if not columns:
                continue
            row = dict(zip(columns, line.split(), strict=True))

            def key(column: str, row: dict[str, str] = row) -> bytes:
                return unwrap_from_transport(transport, row[column]).reveal()

            yield BenchCard(
                row["ICCID"],
                msisdns[row["ICCID"]],
                OtaKeys(kic_key=key("KIC1"), kid_key=key("KID1")),
                bytes.fromhex(row["PSK_ID1"]),
                key("PSK1"),
            )
            count += 1
            if limit is not None and count >= limit:
                return


def push_tpdus(keys: OtaKeys, counter: int, address: str, port: int) -> list[bytes]:
    """The SMS-DELIVER TPDUs of a secured PUSH asking the card to open a channel to us."""
    packet = CommandPacket(
        spi=_PUSH.spi,
        kic=_PUSH.kic,
        kid=_PUSH.kid,
        tar=_PUSH.tar,
        counter=counter,
        data=push_script(_PUSH, CallbackAddress(ip_address(address), port)),
    )
    tpdus = []
    for ud in split_command_packet(secure_command(packet, keys), 1):
        header, body = UserDataHeader.decode(ud)
        tpdus.append(
            SmsDeliver(
                originating_address=Address(1, 1, "12345"),
                scts=scts_at(time.time()),
                pid=0x7F,
                dcs=0xF6,
                user_data_header=header,
                user_data=body,
            ).encode()
        )
    return tpdus


def rss_bytes() -> int:
    """This process's resident set size now (Linux C{/proc}; else the peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cpu_seconds() -> float:
    """User + system CPU time of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine() -> str:
    """Date, CPU, core count, Python and load: the header of a result."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{datetime.now(UTC):%Y-%m-%d}, {model}, {os.cpu_count()} CPUs,"
        f" Python {platform.python_version()}, load {load:.1f}"
    )


def mb(value: float) -> str:
    """Bytes as megabytes with one decimal."""
    return f"{value / 1e6:.1f} MB"
