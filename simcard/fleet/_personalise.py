# -*- test-case-name: tests.unit.fleet.test_personalise -*-
"""What one simulated card is personalised with: its numbers, keys and content.

A card vendor gives each card an ICCID and an IMSI, keys diversified from
the batch's master keys, and the applications it starts with; the MSISDN
comes later.  L{MasterKeys.profile} does that for one card, from its
numbers (L{card_numbers}) and the fleet's OTA algorithm (L{FleetAlgorithm}),
and L{fleet_registry} is the content every card starts with.  The fleet
generator (C{simfleet generate}) personalises a whole batch with it, and
tests personalise single cards with it without writing a fleet.

Numbers: ICCIDs are C{89 88211} (the prefix), an 11-digit serial and the
Luhn check digit (19 digits, as in C{examples/fleet}); IMSIs are test
network C{001 01} and a 10-digit serial; MSISDNs a prefix and a serial.
Every card key is diversified from a master key with
C{bipgw.keys.derive_card_key} (docs/keys.md section 5), so a card's keys
can be recomputed from C{secrets/master-keys.toml}.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Final

import attrs
from attrs import frozen

from bipgw.keys import CardKeyDeriver, KdfPurpose, KeyAlgorithm, Secret, psk_identity_for
from simcard.applets import CREDENTIAL_INSTANCE_AID, CREDENTIAL_MODULE_AID, CREDENTIAL_PACKAGE_AID
from simcard.fleet._errors import GenerateError
from simcard.gp import APP_SELECTABLE, ISD_AID, Application, LoadFile, Registry, default_registry
from simcard.model import (
    AdminDefaults,
    CardIdentity,
    CardProfile,
    OtaAlgorithm,
    OtaKeySet,
    PskCredential,
    Scp03Keys,
)

__all__ = [
    "CardNumbers",
    "FleetAlgorithm",
    "MasterKeys",
    "card_numbers",
    "fleet_registry",
    "luhn_digit",
]

ICCID_PREFIX: Final = "8988211"
IMSI_PREFIX: Final = "00101"
MSISDN_PREFIX: Final = "336"
MSISDN_DIGITS: Final = 11
OTA_KVN: Final = 1
SCP03_KVN: Final = 0x30
PSK_KVN: Final = 0x40


def luhn_digit(digits: str) -> str:
    """The Luhn (ISO/IEC 7812) check digit of C{digits}, as ICCIDs end with."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str(-total % 10)


@frozen
class CardNumbers:
    """The numbers of one generated card."""

    iccid: str
    imsi: str
    msisdn: str


def card_numbers(
    serial: int, *, iccid_prefix: str = ICCID_PREFIX, msisdn_prefix: str = MSISDN_PREFIX
) -> CardNumbers:
    """The ICCID, IMSI and MSISDN of card number C{serial} (from 1).

    @raise GenerateError: the serial does not fit the numbers.
    """
    body_digits = 18 - len(iccid_prefix)
    msisdn_digits = MSISDN_DIGITS - len(msisdn_prefix)
    if not 1 <= serial < 10 ** min(body_digits, 10, msisdn_digits):
        raise GenerateError(f"card serial {serial} does not fit the numbering plan")
    body = f"{iccid_prefix}{serial:0{body_digits}d}"
    return CardNumbers(
        iccid=body + luhn_digit(body),
        imsi=f"{IMSI_PREFIX}{serial:010d}",
        msisdn=f"{msisdn_prefix}{serial:0{msisdn_digits}d}",
    )


class FleetAlgorithm(enum.Enum):
    """The OTA algorithm of a generated fleet (C{--algorithm})."""

    AES = "aes"
    TDES = "3des"

    @property
    def ota(self) -> OtaAlgorithm:
        """The card model's algorithm family."""
        return OtaAlgorithm.AES if self is FleetAlgorithm.AES else OtaAlgorithm.TDES

    @property
    def key_algorithm(self) -> KeyAlgorithm:
        """What the KDF derives the OTA keys as (3DES keys get DES parity)."""
        return KeyAlgorithm.AES_128 if self is FleetAlgorithm.AES else KeyAlgorithm.DES3_2KEY

    @property
    def header(self) -> str:
        """The vendor file's C{Ota_algorithm} value."""
        return "AES" if self is FleetAlgorithm.AES else "3DES"


@frozen
class MasterKeys:
    """The fleet's master keys, one per purpose (docs/keys.md section 5)."""

    ota_kic: Secret
    ota_kid: Secret
    ota_kik: Secret
    psk: Secret
    scp03_enc: Secret
    scp03_mac: Secret
    scp03_dek: Secret

    @classmethod
    def generate(cls, random_bytes: Callable[[int], bytes]) -> MasterKeys:
        """Seven fresh 16-byte AES master keys."""
        return cls(*(Secret(random_bytes(16)) for _ in attrs.fields(cls)))

    def derivers(self) -> dict[str, CardKeyDeriver]:
        """A L{CardKeyDeriver} per master key, by field name: keep it for many L{profile}s."""
        return {a.name: CardKeyDeriver(getattr(self, a.name)) for a in attrs.fields(type(self))}

    def kinds(self) -> list[tuple[str, Secret]]:
        """(keystore kind, master key) of each master, as C{bipgw keys add-master} takes them."""
        kind = {
            "ota_kic": "ota-kic",
            "ota_kid": "ota-kid",
            "ota_kik": "ota-kik",
            "psk": "psk",
            "scp03_enc": "scp03-enc",
            "scp03_mac": "scp03-mac",
            "scp03_dek": "scp03-dek",
        }
        return [(kind[a.name], getattr(self, a.name)) for a in attrs.fields(type(self))]

    def entries(self, algorithm: FleetAlgorithm) -> list[tuple[str, str, Secret]]:
        """(name, derived key algorithm, key) for C{secrets/master-keys.toml}."""
        ota = algorithm.key_algorithm.value
        kinds = {"ota_kic": ota, "ota_kid": ota, "ota_kik": ota}
        return [
            (a.name, kinds.get(a.name, KeyAlgorithm.AES_128.value), getattr(self, a.name))
            for a in attrs.fields(type(self))
        ]

    def profile(
        self,
        numbers: CardNumbers,
        algorithm: FleetAlgorithm,
        admin: AdminDefaults,
        derivers: Mapping[str, CardKeyDeriver] | None = None,
        *,
        kdf: int = 1,
    ) -> CardProfile:
        """The personalisation of one card: its numbers and diversified keys.

        @param derivers: L{derivers}, when making many cards.
        @param kdf: the derivation (docs/keys.md section 5): 1, or 2 whose
            label binds the algorithm and the key version the card holds the
            key under (OTA 01, PSK 40, SCP03 30), as the gateway derives a
            key it has no stored copy of.
        """
        iccid = numbers.iccid
        ota = algorithm.key_algorithm
        by_name = derivers if derivers is not None else self.derivers()
        names = {id(getattr(self, a.name)): a.name for a in attrs.fields(type(self))}

        kvns = {
            KdfPurpose.OTA_KIC: OTA_KVN,
            KdfPurpose.OTA_KID: OTA_KVN,
            KdfPurpose.OTA_KIK: OTA_KVN,
            KdfPurpose.SCP81_PSK: PSK_KVN,
        }

        def derive(master: Secret, purpose: KdfPurpose, kind: KeyAlgorithm) -> bytes:
            deriver = by_name[names[id(master)]]
            if kdf == 2:
                kvn = kvns.get(purpose, SCP03_KVN)
                return deriver.derive_v2(iccid, purpose, kind, kvn).reveal()
            return deriver.derive(iccid, purpose, kind).reveal()

        aes = KeyAlgorithm.AES_128
        return CardProfile(
            CardIdentity(iccid, numbers.imsi, numbers.msisdn),
            (
                OtaKeySet(
                    OTA_KVN,
                    algorithm.ota,
                    derive(self.ota_kic, KdfPurpose.OTA_KIC, ota),
                    derive(self.ota_kid, KdfPurpose.OTA_KID, ota),
                    derive(self.ota_kik, KdfPurpose.OTA_KIK, ota),
                ),
            ),
            PskCredential(psk_identity_for(iccid), derive(self.psk, KdfPurpose.SCP81_PSK, aes)),
            (
                Scp03Keys(
                    SCP03_KVN,
                    derive(self.scp03_enc, KdfPurpose.SCP03_ENC, aes),
                    derive(self.scp03_mac, KdfPurpose.SCP03_MAC, aes),
                    derive(self.scp03_dek, KdfPurpose.SCP03_DEK, aes),
                ),
            ),
            admin,
        )


def fleet_registry() -> Registry:
    """The content every generated card starts with: the default card plus the
    credential applet, installed and selectable, so the certificate service
    works without a LOAD first."""
    registry = default_registry()
    registry.add_load_file(
        LoadFile(CREDENTIAL_PACKAGE_AID, ISD_AID, (CREDENTIAL_MODULE_AID,), b"\x01\x00")
    )
    registry.add_application(
        Application(
            CREDENTIAL_INSTANCE_AID,
            CREDENTIAL_PACKAGE_AID,
            CREDENTIAL_MODULE_AID,
            ISD_AID,
            APP_SELECTABLE,
            b"\x00\x00\x00",
            b"\xc9\x00",
        )
    )
    return registry
