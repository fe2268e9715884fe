# -*- test-case-name: tests.unit.keys.test_masters -*-
"""The keystore's master keys, as the running gateway derives card keys from them.

C{bipgw keys generate-master} (or C{add-master}) puts one master key per
purpose in the keystore; L{MasterKeyRing} reads them once and derives a
card's key for a purpose, algorithm and key version when asked
(C{docs/keys.md} section 5):

  - a master whose metadata says C{kdf = 2} (what C{generate-master} and
    C{add-master} write) serves every key version, with derivation v2
    (L{derive_card_key_v2}: the label binds purpose, algorithm and
    version);
  - a master without C{kdf} (made before derivation v2), or with C{kdf =
    1}, is a v1 master: it serves the key version its C{kvn} metadata
    names (or any, when it is the purpose's only v1 master), with
    L{derive_card_key}, so keys already in the field keep their value.

Key bytes exist only as L{Secret}; errors name kinds and labels.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final

import attrs

from bipgw.keys._kdf import CardKeyDeriver, KdfPurpose
from bipgw.keys._keystore import KeyKind, KeyStore
from bipgw.keys._secret import KeyAlgorithm, Secret, UnknownKeyError

__all__ = ["KIND_OF_PURPOSE", "MasterKey", "MasterKeyRing"]

KIND_OF_PURPOSE: Final[Mapping[KdfPurpose, KeyKind]] = MappingProxyType(
    {
        KdfPurpose.OTA_KIC: KeyKind.MASTER_OTA_KIC,
        KdfPurpose.OTA_KID: KeyKind.MASTER_OTA_KID,
        KdfPurpose.OTA_KIK: KeyKind.MASTER_OTA_KIK,
        KdfPurpose.SCP81_PSK: KeyKind.MASTER_PSK,
        KdfPurpose.SCP81_DEK: KeyKind.MASTER_PSK_DEK,
        KdfPurpose.SCP03_ENC: KeyKind.MASTER_SCP03_ENC,
        KdfPurpose.SCP03_MAC: KeyKind.MASTER_SCP03_MAC,
        KdfPurpose.SCP03_DEK: KeyKind.MASTER_SCP03_DEK,
    }
)
"""The keystore kind of the master each purpose is derived from."""


@attrs.frozen
class MasterKey:
    """One master key: its label, derivation version and (v1) key version."""

    label: str
    kdf: int
    kvn: int | None
    deriver: CardKeyDeriver = attrs.field(repr=False, eq=False)

    def derive(self, iccid: str, purpose: KdfPurpose, algorithm: KeyAlgorithm, kvn: int) -> Secret:
        """The card key; v1 ignores C{kvn} (the caller chose this master by it)."""
        if self.kdf == 2:
            return self.deriver.derive_v2(iccid, purpose, algorithm, kvn)
        return self.deriver.derive(iccid, purpose, algorithm)


class MasterKeyRing:
    """Every master key of a keystore, by purpose, ready to derive card keys."""

    def __init__(self, masters: Iterable[tuple[KdfPurpose, MasterKey]] = ()) -> None:
        self._by_purpose: dict[KdfPurpose, list[MasterKey]] = {}
        for purpose, master in masters:
            self._by_purpose.setdefault(purpose, []).append(master)

    @classmethod
    def from_keystore(cls, keystore: KeyStore) -> MasterKeyRing:
        """The keystore's master keys (read and opened now).

        @raise bipgw.keys.KeyManagementError: an entry does not open.
        """
        found: list[tuple[KdfPurpose, MasterKey]] = []
        for purpose, kind in KIND_OF_PURPOSE.items():
            for label in keystore.labels(kind):
                info = keystore.info(label)
                kdf = info.meta.get("kdf")
                kvn = info.meta.get("kvn")
                master = MasterKey(
                    label,
                    2 if kdf == 2 else 1,
                    kvn if isinstance(kvn, int) and not isinstance(kvn, bool) else None,
                    CardKeyDeriver(keystore.get(label)),
                )
                found.append((purpose, master))
        return cls(found)

    def __repr__(self) -> str:
        held = ", ".join(
            f"{p.token}: {', '.join(m.label for m in ms)}" for p, ms in self._by_purpose.items()
        )
        return f"<MasterKeyRing {held or 'empty'}>"

    def master_for(self, purpose: KdfPurpose, kvn: int) -> MasterKey | None:
        """The master that derives C{purpose} keys of version C{kvn}, if any.

        A v2 master serves every version; otherwise the v1 master whose
        C{kvn} is C{kvn}, or else the only v1 master of the purpose (as
        before derivation v2, when one master per kind served its cards).
        """
        masters = self._by_purpose.get(purpose, [])
        for master in masters:
            if master.kdf == 2:
                return master
        v1 = [m for m in masters if m.kdf == 1]
        for master in v1:
            if master.kvn == kvn:
                return master
        if len(v1) == 1:
            return v1[0]
        return None

    def has(self, purpose: KdfPurpose) -> bool:
        """Whether a master for C{purpose} is held (of any version)."""
        return bool(self._by_purpose.get(purpose))

    def derive(
        self, iccid: str, purpose: KdfPurpose, algorithm: KeyAlgorithm, kvn: int
    ) -> Secret | None:
        """The card C{iccid}'s key for C{purpose}, C{algorithm} and key version
        C{kvn}, or C{None} when no master serves it.

        @raise bipgw.keys.InvalidIccidError: C{iccid} is not an ICCID.
        """
        master = self.master_for(purpose, kvn)
        return None if master is None else master.derive(iccid, purpose, algorithm, kvn)

    def require(self, iccid: str, purpose: KdfPurpose, algorithm: KeyAlgorithm, kvn: int) -> Secret:
        """L{derive}, or L{UnknownKeyError} naming the missing master kind."""
        key = self.derive(iccid, purpose, algorithm, kvn)
        if key is None:
            kind = KIND_OF_PURPOSE[purpose].value
            raise UnknownKeyError(
                f"no {kind} master key serves key version {kvn:02X}"
                f" (bipgw keys generate-master {kind.removeprefix('master-')} ...)"
            )
        return key
