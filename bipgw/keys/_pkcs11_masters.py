# -*- test-case-name: tests.unit.keys.test_pkcs11_masters -*-
"""Master keys in a PKCS#11 token, and card keys diversified in it.

C{bipgw keys generate-master KIND LABEL --backend pkcs11} makes a master
key inside the C{[keys]} token: a sensitive, non-extractable AES key object
allowed to sign (C{CKA_SIGN}) and nothing else.  The gateway then derives
card keys with it (L{bipgw.keys.MasterKeyRing}), the PRF of the SP 800-108
counter-mode KDF being the token's C{CKM_AES_CMAC}, called once per
16-byte block; the counter, label, context and length fields are assembled
here, exactly as L{bipgw.keys.CardKeyDeriver} does (SoftHSM2 2.6 has no
C{CKM_SP800_108_COUNTER_KDF}, and the derived card key must leave the token
anyway: the TLS-PSK and OTA code use it in software).  For the same master
bytes the result equals L{derive_card_key} (v1) and L{derive_card_key_v2}.

The token has no metadata field, so what the keystore keeps as metadata is
in the object's label (C{CKA_LABEL}, C{docs/keys.md} section 10):

  - C{bipgw-master:<kind>:v2:<label>}: a derivation v2 master of C{<kind>}
    (C{master-psk}, C{master-ota-kic} ...), serving every key version: what
    C{generate-master --backend pkcs11} makes by default;
  - C{bipgw-master:<kind>:v1:<label>}: a derivation v1 master
    (C{--kdf 1}), serving any key version as its purpose's only v1 master;
  - C{bipgw-master:<kind>:<label>} (no version field: made by bipgw before
    the field existed): v1, what L{Pkcs11MasterKeys.derive} computed;
  - any other C{bipgw-master:} label (e.g. one given to
    L{Pkcs11MasterKeys.import_key} without a kind): listed, never used by
    the gateway.
"""

from __future__ import annotations

from typing import Any

import attrs
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.exceptions import PKCS11Error

from bipgw.keys._kdf import KdfPurpose, counter_mode_key
from bipgw.keys._keystore import KeyKind
from bipgw.keys._masters import KIND_OF_PURPOSE, MasterKey
from bipgw.keys._pkcs11_token import HsmError, Pkcs11Token, error_name, secret_template
from bipgw.keys._rootkey import check_label
from bipgw.keys._secret import (
    InvalidKeyError,
    KeyAlgorithm,
    KeyManagementError,
    Secret,
    UnknownKeyError,
)

__all__ = ["MASTER_MECHANISMS", "Pkcs11MasterKeys", "TokenMaster", "token_master_label"]

_MASTER = "bipgw-master:"
#: What master keys (diversification in the token) need.
MASTER_MECHANISMS = ("AES_KEY_GEN", "AES_CMAC")
_PURPOSE_OF_KIND = {kind: purpose for purpose, kind in KIND_OF_PURPOSE.items()}


def token_master_label(kind: KeyKind, label: str, kdf: int = 2) -> str:
    """The token label (after C{bipgw-master:}) of a C{kind} master (module docstring)."""
    if kind not in _PURPOSE_OF_KIND:
        raise KeyManagementError(f"{kind.value} is not a master key kind")
    if kdf not in (1, 2):
        raise KeyManagementError(f"a master key uses derivation 1 or 2, not {kdf!r}")
    check_label(label)
    return f"{kind.value}:v{kdf}:{label}"


@attrs.frozen
class TokenMaster:
    """What the token label of a master says (module docstring); never its value.

    @ivar name: the label after C{bipgw-master:}.
    @ivar label: the operator's label (C{name} when the kind is unknown).
    @ivar kind: the master kind, or C{None} (not a gateway master).
    @ivar length: the key's length in bytes, as the token reports it.
    @ivar protected: the token says it is sensitive and non-extractable.
    """

    name: str
    label: str
    kind: KeyKind | None
    kdf: int
    length: int | None = None
    protected: bool = True

    @classmethod
    def parse(cls, name: str, length: int | None = None, protected: bool = True) -> TokenMaster:
        kind_text, _, rest = name.partition(":")
        try:
            kind: KeyKind | None = KeyKind(kind_text)
        except ValueError:
            kind = None
        if kind not in _PURPOSE_OF_KIND or not rest:
            return cls(name, name, None, 1, length, protected)
        version, _, label = rest.partition(":")
        if version in ("v1", "v2") and label:
            return cls(name, label, kind, int(version[1]), length, protected)
        return cls(name, rest, kind, 1, length, protected)


class _TokenDeriver:
    """L{bipgw.keys.ICardKeyDeriver} for one master key object of the token."""

    def __init__(self, token: Pkcs11Token, key: Any, name: str) -> None:
        self._token = token
        self._key = key
        self._name = name

    def __repr__(self) -> str:
        return f"<token master {self._name!r}>"

    def derive(self, iccid: str, purpose: KdfPurpose, algorithm: KeyAlgorithm) -> Secret:
        return self._derive(purpose.label, iccid, algorithm)

    def derive_v2(
        self, iccid: str, purpose: KdfPurpose, algorithm: KeyAlgorithm, kvn: int
    ) -> Secret:
        return self._derive(purpose.label_v2(algorithm, kvn), iccid, algorithm)

    def _derive(self, label: bytes, iccid: str, algorithm: KeyAlgorithm) -> Secret:
        try:
            with self._token.lock:
                return counter_mode_key(self._cmac_of, label, iccid, algorithm)
        except PKCS11Error as e:
            raise HsmError(
                f"the {self._token.describe()} could not derive with master key"
                f" {self._name!r}: {error_name(e)}",
                label=self._name,
            ) from None

    def _cmac_of(self, data: bytes) -> bytes:
        return bytes(self._key.sign(data, mechanism=Mechanism.AES_CMAC))


class Pkcs11MasterKeys:
    """Master keys in the token; per-card keys diversified with its AES-CMAC."""

    def __init__(self, token: Pkcs11Token) -> None:
        """@raise HsmMechanismError: the token has no C{CKM_AES_CMAC}."""
        token.require(MASTER_MECHANISMS)
        self._token = token
        self._found: dict[str, Any] = {}

    @classmethod
    def held_by(cls, token: Pkcs11Token) -> Pkcs11MasterKeys | None:
        """The token's master keys, or C{None} when it holds none.

        A token without master keys need not offer C{CKM_AES_CMAC}.

        @raise HsmMechanismError: it holds master keys but no C{CKM_AES_CMAC}.
        """
        return cls(token) if token.objects(_MASTER) else None

    def __repr__(self) -> str:
        return f"<Pkcs11MasterKeys {self._token.name}>"

    def describe(self) -> str:
        return self._token.describe()

    def labels(self) -> list[str]:
        """The master keys' labels (without the C{bipgw-master:} prefix)."""
        return sorted(label[len(_MASTER) :] for label in self._token.objects(_MASTER))

    def entries(self) -> list[TokenMaster]:
        """What each master key's label says, its length and protection (never its value)."""
        found = []
        for label, obj in sorted(self._token.objects(_MASTER).items()):
            try:
                with self._token.lock:
                    length: int | None = int(obj[Attribute.VALUE_LEN])
                    protected = bool(obj[Attribute.SENSITIVE]) and not obj[Attribute.EXTRACTABLE]
            except PKCS11Error:
                length, protected = None, False
            found.append(TokenMaster.parse(label[len(_MASTER) :], length, protected))
        return found

    def masters(self) -> list[tuple[KdfPurpose, MasterKey]]:
        """A L{MasterKey} deriving in the token for each gateway master (a known kind)."""
        where = f"in the {self._token.describe()}"
        found: list[tuple[KdfPurpose, MasterKey]] = []
        for entry in self.entries():
            if entry.kind is None:
                continue
            master = MasterKey(entry.label, entry.kdf, None, self.deriver(entry.name), where=where)
            found.append((_PURPOSE_OF_KIND[entry.kind], master))
        return found

    def generate(self, label: str, length: int = 16) -> None:
        """A new random AES master key, made in the token and never leaving it.

        @param label: the token label after C{bipgw-master:}
            (L{token_master_label} for one the gateway uses).
        """
        self._check_new(label, length)
        with self._token.lock:
            self._token.session.generate_key(
                KeyType.AES,
                8 * length,
                label=_MASTER + label,
                store=True,
                template=secret_template(sign=True),
            )

    def import_key(self, label: str, key: Secret) -> None:
        """Move an existing master key (e.g. from the keystore) into the token,
        where it becomes non-extractable."""
        self._check_new(label, len(key))
        template = secret_template(sign=True)
        template.update(
            {
                Attribute.CLASS: ObjectClass.SECRET_KEY,
                Attribute.KEY_TYPE: KeyType.AES,
                Attribute.LABEL: _MASTER + label,
                Attribute.VALUE: key.reveal(),
            }
        )
        with self._token.lock:
            self._token.session.create_object(template)

    def _check_new(self, label: str, length: int) -> None:
        check_label(label)
        if length not in (16, 24, 32):
            raise InvalidKeyError(f"a master key is 16, 24 or 32 bytes, not {length}")
        if _MASTER + label in self._token.objects(_MASTER):
            raise KeyManagementError(
                f"a master key labelled {label!r} is already in the {self._token.describe()}",
                label=label,
            )

    def deriver(self, label: str) -> _TokenDeriver:
        """The L{bipgw.keys.ICardKeyDeriver} of the master C{label} (after C{bipgw-master:}).

        @raise UnknownKeyError: the token has no such master key.
        """
        master = self._found.get(label)
        if master is None:
            self._found = {
                name[len(_MASTER) :]: obj for name, obj in self._token.objects(_MASTER).items()
            }
            master = self._found.get(label)
        if master is None:
            raise UnknownKeyError(
                f"no master key {label!r} in the {self._token.describe()}", label=label
            )
        return _TokenDeriver(self._token, master, label)

    def derive(
        self, label: str, iccid: str, purpose: KdfPurpose, algorithm: KeyAlgorithm
    ) -> Secret:
        """L{derive_card_key} with the master key C{label}, the PRF run in the token."""
        return self.deriver(label).derive(iccid, purpose, algorithm)

    def derive_v2(
        self, label: str, iccid: str, purpose: KdfPurpose, algorithm: KeyAlgorithm, kvn: int
    ) -> Secret:
        """L{derive_card_key_v2} with the master key C{label}, the PRF run in the token."""
        return self.deriver(label).derive_v2(iccid, purpose, algorithm, kvn)
