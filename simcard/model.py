# -*- test-case-name: tests.unit.simcard.test_model -*-
"""What a simulated card I{is}: its identity, its keys and its defaults.

A real card is personalised once at the factory (ICCID, IMSI, OTA key sets,
the SCP81 PSK, the ISD's SCP03 keys) and these values then only change
through card-management commands (PUT KEY, DELETE).  L{CardProfile} groups
them as one frozen value: the GlobalPlatform layer replaces it as a whole
when a key command succeeds, so nobody can see half an update, and the
fleet can share or compare profiles freely.

What changes on every OTA message - the replay counter per key version -
is not part of the profile: it lives in the mutable L{OtaCounters}.

Memory: a fleet holds 10,000 idle cards, so every class here uses slots
(attrs' default) and keeps only bytes and small ints.

Keys: no key byte ever appears in a repr, a str or an error message; only
lengths do, so a profile logged by accident leaks nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from typing import Any, Final

import attrs

from bipgw.codec.ota import OtaKeys

__all__ = [
    "OTA_KVN_RANGE",
    "PSK_KVN_RANGE",
    "SCP03_KVN_RANGE",
    "AdminDefaults",
    "CardIdentity",
    "CardProfile",
    "OtaAlgorithm",
    "OtaCounters",
    "OtaKeySet",
    "ProfileError",
    "PskCredential",
    "Scp03Keys",
]

OTA_KVN_RANGE: Final = range(0x01, 0x10)
"""Key version numbers of SCP80 (OTA) key sets: 1..15 (TS 102 225 5.1.2)."""
SCP03_KVN_RANGE: Final = range(0x30, 0x40)
"""Key version numbers of SCP03 key sets: 30..3F (GP Amendment D)."""
PSK_KVN_RANGE: Final = range(0x40, 0x50)
"""Key version numbers of SCP81 TLS-PSK keys: 40..4F.

PROTOCOLS.md section 7 item 2 marks this range UNVERIFIED as a normative
rule; it is what the public traces use (C{DELETE key KID 01 KVN 40})."""

_Validator = Callable[[Any, Any, Any], None]

_AES_LENGTHS: Final = (16, 24, 32)
_TDES_LENGTHS: Final = (16, 24)


class ProfileError(ValueError):
    """A profile value that no card could hold (bad ICCID, key length...).

    Messages name the field and the reason, never key bytes.
    """


def _hidden(value: bytes) -> str:
    return f"<{len(value)} bytes>"


def _digits(name: str, low: int, high: int) -> _Validator:
    def check(_: Any, __: Any, value: Any) -> None:
        if type(value) is not str or not value.isascii() or not value.isdigit():
            raise ProfileError(f"{name} must be a string of decimal digits, got {value!r}")
        if not low <= len(value) <= high:
            raise ProfileError(f"{name} must have {low}..{high} digits, got {len(value)}")

    return check


def _check_msisdn(_: object, __: object, value: str | None) -> None:
    if value is None:
        return
    if type(value) is not str or not value.isascii() or not value.isdigit():
        raise ProfileError(f"msisdn must be decimal digits (no '+'), got {value!r}")
    if not 3 <= len(value) <= 15:
        raise ProfileError(f"msisdn must have 3..15 digits (E.164), got {len(value)}")


def _check_kvn(allowed: range, what: str) -> _Validator:
    def check(_: Any, __: Any, value: Any) -> None:
        if type(value) is not int or value not in allowed:
            raise ProfileError(
                f"{what} key version must be in {allowed.start:02X}..{allowed.stop - 1:02X},"
                f" got {value!r}"
            )

    return check


def _key_bytes(name: str, lengths: tuple[int, ...], *, empty_ok: bool = False) -> _Validator:
    def check(_: Any, __: Any, value: Any) -> None:
        if type(value) is not bytes:
            raise ProfileError(f"{name} must be bytes, got {type(value).__name__}")
        if empty_ok and not value:
            return
        if len(value) not in lengths:
            wanted = "/".join(str(n) for n in lengths)
            raise ProfileError(f"{name} must be {wanted} bytes, got {len(value)}")

    return check


@attrs.frozen
class CardIdentity:
    """The numbers that name a card in the network and in vendor files.

    @ivar iccid: 19 or 20 digits, no C{F} filler (docs/architecture.md).
    @ivar imsi: 6..15 digits.
    @ivar msisdn: the subscriber number in international form without
        C{+}, or C{None} before the SIM-shield platform assigned one.
    """

    iccid: str = attrs.field(validator=_digits("iccid", 19, 20))
    imsi: str = attrs.field(validator=_digits("imsi", 6, 15))
    msisdn: str | None = attrs.field(default=None, validator=_check_msisdn)


class OtaAlgorithm(enum.Enum):
    """The cipher family of an OTA key set (KIc/KID coding, TS 102 225)."""

    AES = "AES"
    TDES = "3DES"

    @property
    def key_lengths(self) -> tuple[int, ...]:
        """The key sizes this family accepts, in bytes."""
        return _AES_LENGTHS if self is OtaAlgorithm.AES else _TDES_LENGTHS

    @property
    def gp_key_type(self) -> int:
        """The GlobalPlatform key type (PUT KEY, key information template)."""
        return 0x88 if self is OtaAlgorithm.AES else 0x80


def _check_ota_keys(instance: OtaKeySet, attribute: attrs.Attribute[bytes], value: bytes) -> None:
    lengths = instance.algorithm.key_lengths
    check = _key_bytes(attribute.name, lengths, empty_ok=attribute.name == "kik")
    check(instance, attribute, value)


@attrs.frozen
class OtaKeySet:
    """One SCP80 key set: KIc (ciphering), KID (checksum), KIK (key wrapping).

    Packets name the set by its key version in the KIc/KID bytes; the card
    looks the set up by that number (L{CardProfile.ota_key_set}).

    @ivar kvn: the key version, 1..15.
    @ivar algorithm: AES or 3DES; all three keys use it.
    @ivar kik: may be empty: not every card gets a KIK.
    """

    kvn: int = attrs.field(validator=_check_kvn(OTA_KVN_RANGE, "OTA"))
    algorithm: OtaAlgorithm = attrs.field(validator=attrs.validators.instance_of(OtaAlgorithm))
    kic: bytes = attrs.field(repr=_hidden, validator=_check_ota_keys)
    kid: bytes = attrs.field(repr=_hidden, validator=_check_ota_keys)
    kik: bytes = attrs.field(default=b"", repr=_hidden, validator=_check_ota_keys)

    def __str__(self) -> str:
        return repr(self)

    def ota_keys(self) -> OtaKeys:
        """The KIc/KID pair in the form the SCP80 codec verifies packets with."""
        return OtaKeys(kic_key=self.kic, kid_key=self.kid)


def _check_identity(_: Any, __: Any, value: Any) -> None:
    if type(value) is not bytes or not 1 <= len(value) <= 128:
        raise ProfileError("psk identity must be 1..128 bytes")


@attrs.frozen
class PskCredential:
    """The card's SCP81 TLS-PSK identity and key (GP Amendment B).

    The identity is not secret (it is sent in clear in the TLS handshake and
    listed in vendor files), so it shows in the repr; the key does not.

    @ivar kvn: the key version under which the ISD holds the key (PUT KEY /
        DELETE address it so); see L{PSK_KVN_RANGE}.
    """

    identity: bytes = attrs.field(validator=_check_identity)
    key: bytes = attrs.field(repr=_hidden, validator=_key_bytes("psk key", tuple(range(1, 65))))
    kvn: int = attrs.field(default=0x40, validator=_check_kvn(PSK_KVN_RANGE, "PSK"))

    def __str__(self) -> str:
        return repr(self)


def _check_scp03_key(instance: Scp03Keys, attribute: attrs.Attribute[bytes], value: bytes) -> None:
    check = _key_bytes(f"SCP03 {attribute.name}", _AES_LENGTHS)
    check(instance, attribute, value)
    if attribute.name != "enc" and len(value) != len(instance.enc):
        raise ProfileError(f"SCP03 {attribute.name} must be as long as enc ({len(instance.enc)})")


@attrs.frozen
class Scp03Keys:
    """One static SCP03 key set of the ISD (GP Amendment D): ENC, MAC, DEK.

    The DEK also decrypts keys sent by PUT KEY (see L{simcard.gp}).
    """

    kvn: int = attrs.field(validator=_check_kvn(SCP03_KVN_RANGE, "SCP03"))
    enc: bytes = attrs.field(repr=_hidden, validator=_check_scp03_key)
    mac: bytes = attrs.field(repr=_hidden, validator=_check_scp03_key)
    dek: bytes = attrs.field(repr=_hidden, validator=_check_scp03_key)

    def __str__(self) -> str:
        return repr(self)


def _check_port(_: Any, __: Any, value: Any) -> None:
    if type(value) is not int or not 1 <= value <= 65535:
        raise ProfileError(f"admin port must be 1..65535, got {value!r}")


def _check_host(_: Any, __: Any, value: Any) -> None:
    if (
        type(value) is not str
        or not value
        or not value.isascii()
        or any(c.isspace() for c in value)
    ):
        raise ProfileError(
            f"admin host must be a non-empty ASCII name without spaces, got {value!r}"
        )


def _check_uri(_: Any, __: Any, value: Any) -> None:
    if type(value) is not str or not value.startswith("/") or not value.isascii():
        raise ProfileError(f"admin uri must be an ASCII path starting with '/', got {value!r}")


@attrs.frozen
class AdminDefaults:
    """The personalised defaults of the card's SCP81 admin agent.

    A triggering message may override each of them for one session
    (GP Amd B triggering parameters, PROTOCOLS.md 3.5); these are what the
    card uses when it does not.

    @ivar agent_id: the C{X-Admin-From} value; C{None} means the ICCID
        (docs/architecture.md, step 5).
    """

    host: str = attrs.field(validator=_check_host)
    port: int = attrs.field(default=443, validator=_check_port)
    uri: str = attrs.field(default="/admin", validator=_check_uri)
    agent_id: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(str))
    )


def _unique_kvns(_: Any, attribute: Any, value: Any) -> None:
    kvns = [k.kvn for k in value]
    if len(set(kvns)) != len(kvns):
        raise ProfileError(f"{attribute.name}: key versions must be unique, got {kvns}")


def _tuple_of(kind: type) -> _Validator:
    def check(_: Any, attribute: Any, value: Any) -> None:
        if type(value) is not tuple or not all(isinstance(v, kind) for v in value):
            raise ProfileError(f"{attribute.name} must be a tuple of {kind.__name__}")

    return check


@attrs.frozen
class CardProfile:
    """Everything personalised into one card, as one immutable value.

    @ivar ota_key_sets: the SCP80 key sets, unique key versions.
    @ivar psk: the SCP81 TLS-PSK credential, or C{None} once deleted.
    @ivar scp03: the ISD's SCP03 key sets, unique key versions; the first
        is the default (INITIALIZE UPDATE with key version 00, and the DEK
        for PUT KEY outside a secure channel).
    @ivar admin: the admin agent's defaults.
    """

    identity: CardIdentity = attrs.field(validator=attrs.validators.instance_of(CardIdentity))
    ota_key_sets: tuple[OtaKeySet, ...] = attrs.field(
        default=(),
        validator=[_tuple_of(OtaKeySet), _unique_kvns],
    )
    psk: PskCredential | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(attrs.validators.instance_of(PskCredential)),
    )
    scp03: tuple[Scp03Keys, ...] = attrs.field(
        default=(),
        validator=[_tuple_of(Scp03Keys), _unique_kvns],
    )
    admin: AdminDefaults = attrs.field(
        factory=lambda: AdminDefaults("localhost"),
        validator=attrs.validators.instance_of(AdminDefaults),
    )

    @property
    def iccid(self) -> str:
        """The card's ICCID (shortcut for C{identity.iccid})."""
        return self.identity.iccid

    @property
    def agent_id(self) -> str:
        """The C{X-Admin-From} value the card sends: the personalised one or the ICCID."""
        return self.admin.agent_id if self.admin.agent_id is not None else self.identity.iccid

    def ota_key_set(self, kvn: int) -> OtaKeySet | None:
        """The OTA key set with key version C{kvn}, if the card holds one."""
        for ks in self.ota_key_sets:
            if ks.kvn == kvn:
                return ks
        return None

    def scp03_key_set(self, kvn: int = 0) -> Scp03Keys | None:
        """The SCP03 key set C{kvn}; C{0} means the default (first) one."""
        if kvn == 0:
            return self.scp03[0] if self.scp03 else None
        for ks in self.scp03:
            if ks.kvn == kvn:
                return ks
        return None


class OtaCounters:
    """The last accepted SCP80 counter per OTA key version (mutable).

    The card checks each packet's counter against this value according to
    the SPI counter mode and records it once the packet is accepted.  It is
    state, not personalisation: L{simcard.state} persists it with the card,
    and L{changed} tells the fleet that a save is due.
    """

    __slots__ = ("_last", "changed")

    def __init__(self, last: dict[int, int] | None = None) -> None:
        self._last: dict[int, int] = {}
        self.changed = False
        for kvn, counter in (last or {}).items():
            self._check(kvn, counter)
            self._last[kvn] = counter

    @staticmethod
    def _check(kvn: int, counter: int) -> None:
        if type(kvn) is not int or kvn not in OTA_KVN_RANGE:
            raise ProfileError(f"OTA counter key version must be 1..15, got {kvn!r}")
        if type(counter) is not int or not 0 <= counter < 1 << 40:
            raise ProfileError(f"OTA counter must be a 5-byte unsigned value, got {counter!r}")

    def last(self, kvn: int) -> int:
        """The last accepted counter for key version C{kvn}; 0 if none yet."""
        return self._last.get(kvn, 0)

    def record(self, kvn: int, counter: int) -> None:
        """Remember C{counter} as the last accepted one for C{kvn}."""
        self._check(kvn, counter)
        if self._last.get(kvn) != counter:
            self._last[kvn] = counter
            self.changed = True

    def as_dict(self) -> dict[int, int]:
        """A copy of the counters, key version to last counter."""
        return dict(self._last)

    def __iter__(self) -> Iterator[int]:
        return iter(sorted(self._last))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OtaCounters):
            return NotImplemented
        return self._last == other._last

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"OtaCounters({self._last!r})"
