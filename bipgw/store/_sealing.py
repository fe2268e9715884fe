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

from bipgw.keys import IRootKeys, Secret, unseal
from bipgw.store._types import CardKey, KeyPurpose

#: The HKDF info string of the fingerprint key (docs/file-formats.md).
FINGERPRINT_INFO = b"bipgw card key fingerprint v1"


def card_key_fingerprint(root: IRootKeys, label: str, key: Secret) -> bytes:
    """The fingerprint of C{key} stored under C{label} (32 bytes)."""
    return CardKeySealer(root).fingerprint(label, key)


def seal_card_key(
    root: IRootKeys,
    iccid: str,
    purpose: KeyPurpose | str,
    kvn: int,
    algorithm: str,
    key: Secret,
) -> CardKey:
    """A L{CardKey} holding C{key} sealed under C{root}, ready to store."""
    return CardKeySealer(root).seal(iccid, purpose, kvn, algorithm, key)


class CardKeySealer:
    """L{seal_card_key} for many keys: the root key's derivations done once.

    Deriving the sealing key, the root key id and the fingerprint key costs
    three HKDFs, more than sealing itself; an importer keeps one of these
    for the whole file.  The output is exactly L{seal_card_key}'s.
    """

    def __init__(self, root: IRootKeys, *, nonces: int = 1) -> None:
        """@param nonces: see L{Sealer} (one thread at a time)."""
        self._root = root
        self._sealer = root.batch_sealer(nonces)

    @property
    def key_id(self) -> str:
        """The root key id the keys (and their fingerprints) are sealed under."""
        return self._sealer.key_id

    def fingerprint(self, label: str, key: Secret) -> bytes:
        """See L{card_key_fingerprint} (under the sealer's root key)."""
        data = label.encode("utf-8") + b"\x00" + key.reveal()
        return self._root.mac(FINGERPRINT_INFO, data, self._sealer.key_id)

    def seal(
        self, iccid: str, purpose: KeyPurpose | str, kvn: int, algorithm: str, key: Secret
    ) -> CardKey:
        """See L{seal_card_key}."""
        purpose = KeyPurpose(purpose)
        label = f"card:{iccid}:{purpose.value}{kvn}"  # card_key_label, without its checks
        return CardKey(
            iccid=iccid,
            purpose=purpose,
            kvn=kvn,
            algorithm=algorithm,
            sealed=self._sealer.seal(label, key),
            fingerprint=self.fingerprint(label, key),
        )


def open_card_key(root: IRootKeys, key: CardKey) -> Secret:
    """The key a L{CardKey} holds.

    @raise bipgw.keys.IntegrityError: if the blob was altered or copied from
        another card or purpose (the label does not match).
    @raise bipgw.keys.WrongRootKeyError: if it was sealed under another root key.
    """
    return unseal(root, key.label, key.sealed)
