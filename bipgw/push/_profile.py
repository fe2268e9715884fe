# -*- test-case-name: tests.unit.push.test_builder -*-
"""What a push says and how it is secured: one service's profile, the callback address.

A L{PushProfile} holds everything about a service's pushes that does not
depend on the card: the TAR and security (SPI, KIc, KID) of the secured
packet, and what the secured data asks for (docs/architecture.md):

  - C{trigger = "push"}: a compact script with the TS 102 226 PUSH
    C{80 EC 01 01 Lc [35 01 03][39 02 buf][3C 03 02 port][3E 05 21 ipv4]}
    ("request for BIP channel opening" towards the L{CallbackAddress});
  - C{trigger = "amdb"}: the GP Amendment B triggering parameters C{81 ...}
    with connection, PSK identity/KVN/KID, retry policy and HTTP
    parameters (host, agent id, URI).

L{push_script} and L{trigger_tlv} build those bytes with the RAM codec; a
profile is checked by building them once when it is made, so a bad
configuration is refused at start-up rather than at the first push.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Final

import attrs

from bipgw.codec.ota import ChecksumKind, Kic, Kid, Spi
from bipgw.codec.ram import (
    AdminSessionTrigger,
    BearerDescription,
    BufferSize,
    ConnectionParams,
    HttpPostParams,
    NetworkAccessName,
    OtherAddress,
    PushBipOpening,
    RetryPolicy,
    SecurityParams,
    TransportLevel,
    TransportProtocol,
    encode_compact,
)
from bipgw.keys import psk_identity_for

__all__ = [
    "DEFAULT_KIC",
    "DEFAULT_KID",
    "DEFAULT_SPI",
    "ISD_TAR",
    "CallbackAddress",
    "PushProfile",
    "TriggerKind",
    "push_script",
    "trigger_tlv",
]

ISD_TAR: Final = b"\x00\x00\x00"
"""The Issuer Security Domain's TAR, where pushes go by default."""
DEFAULT_SPI: Final = Spi.from_bytes(b"\x16\x39")
"""CC, ciphered, counter higher; PoR always, CC, ciphered, by SMS-SUBMIT."""
DEFAULT_KIC: Final = Kic.from_byte(0x12)
"""Key version 1, AES-CBC."""
DEFAULT_KID: Final = Kid.from_byte(0x12, ChecksumKind.CC)
"""Key version 1, AES-CMAC."""


class TriggerKind(enum.Enum):
    """What the secured data asks the card to do."""

    PUSH = "push"
    """A compact script with the TS 102 226 PUSH "request for BIP channel opening"."""
    AMDB = "amdb"
    """The GP Amendment B administration session triggering parameters C{81}."""


def _trigger(value: object) -> TriggerKind:
    # Accepts our enum, bipgw.config.Trigger (same values) or the text.
    return TriggerKind(getattr(value, "value", value))


def _ipv4(value: object) -> ipaddress.IPv4Address:
    address = ipaddress.ip_address(value)  # type: ignore[arg-type]
    if not isinstance(address, ipaddress.IPv4Address):
        raise ValueError(f"the callback address must be IPv4, not {value!r}")
    return address


def _port(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 0xFFFF:
        raise ValueError(f"{attribute.name} must be 1..65535, not {value!r}")


def _tar(instance: object, attribute: attrs.Attribute[bytes], value: bytes) -> None:
    if type(value) is not bytes or len(value) != 3:
        raise ValueError(f"a TAR is 3 bytes, not {value!r}")


def _u8(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFF:
        raise ValueError(f"{attribute.name} must be 0..255, not {value!r}")


@attrs.frozen
class CallbackAddress:
    """Where pushed cards connect: the SCP81 server's public IPv4 address and port."""

    host: ipaddress.IPv4Address = attrs.field(converter=_ipv4)
    port: int = attrs.field(validator=_port)


@attrs.frozen(kw_only=True)
class PushProfile:
    """How one platform service's pushes are addressed, secured and worded.

    Defaults follow docs/architecture.md: TAR C{000000}, SPI C{16 39},
    KIc/KID C{12}, trigger C{push}.

    @ivar tar: the Toolkit Application Reference addressed.
    @ivar spi: the security parameters (SPI2 says how the PoR comes back).
    @ivar kic: ciphering key version and algorithm.
    @ivar kid: checksum key version and algorithm.
    @ivar trigger: PUSH or Amendment B triggering parameters.
    @ivar buffer_size: the BIP channel buffer the card asks for.
    @ivar apn: the network access name, when the card must use one.
    @ivar psk_kvn: key version of the card's SCP81 PSK (Amendment B only).
    @ivar psk_kid: key identifier of the PSK within it (Amendment B only).
    @ivar admin_uri: the URI of the first POST (Amendment B only).
    @ivar admin_host: the C{Host} header value (Amendment B only).
    @ivar agent_id: the C{X-Admin-From} value; C{None} means the ICCID.
    @ivar retry_counter: how often the card retries a failed session (Amendment B only).
    @ivar retry_delay: how long it waits between retries (Amendment B only).
    """

    tar: bytes = attrs.field(default=ISD_TAR, validator=_tar)
    spi: Spi = attrs.field(default=DEFAULT_SPI, validator=attrs.validators.instance_of(Spi))
    kic: Kic = attrs.field(default=DEFAULT_KIC, validator=attrs.validators.instance_of(Kic))
    kid: Kid = attrs.field(default=DEFAULT_KID, validator=attrs.validators.instance_of(Kid))
    trigger: TriggerKind = attrs.field(default=TriggerKind.PUSH, converter=_trigger)
    buffer_size: int = attrs.field(default=1024)
    apn: str | None = None
    psk_kvn: int = attrs.field(default=0x40, validator=_u8)
    psk_kid: int = attrs.field(default=0x01, validator=_u8)
    admin_uri: str = "/admin"
    admin_host: str | None = None
    agent_id: str | None = None
    retry_counter: int = 3
    retry_delay: timedelta = timedelta(seconds=10)

    def __attrs_post_init__(self) -> None:
        if not self.kid.fits(self.spi.checksum):
            raise ValueError(f"KID {self.kid.to_byte():02X} cannot go with SPI {self.spi!r}")
        # Let the codec check the rest (buffer, APN, URI, host, retry) now,
        # so a bad profile is refused at start-up, not at the first push.
        trigger_tlv(self, "8988211000000000018", CallbackAddress("127.0.0.1", 1))
        push_script(self, CallbackAddress("127.0.0.1", 1))

    @classmethod
    def from_service(cls, service: Any, **overrides: Any) -> PushProfile:
        """The profile of a C{[services.NAME]} table (L{bipgw.config.ServiceSection}).

        @param overrides: any other field (C{admin_uri}, C{admin_host}, ...).
        """
        values: dict[str, Any] = {
            "tar": service.tar,
            "spi": service.spi,
            "kic": service.kic,
            "kid": Kid.from_byte(service.kid.to_byte(), service.spi.checksum),
            "trigger": service.trigger,
            "psk_kvn": service.kvn,
            "psk_kid": service.psk_kid,
        }
        values.update(overrides)
        return cls(**values)


def push_script(profile: PushProfile, callback: CallbackAddress) -> bytes:
    push = PushBipOpening(
        bearer=BearerDescription.default(),
        buffer_size=BufferSize(profile.buffer_size),
        nan=NetworkAccessName(profile.apn) if profile.apn is not None else None,
        transport=TransportLevel(TransportProtocol.TCP_CLIENT_REMOTE, callback.port),
        address=OtherAddress(callback.host),
    )
    return encode_compact([push.encode()])


def trigger_tlv(
    profile: PushProfile,
    iccid: str,
    callback: CallbackAddress,
    psk_identity: Callable[[str], bytes] = psk_identity_for,
) -> bytes:
    trigger = AdminSessionTrigger(
        connection=ConnectionParams(
            bearer=BearerDescription.default(),
            buffer_size=BufferSize(profile.buffer_size),
            nan=NetworkAccessName(profile.apn) if profile.apn is not None else None,
            transport=TransportLevel(TransportProtocol.TCP_CLIENT_REMOTE, callback.port),
            address=OtherAddress(callback.host),
        ),
        security=SecurityParams(psk_identity(iccid), profile.psk_kvn, profile.psk_kid),
        retry=RetryPolicy(profile.retry_counter, profile.retry_delay),
        http=HttpPostParams(
            profile.admin_uri,
            profile.admin_host,
            profile.agent_id if profile.agent_id is not None else iccid,
        ),
    )
    return trigger.encode()
