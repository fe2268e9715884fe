# -*- test-case-name: tests.unit.keys.test_scp03 -*-
"""The master keys cards' SCP03 keys are diversified from.

When a card's static SCP03 keys (ENC, MAC, DEK of its ISD) are not
imported from the vendor file, they are derived from one master per
purpose and the ICCID (C{docs/keys.md} section 5), which is how the
simulated fleet personalises its cards.  Keys exist only as L{Secret}
until the codec's L{StaticKeys} (whose repr hides them too) is built;
errors name labels.
"""

from __future__ import annotations

import attrs

from bipgw.codec.scp03 import StaticKeys
from bipgw.keys._kdf import KdfPurpose, derive_card_key
from bipgw.keys._keystore import KeyKind, KeyStore
from bipgw.keys._secret import KeyAlgorithm, KeyManagementError, Secret, UnknownKeyError

__all__ = ["Scp03MasterKeys"]

_AES = (KeyAlgorithm.AES_128, KeyAlgorithm.AES_192, KeyAlgorithm.AES_256)
_KINDS = (KeyKind.MASTER_SCP03_ENC, KeyKind.MASTER_SCP03_MAC, KeyKind.MASTER_SCP03_DEK)


def _aes_only(_: object, __: object, value: KeyAlgorithm) -> None:
    if value not in _AES:
        raise ValueError(f"SCP03 keys are AES keys, not {value.value}")


@attrs.frozen
class Scp03MasterKeys:
    """The master keys cards' SCP03 keys are diversified from, one per purpose.

    @ivar algorithm: what the card keys are: AES-128 by default, as the
        simulated fleet derives them.
    """

    enc: Secret
    mac: Secret
    dek: Secret
    algorithm: KeyAlgorithm = attrs.field(default=KeyAlgorithm.AES_128, validator=_aes_only)

    def derive(self, iccid: str) -> StaticKeys:
        """The card C{iccid}'s static key set.

        @raise bipgw.keys.InvalidIccidError: C{iccid} is not an ICCID.
        """
        algorithm = self.algorithm

        def one(master: Secret, purpose: KdfPurpose) -> bytes:
            return derive_card_key(master, iccid, purpose, algorithm).reveal()

        return StaticKeys(
            one(self.enc, KdfPurpose.SCP03_ENC),
            one(self.mac, KdfPurpose.SCP03_MAC),
            one(self.dek, KdfPurpose.SCP03_DEK),
        )

    @classmethod
    def from_keystore(
        cls,
        keystore: KeyStore,
        *,
        kvn: int | None = None,
        algorithm: KeyAlgorithm = KeyAlgorithm.AES_128,
    ) -> Scp03MasterKeys:
        """The keystore's C{master-scp03-enc/mac/dek} keys.

        @param kvn: take the keys whose C{kvn} metadata is this; needed only
            when the keystore holds more than one key of a kind.
        @param algorithm: what the card keys are.  Not read from the
            entries' C{algorithm} metadata, which C{bipgw keys
            generate-master} sets from the master's own length: a 32-byte
            master still diversifies the fleet's AES-128 card keys.
        @raise bipgw.keys.UnknownKeyError: a kind has no key (of that version).
        @raise bipgw.keys.KeyManagementError: a kind has several and C{kvn}
            does not choose one.
        @raise ValueError: C{algorithm} is not AES.
        """
        enc, mac, dek = (keystore.get(_one_label(keystore, kind, kvn)) for kind in _KINDS)
        return cls(enc, mac, dek, algorithm)


def _one_label(keystore: KeyStore, kind: KeyKind, kvn: int | None) -> str:
    labels = keystore.labels(kind)
    if kvn is not None:
        labels = [label for label in labels if keystore.info(label).meta.get("kvn") == kvn]
    version = "" if kvn is None else f" for key version {kvn}"
    if not labels:
        raise UnknownKeyError(f"the keystore has no {kind.value} key{version}")
    if len(labels) > 1:
        raise KeyManagementError(
            f"the keystore has {len(labels)} {kind.value} keys{version}"
            f" ({', '.join(labels)}); say which key version to use"
        )
    return labels[0]
