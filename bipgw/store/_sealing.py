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

import functools
import hmac
from collections.abc import Callable

from bipgw.keys import FileRootKeyRing, IRootKeys, ISealer, RootKey, Sealer, Secret, unseal
from bipgw.store._types import CardKey, KeyPurpose, bulk_card_key

#: A root key's id, its sealing key and its fingerprint key (L{BulkSealer.derived_keys}).
DerivedKeys = tuple[str, bytes, bytes]

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


class BulkSealer:
    """L{CardKeySealer} for the bulk import: clear key bytes in, L{CardKey} out, nothing re-checked.

    The importer has checked the ICCID (normalised digits), the purpose and
    key version (from the file's columns) and the key's length; a million
    cards make four million keys, and the per-key checks, the L{Secret}
    wrapper and attrs' validators cost more than AES-GCM and the HMAC.
    The output is exactly L{CardKeySealer.seal}'s.
    """

    def __init__(self, root: IRootKeys, *, nonces: int = 1024) -> None:
        keys = self.derived_keys(root)
        if keys is not None:
            # A file root key: HMAC with the derived key straight away, not
            # through root.mac's per-call key id check (2 us a key).
            self._from_derived(keys, nonces)
            return
        self._sealer: ISealer = root.batch_sealer(nonces)
        self._key_id = self._sealer.key_id
        self._mac: Callable[[bytes], bytes] = functools.partial(
            root.mac, FINGERPRINT_INFO, key_id=self._key_id
        )
        # A file root key's sealer takes labels it need not check again; a
        # token's seals through the token, label checks and all.
        self._fast = self._sealer if isinstance(self._sealer, Sealer) else None

    @classmethod
    def from_derived(cls, keys: DerivedKeys, *, nonces: int = 1024) -> BulkSealer:
        """A sealer from the two derived keys alone (L{derived_keys}): a worker process's.

        Same output as C{BulkSealer(root)} for the root key they came from.
        """
        sealer = cls.__new__(cls)
        sealer._from_derived(keys, nonces)
        return sealer

    def _from_derived(self, keys: DerivedKeys, nonces: int) -> None:
        key_id, seal_key, fingerprint_key = keys
        self._fast = Sealer.from_seal_key(key_id, seal_key, nonces=nonces)
        self._sealer = self._fast
        self._key_id = key_id
        self._mac = functools.partial(hmac.digest, fingerprint_key, digest="sha256")

    @staticmethod
    def derived_keys(root: IRootKeys) -> DerivedKeys | None:
        """What L{from_derived} needs to seal as C{BulkSealer(root)} does, if C{root} is a file key.

        The sealing key and the fingerprint key (HKDF outputs), never the
        root key itself; C{None} for a root key in a token (it never leaves it).
        """
        if isinstance(root, FileRootKeyRing):
            root.refresh()
            root = root._sealing()  # the key batch_sealer seals under
        if not isinstance(root, RootKey):
            return None
        fingerprint_key = root.subkey(FINGERPRINT_INFO).reveal()
        return root.key_id, root.seal_key().reveal(), fingerprint_key

    def seal(
        self, iccid: str, purpose: KeyPurpose, kvn: int, algorithm: str, stem: str, key: bytes
    ) -> CardKey:
        """C{key} sealed for card C{iccid}; C{stem} is C{purpose.value + str(kvn)}."""
        sealed, fingerprint = self.seal_parts(iccid, stem, key)
        return bulk_card_key(iccid, purpose, kvn, algorithm, sealed, fingerprint)

    def seal_parts(self, iccid: str, stem: str, key: bytes) -> tuple[bytes, bytes]:
        """L{seal}'s sealed blob and fingerprint, without the L{CardKey} around them."""
        label = f"card:{iccid}:{stem}"
        ad_label = label.encode("ascii")
        fingerprint = self._mac(ad_label + b"\x00" + key)
        if self._fast is not None:
            return self._fast.seal_checked(ad_label, key), fingerprint
        return self._sealer.seal(label, key), fingerprint


def open_card_key(root: IRootKeys, key: CardKey) -> Secret:
    """The key a L{CardKey} holds.

    @raise bipgw.keys.IntegrityError: if the blob was altered or copied from
        another card or purpose (the label does not match).
    @raise bipgw.keys.WrongRootKeyError: if it was sealed under another root key.
    """
    return unseal(root, key.label, key.sealed)
