# -*- test-case-name: tests.unit.app.test_card_keys -*-
"""Where the running gateway's card keys come from, as the configuration says.

L{card_key_source} builds the one L{bipgw.store.CardKeySource} the key
cache, the SCP03 relay and key rotations share, from the keystore's master
keys and the C{[services.NAME]} tables (L{derived_key_specs}):

  - every key a service uses (the OTA KIc and KID of its C{kic}/C{kid} key
    version, the SCP81 PSK of its C{kvn}, the SCP03 set C{30} with
    C{secure_apdus}) is derived for a card whose store has no key of that
    purpose, when the keystore has a master for it (a vendor file without
    that column);
  - with C{derived_keys = true} those keys are derived whatever the store
    holds, and a missing master stops the gateway at start, naming it.
"""

from __future__ import annotations

from bipgw.codec.ota import KicAlgorithm, KidAlgorithm
from bipgw.config import Config, ServiceSection
from bipgw.keys import IRootKeys, KeyAlgorithm, KeyStore, MasterKeyRing
from bipgw.store import (
    CardKeySource,
    DerivedKeySpec,
    IStore,
    KeyPurpose,
    card_key_versions_for,
)

__all__ = ["SCP03_KVN", "card_key_source", "derived_key_specs"]

#: The SCP03 key set a card's ISD opens its secure channel with (GP: 30).
SCP03_KVN = 0x30

_KIC = {
    KicAlgorithm.AES_CBC: KeyAlgorithm.AES_128,
    KicAlgorithm.TDES_2KEY: KeyAlgorithm.DES3_2KEY,
    KicAlgorithm.TDES_3KEY: KeyAlgorithm.DES3_3KEY,
}
_KID = {
    KidAlgorithm.AES_CMAC: KeyAlgorithm.AES_128,
    KidAlgorithm.TDES_2KEY: KeyAlgorithm.DES3_2KEY,
    KidAlgorithm.TDES_3KEY: KeyAlgorithm.DES3_3KEY,
}


def _service_specs(service: ServiceSection) -> list[DerivedKeySpec]:
    forced = service.derived_keys
    specs = [DerivedKeySpec(KeyPurpose.PSK, service.kvn, KeyAlgorithm.AES_128, forced)]
    kic = _KIC.get(service.kic.algorithm)
    if kic is not None:
        specs.append(DerivedKeySpec(KeyPurpose.KIC, service.kic.key_index, kic, forced))
    kid = _KID.get(service.kid.algorithm)
    if kid is not None:
        specs.append(DerivedKeySpec(KeyPurpose.KID, service.kid.key_index, kid, forced))
    for purpose in (KeyPurpose.SCP03_ENC, KeyPurpose.SCP03_MAC, KeyPurpose.SCP03_DEK):
        specs.append(
            DerivedKeySpec(
                purpose, SCP03_KVN, KeyAlgorithm.AES_128, forced and service.secure_apdus
            )
        )
    return specs


def derived_key_specs(config: Config) -> list[DerivedKeySpec]:
    """The keys the services want derived (module docstring): one spec per
    purpose and key version, forced when any service with C{derived_keys}
    uses it."""
    chosen: dict[tuple[KeyPurpose, int], DerivedKeySpec] = {}
    for service in config.services.values():
        for spec in _service_specs(service):
            key = (spec.purpose, spec.kvn)
            if key not in chosen or (spec.forced and not chosen[key].forced):
                chosen[key] = spec
    return list(chosen.values())


def card_key_source(
    config: Config, store: IStore, root: IRootKeys, keystore: KeyStore
) -> CardKeySource:
    """The gateway's card key source (module docstring).

    @raise bipgw.keys.UnknownKeyError: a service wants derived keys and the
        keystore has no master for one of them.
    """
    source = CardKeySource(
        store,
        root,
        masters=MasterKeyRing.from_keystore(keystore),
        versions=card_key_versions_for(store),
        wanted=derived_key_specs(config),
    )
    source.check()
    return source
