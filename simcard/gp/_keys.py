# -*- test-case-name: tests.unit.simcard.test_processor_keys -*-
"""PUT KEY and DELETE [key]: the ISD's key management (GP 2.3.1 11.8, 11.2).

Key families by key version number (KVN):

  - C{01}-C{0F}: SCP80 (OTA) key sets; KID 1 KIc, 2 KID, 3 KIK; key type
    C{80} (3DES) or C{88} (AES), one type per set;
  - C{30}-C{3F}: SCP03 key sets; KID 1 ENC, 2 MAC, 3 DEK; type C{88};
  - C{40}-C{4F}: the SCP81 TLS-PSK; KID 1; type C{85} (16, 24 or 32 bytes).
    The card holds one PSK: adding a second version answers C{6A84}.  The
    PSK identity is kept; a card that had none gets the ICCID as ASCII
    digits (the identity convention of docs/architecture.md).

PUT KEY data: the new KVN, then per key C{type, L, key component block,
L, KCV}.  The key component block is encrypted under the static DEK of
the SCP03 key set of the current secure channel session - or of the
card's default SCP03 set when no session is open - with AES-CBC and a zero
IV.  As GP 2.3.1 Tables 11-70/71 say, a block whose length is not a
multiple of 16 starts with the key's length in clear, then the padded key
encrypted; otherwise it is the encrypted key alone.  A KCV (3 bytes) is
checked when given (C{6982} on mismatch): AES-ECB of sixteen C{01} bytes for
AES and PSK keys, 3DES-ECB of eight C{00} bytes for DES keys.

Key sets change as a whole: adding a set (P1 C{00}) or moving keys to a new
KVN needs all of its keys; replacing keys under the same KVN may give only
some.  The answer is the new KVN followed by each key's KCV.

DELETE [key]: C{D2 KVN} deletes a whole set; C{D0 KID} (with or without
C{D2}) deletes that key, which is only possible for the PSK and for an
OTA KIK - removing one key of an SCP03 or the KIc/KID of an OTA set would
leave a set that cannot work, so it answers C{6985}.
"""

from __future__ import annotations

import attrs
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bipgw.codec.apdu import CommandApdu, ResponseApdu
from bipgw.codec.tlv import BerTlv
from simcard.gp._constants import KEY_TYPE_AES, KEY_TYPE_DES, KEY_TYPE_PSK
from simcard.gp._context import OK_00, IsdState
from simcard.gp._errors import GpError
from simcard.model import (
    OTA_KVN_RANGE,
    PSK_KVN_RANGE,
    SCP03_KVN_RANGE,
    CardProfile,
    OtaAlgorithm,
    OtaKeySet,
    ProfileError,
    PskCredential,
    Scp03Keys,
)

try:  # cryptography >= 43 keeps 3DES here
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # pragma: no cover - older cryptography
    from cryptography.hazmat.primitives.ciphers.algorithms import TripleDES

__all__ = ["delete_keys", "kcv", "put_key"]

_OTA, _SCP03, _PSK = "OTA", "SCP03", "PSK"


def kcv(key_type: int, key: bytes) -> bytes:
    """The GP key check value (3 bytes) of C{key}."""
    if key_type == KEY_TYPE_DES:
        # Two-key 3DES as three-key (K1 K2 K1): same cipher, no deprecation.
        full = key + key[:8] if len(key) == 16 else key
        enc = Cipher(TripleDES(full), modes.ECB()).encryptor()
        return (enc.update(b"\x00" * 8) + enc.finalize())[:3]
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return (enc.update(b"\x01" * 16) + enc.finalize())[:3]


def _family(kvn: int) -> str:
    if kvn in OTA_KVN_RANGE:
        return _OTA
    if kvn in SCP03_KVN_RANGE:
        return _SCP03
    if kvn in PSK_KVN_RANGE:
        return _PSK
    raise GpError(0x6A80, f"key version {kvn:02X} belongs to no key family of this card")


def _dek(st: IsdState) -> bytes:
    sc = st.secure_channel
    kvn = sc.key_version if sc is not None and sc.is_active else None
    keys = st.profile.scp03_key_set(kvn or 0)
    if keys is None:
        raise GpError(0x6985, "no SCP03 key set to decrypt keys with")
    return keys.dek


def _decrypt(dek: bytes, block: bytes) -> bytes:
    if len(block) % 16:
        size, block = block[0], block[1:]
        if not block or len(block) % 16 or size > len(block):
            raise GpError(0x6A80, "key component block has a bad length")
    else:
        size = len(block)
    if not block:
        raise GpError(0x6A80, "empty key component block")
    dec = Cipher(algorithms.AES(dek), modes.CBC(b"\x00" * 16)).decryptor()
    return (dec.update(block) + dec.finalize())[:size]


def _parse(data: bytes) -> list[tuple[int, bytes, bytes]]:
    keys, pos = [], 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise GpError(0x6A80, "key block truncated")
        key_type, size = data[pos], data[pos + 1]
        block = data[pos + 2 : pos + 2 + size]
        pos += 2 + size
        if len(block) != size or pos >= len(data):
            raise GpError(0x6A80, "key block truncated")
        check_size = data[pos]
        check = data[pos + 1 : pos + 1 + check_size]
        pos += 1 + check_size
        if len(check) != check_size or check_size not in (0, 3):
            raise GpError(0x6A80, "key check value must be 0 or 3 bytes")
        if key_type == 0xFF:
            raise GpError(0x6A80, "extended key format not supported")
        keys.append((key_type, block, check))
    return keys


_RULES: dict[str, tuple[frozenset[int], frozenset[int], frozenset[int]]] = {
    # family: (key types, KIDs, KIDs required for a whole set)
    _OTA: (frozenset({KEY_TYPE_DES, KEY_TYPE_AES}), frozenset({1, 2, 3}), frozenset({1, 2})),
    _SCP03: (frozenset({KEY_TYPE_AES}), frozenset({1, 2, 3}), frozenset({1, 2, 3})),
    _PSK: (frozenset({KEY_TYPE_PSK}), frozenset({1}), frozenset({1})),
}


def _existing(profile: CardProfile, family: str, kvn: int) -> dict[int, tuple[int, bytes]]:
    """The keys of set C{kvn} as KID -> (type, value); empty if absent."""
    if family == _OTA:
        ota = profile.ota_key_set(kvn)
        if ota is None:
            return {}
        t = ota.algorithm.gp_key_type
        found = {1: (t, ota.kic), 2: (t, ota.kid)}
        if ota.kik:
            found[3] = (t, ota.kik)
        return found
    if family == _SCP03:
        scp = profile.scp03_key_set(kvn) if kvn else None
        if scp is None:
            return {}
        return {1: (KEY_TYPE_AES, scp.enc), 2: (KEY_TYPE_AES, scp.mac), 3: (KEY_TYPE_AES, scp.dek)}
    psk = profile.psk
    if psk is None or psk.kvn != kvn:
        return {}
    return {1: (KEY_TYPE_PSK, psk.key)}


def _without(profile: CardProfile, family: str, kvn: int) -> CardProfile:
    if family == _OTA:
        kept = tuple(k for k in profile.ota_key_sets if k.kvn != kvn)
        return attrs.evolve(profile, ota_key_sets=kept)
    if family == _SCP03:
        return attrs.evolve(profile, scp03=tuple(k for k in profile.scp03 if k.kvn != kvn))
    return attrs.evolve(profile, psk=None)


def _with(
    profile: CardProfile, family: str, kvn: int, keys: dict[int, tuple[int, bytes]]
) -> CardProfile:
    """C{profile} with set C{kvn} built from C{keys} (in place if it exists)."""
    try:
        if family == _OTA:
            types = {t for t, _ in keys.values()}
            if len(types) != 1:
                raise GpError(0x6A80, "an OTA key set uses one key type")
            algo = OtaAlgorithm.AES if types == {KEY_TYPE_AES} else OtaAlgorithm.TDES
            new_ota = OtaKeySet(kvn, algo, keys[1][1], keys[2][1], keys.get(3, (0, b""))[1])
            sets = [new_ota if k.kvn == kvn else k for k in profile.ota_key_sets]
            if new_ota not in sets:
                sets.append(new_ota)
            return attrs.evolve(profile, ota_key_sets=tuple(sets))
        if family == _SCP03:
            new_scp = Scp03Keys(kvn, keys[1][1], keys[2][1], keys[3][1])
            scps = [new_scp if k.kvn == kvn else k for k in profile.scp03]
            if new_scp not in scps:
                scps.append(new_scp)
            return attrs.evolve(profile, scp03=tuple(scps))
        identity = profile.psk.identity if profile.psk else profile.iccid.encode("ascii")
        return attrs.evolve(profile, psk=PskCredential(identity, keys[1][1], kvn))
    except ProfileError as e:
        raise GpError(0x6A80, str(e)) from None


def put_key(st: IsdState, apdu: CommandApdu) -> ResponseApdu:
    """PUT KEY (C{80 D8}): add or replace a key set (see the module docstring)."""
    st.require_management()
    old_kvn, first_kid, multiple = apdu.p1 & 0x7F, apdu.p2 & 0x7F, bool(apdu.p2 & 0x80)
    if first_kid == 0:
        raise GpError(0x6A86, "PUT KEY P2 names no key identifier")
    if len(apdu.data) < 2:
        raise GpError(0x6A80, "PUT KEY data too short")
    new_kvn = apdu.data[0]
    blocks = _parse(apdu.data[1:])
    if not blocks or (not multiple and len(blocks) != 1):
        raise GpError(0x6A80, "PUT KEY for one key carries exactly one key")
    family = _family(new_kvn)
    if old_kvn and _family(old_kvn) != family:
        raise GpError(0x6A80, "a key set cannot change family")
    types, kids, required = _RULES[family]
    profile = st.profile
    old = _existing(profile, family, old_kvn) if old_kvn else {}
    if old_kvn and not old:
        raise GpError(0x6A88, f"no key set {old_kvn:02X} to replace")
    if new_kvn != old_kvn and _existing(profile, family, new_kvn):
        raise GpError(0x6985, f"key set {new_kvn:02X} already exists")
    if family == _PSK and profile.psk is not None and profile.psk.kvn != old_kvn:
        raise GpError(0x6A84, "the card holds one PSK; replace it instead")
    dek = _dek(st)
    given: dict[int, tuple[int, bytes]] = {}
    answer = bytes((new_kvn,))
    for offset, (key_type, block, check) in enumerate(blocks):
        kid = first_kid + offset
        if kid not in kids or key_type not in types:
            raise GpError(0x6A80, f"key type {key_type:02X} KID {kid} not valid for {family}")
        value = _decrypt(dek, block)
        if key_type != KEY_TYPE_DES and len(value) not in (16, 24, 32):
            raise GpError(0x6A80, f"a {len(value)}-byte key is not an AES/PSK key")
        if key_type == KEY_TYPE_DES and len(value) not in (16, 24):
            raise GpError(0x6A80, f"a {len(value)}-byte key is not a 3DES key")
        computed = kcv(key_type, value)
        if check and check != computed:
            raise GpError(0x6982, f"key check value of KID {kid} does not match")
        given[kid] = (key_type, value)
        answer += computed
    merged = dict(old) if new_kvn == old_kvn else {}
    merged.update(given)
    if not required <= merged.keys():
        raise GpError(0x6A80, f"a {family} key set needs KIDs {sorted(required)}")
    if old_kvn and new_kvn != old_kvn:
        profile = _without(profile, family, old_kvn)
    st.replace_profile(_with(profile, family, new_kvn, merged))
    return ResponseApdu(answer, 0x9000)


def _one_byte(tlv: BerTlv | None) -> int | None:
    if tlv is None:
        return None
    if len(tlv.value) != 1:
        raise GpError(0x6A80, f"DELETE key: {tlv.tag:02X} must be one byte")
    return tlv.value[0]


def delete_keys(st: IsdState, kid_tlv: BerTlv | None, kvn_tlv: BerTlv | None) -> ResponseApdu:
    """DELETE [key] with C{D0} (KID) and/or C{D2} (KVN)."""
    kid, kvn = _one_byte(kid_tlv), _one_byte(kvn_tlv)
    profile = st.profile
    versions = (
        [kvn]
        if kvn is not None
        else [k.kvn for k in profile.ota_key_sets]
        + [k.kvn for k in profile.scp03]
        + ([profile.psk.kvn] if profile.psk else [])
    )
    deleted = False
    for version in versions:
        try:
            family = _family(version)
        except GpError:
            raise GpError(0x6A88, f"no key set {version:02X}") from None
        keys = _existing(profile, family, version)
        if not keys or (kid is not None and kid not in keys):
            continue
        if kid is None or len(keys) == 1:
            profile = _without(profile, family, version)
        elif family == _OTA and kid == 3:
            del keys[3]
            profile = _with(profile, family, version, keys)
        else:
            raise GpError(0x6985, f"KID {kid} of key set {version:02X} cannot go alone")
        deleted = True
    if not deleted:
        raise GpError(0x6A88, "no such key")
    st.replace_profile(profile)
    return OK_00
