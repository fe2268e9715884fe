# -*- test-case-name: tests.unit.keys.test_kdf -*-
"""Per-card key diversification: one master key, one ICCID, one card key.

A fleet of cards either arrives with its keys in a vendor output file, or its
keys are I{diversified}: computed from a master key held by the gateway and
the card's ICCID, so the gateway stores one key per purpose instead of one
per card.  The simulated fleet personalises its cards with the same function,
reimplemented from C{docs/keys.md}; the exact construction is documented there
and pinned by test vectors, so any third party can reproduce it.

The KDF is NIST SP 800-108 in counter mode with AES-CMAC as PRF (the
construction GlobalPlatform SCP03 also builds on): a standard, reviewed
function, available in every crypto library and in card operating systems.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Protocol

from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC

from bipgw.keys._secret import InvalidIccidError, InvalidKeyError, KeyAlgorithm, Secret

#: Bytes of the SP 800-108 counter [i] (big-endian), placed before the fixed input.
COUNTER_BYTES = 4
#: Bytes of the SP 800-108 length field [L] (big-endian, the output length in bits).
LENGTH_BYTES = 4
#: The start of every derivation v2 label (docs/keys.md section 5.2).
V2_PREFIX = "bipgw/2/"
#: Accepted ICCID lengths, in digits, after removing F filler.
ICCID_DIGITS = (18, 19, 20)


class KdfPurpose(Enum):
    """What a diversified key is for; the value is the SP 800-108 I{Label}.

    Distinct labels make the keys for different purposes independent even
    when derived from the same master key and ICCID.
    """

    OTA_KIC = b"bipgw OTA KIc"
    OTA_KID = b"bipgw OTA KID"
    OTA_KIK = b"bipgw OTA KIK"
    SCP81_PSK = b"bipgw SCP81 PSK"
    SCP81_DEK = b"bipgw SCP81 DEK"
    SCP03_ENC = b"bipgw SCP03 ENC"
    SCP03_MAC = b"bipgw SCP03 MAC"
    SCP03_DEK = b"bipgw SCP03 DEK"

    @property
    def label(self) -> bytes:
        """The SP 800-108 Label bytes of derivation v1 (ASCII)."""
        value: bytes = self.value
        return value

    @property
    def token(self) -> str:
        """The purpose's name in a derivation v2 label (C{OTA-KIC}, C{SCP81-PSK} ...)."""
        return self.name.replace("_", "-")

    def label_v2(self, algorithm: KeyAlgorithm, kvn: int) -> bytes:
        """The SP 800-108 Label of derivation v2: purpose, algorithm and key version.

        C{bipgw/2/<purpose>/<algorithm>/<KVN>}, ASCII, the KVN as two upper
        case hex digits (the key version the card holds the key under), e.g.
        C{bipgw/2/OTA-KIC/aes-128/01}.  No field contains C{/}, so the
        label is unambiguous.
        """
        if type(kvn) is not int or not 0 <= kvn <= 0xFF:
            raise InvalidKeyError(f"a key version is 0 to 255, not {kvn!r}")
        return f"{V2_PREFIX}{self.token}/{KeyAlgorithm(algorithm).value}/{kvn:02X}".encode()


def normalise_iccid(iccid: str) -> str:
    """The canonical form of an ICCID: its decimal digits, without F filler.

    EF_ICCID stores the ICCID in BCD padded with C{F} nibbles, so a 19-digit
    ICCID often appears as 20 characters ending in C{F}; surrounding white
    space and trailing C{F}/C{f} are removed.  What remains must be 18 to 20
    ASCII digits.  The Luhn check digit is deliberately I{not} verified: 20
    digit ICCIDs and test ranges exist without a valid one, and refusing a
    card here would make its keys underivable rather than catch a typo (the
    importer, which sees the whole record, is the place for that check).

    @raise InvalidIccidError: naming the ICCID (an identifier, not a secret).
    """
    if not isinstance(iccid, str):
        raise InvalidIccidError(f"an ICCID is text, not {type(iccid).__name__}")
    digits = iccid.strip().rstrip("Ff")
    if digits.isascii() and digits.isdigit() and len(digits) in ICCID_DIGITS:
        return digits
    shown = repr(iccid) if len(iccid) <= 32 else repr(iccid[:32]) + "..."
    if not (digits.isascii() and digits.isdigit()):
        raise InvalidIccidError(f"ICCID {shown} must contain only decimal digits (and F filler)")
    raise InvalidIccidError(f"ICCID {shown} has {len(digits)} digits; an ICCID has 18 to 20")


def psk_identity_for(iccid: str) -> bytes:
    """The TLS-PSK identity a card presents on its SCP81 channel.

    By convention the identity is the normalised ICCID as ASCII digits
    (e.g. C{b"8988211000000000018"}): unique per card, known to the card
    without extra personalisation, readable in traces, and it lets the
    gateway find the card (and its PSK) from the TLS handshake alone.
    """
    return normalise_iccid(iccid).encode("ascii")


def set_des_parity(key: bytes) -> bytes:
    """C{key} with each byte's least significant bit set for odd parity.

    DES ignores those bits, but cards, HSMs and C{PUT KEY} implementations
    may reject a DES key whose bytes do not have odd parity.
    """
    out = bytearray(key)
    for i, byte in enumerate(out):
        high = byte & 0xFE
        out[i] = high | ((high.bit_count() + 1) & 1)
    return bytes(out)


def has_des_parity(key: bytes) -> bool:
    """C{True} if every byte of C{key} has an odd number of one bits."""
    return all(byte.bit_count() % 2 == 1 for byte in key)


def derive_card_key(
    master: Secret, iccid: str, purpose: KdfPurpose, algorithm: KeyAlgorithm
) -> Secret:
    """Diversify a per-card key from a master key and the card's ICCID.

    SP 800-108 counter mode, PRF AES-CMAC keyed with C{master}:
    C{K(i) = CMAC(master, [i]_32 || Label || 00 || Context || [L]_32)}, with
    C{Label = purpose.label}, C{Context} = the normalised ICCID in ASCII and
    C{L} the output length in bits; the key is the first
    C{algorithm.key_length} bytes of C{K(1) || K(2)}.  For Triple-DES
    algorithms the parity bits are then set (odd parity).

    @param master: an AES key (16, 24 or 32 bytes), whatever the algorithm of
        the derived key: the PRF is AES-CMAC.
    @raise InvalidKeyError: if C{master} is not an AES key size.
    @raise InvalidIccidError: if C{iccid} is not an ICCID.
    """
    if len(master) not in (16, 24, 32):
        raise InvalidKeyError(
            f"a master key for {purpose.label.decode()} is an AES key of 16, 24 or 32"
            f" bytes, got {len(master)}"
        )
    return CardKeyDeriver(master).derive(iccid, purpose, algorithm)


def derive_card_key_v2(
    master: Secret, iccid: str, purpose: KdfPurpose, algorithm: KeyAlgorithm, kvn: int
) -> Secret:
    """Derivation v2: as L{derive_card_key}, with a label that binds the
    purpose, the algorithm and the key version (L{KdfPurpose.label_v2}).

    One master key per purpose then serves every key version and algorithm:
    the keys of versions 1 and 2, or an AES and a 3DES key, are independent.

    @raise InvalidKeyError: C{master} is not an AES key size, or C{kvn} is
        not 0 to 255.
    @raise InvalidIccidError: C{iccid} is not an ICCID.
    """
    return CardKeyDeriver(master).derive_v2(iccid, purpose, algorithm, kvn)


class ICardKeyDeriver(Protocol):
    """What derives card keys from one master key, wherever the master is.

    L{CardKeyDeriver} holds the master in memory (the keystore's);
    L{bipgw.keys.Pkcs11MasterKeys} runs the PRF in a PKCS#11 token, where
    the master never leaves.  Both give the same key for the same master
    bytes (C{docs/keys.md} sections 5.2 and 5.3).
    """

    def derive(self, iccid: str, purpose: KdfPurpose, algorithm: KeyAlgorithm) -> Secret:
        """Derivation v1 (L{derive_card_key})."""

    def derive_v2(
        self, iccid: str, purpose: KdfPurpose, algorithm: KeyAlgorithm, kvn: int
    ) -> Secret:
        """Derivation v2 (L{derive_card_key_v2})."""


def counter_mode_key(
    prf: Callable[[bytes], bytes], label: bytes, iccid: str, algorithm: KeyAlgorithm
) -> Secret:
    """A card key by SP 800-108 counter mode over C{prf}, wherever the PRF runs.

    C{K(i) = prf([i]_32 || Label || 00 || Context || [L]_32)} for i = 1, 2 ...
    until there are enough bytes; the key is the first
    C{algorithm.key_length} of them, with DES parity set for 3DES.
    """
    context = normalise_iccid(iccid).encode("ascii")
    fixed = label + b"\x00" + context + (8 * algorithm.key_length).to_bytes(LENGTH_BYTES, "big")
    out = b""
    counter = 1
    while len(out) < algorithm.key_length:
        out += prf(counter.to_bytes(COUNTER_BYTES, "big") + fixed)
        counter += 1
    key = out[: algorithm.key_length]
    return Secret(set_des_parity(key) if algorithm.is_des else key)


class CardKeyDeriver:
    """L{derive_card_key} for many cards under one master key.

    The AES-CMAC key schedule is done once and copied for each block, which
    makes a derivation about ten times cheaper than building a KBKDF object
    per key (C{simfleet generate --cards 1000000} derives seven million).
    The output is exactly L{derive_card_key}'s: SP 800-108 counter mode, the
    counter and the length 32-bit big-endian, the counter first.
    """

    def __init__(self, master: Secret) -> None:
        if len(master) not in (16, 24, 32):
            raise InvalidKeyError(
                f"a master key is an AES key of 16, 24 or 32 bytes, got {len(master)}"
            )
        self._cmac = CMAC(algorithms.AES(master.reveal()))

    def derive(self, iccid: str, purpose: KdfPurpose, algorithm: KeyAlgorithm) -> Secret:
        """See L{derive_card_key}."""
        return self._derive(purpose.label, iccid, algorithm)

    def derive_v2(
        self, iccid: str, purpose: KdfPurpose, algorithm: KeyAlgorithm, kvn: int
    ) -> Secret:
        """See L{derive_card_key_v2}."""
        return self._derive(purpose.label_v2(algorithm, kvn), iccid, algorithm)

    def _derive(self, label: bytes, iccid: str, algorithm: KeyAlgorithm) -> Secret:
        return counter_mode_key(self._cmac_of, label, iccid, algorithm)

    def _cmac_of(self, data: bytes) -> bytes:
        block = self._cmac.copy()
        block.update(data)
        return block.finalize()
