# -*- test-case-name: tests.unit.store.test_sealing -*-
"""Per-card keys in and out of their stored form.

L{seal_card_key} is the one way to make a L{CardKey}: it seals the key
under the root key with the documented label (L{card_key_label}) and
computes its fingerprint, so every writer (the vendor-file importer, a
diversification job) stores keys the same way.  L{open_card_key} is the
way back, for the code that needs the key itself (the push builder, the
SCP81 PSK lookup).

The fingerprint is HMAC-SHA256(K, label || 00 || key), K =
C{root.subkey(b"bipgw card key fingerprint v1")}.  It lets the store see
that a re-imported key is the one it has, without unsealing anything; it
says nothing about the key to someone without the root key.  Rotating the
root key means recomputing fingerprints along with re-sealing.
"""

from __future__ import annotations

import hmac

from bipgw.keys import RootKey, Secret, seal, unseal
from bipgw.store._types import CardKey, KeyPurpose, card_key_label

#: The HKDF info string of the fingerprint key (docs/file-formats.md).
FINGERPRINT_INFO = b"bipgw card key fingerprint v1"


def card_key_fingerprint(root: RootKey, label: str, key: Secret) -> bytes:
    """The fingerprint of C{key} stored under C{label} (32 bytes)."""
    message = label.encode("utf-8") + b"\x00" + key.reveal()
    return hmac.new(root.subkey(FINGERPRINT_INFO).reveal(), message, "sha256").digest()


def seal_card_key(
    root: RootKey,
    iccid: str,
    purpose: KeyPurpose | str,
    kvn: int,
    algorithm: str,
    key: Secret,
) -> CardKey:
    """A L{CardKey} holding C{key} sealed under C{root}, ready to store."""
    label = card_key_label(iccid, purpose, kvn)
    return CardKey(
        iccid=iccid,
        purpose=KeyPurpose(purpose),
        kvn=kvn,
        algorithm=algorithm,
        sealed=seal(root, label, key),
        fingerprint=card_key_fingerprint(root, label, key),
    )


def open_card_key(root: RootKey, key: CardKey) -> Secret:
    """The key a L{CardKey} holds.

    @raise bipgw.keys.IntegrityError: if the blob was altered or copied from
        another card or purpose (the label does not match).
    @raise bipgw.keys.WrongRootKeyError: if it was sealed under another root key.
    """
    return unseal(root, key.label, key.sealed)
