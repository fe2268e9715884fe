# -*- test-case-name: tests.unit.keys.test_pkcs11 -*-
"""The root key and master keys in a PKCS#11 token (an HSM, or SoftHSM2).

With C{[keys] backend = "pkcs11"} the gateway root key never exists outside
the token: it is a non-extractable, sensitive AES-256 key object, and
sealing and unsealing are C{CKM_AES_GCM} operations done I{in} the token.
The format of a sealed value is the file backend's (docs/keys.md section 3:
C{01 | key id | nonce | ciphertext | tag}, the version byte, key id and
label authenticated), so the database looks the same whichever backend
wrote it; only the key differs (the token's AES key itself, where a file
root key is first put through HKDF).

What the token does, and what it does not:

  - sealing: C{CKM_AES_GCM} (12-byte random nonce, 128-bit tag, the header
    and label as additional data), in the token;
  - MACs (card key fingerprints, the keystore MAC): C{CKM_SHA256_HMAC} with
    a second, generic-secret key made with the root key, in the token;
  - diversification of per-card keys from master keys in the token:
    L{bipgw.keys._pkcs11_masters};
  - the module, the token and the logged-in session under both:
    L{bipgw.keys._pkcs11_token}.

Objects are found by label: C{bipgw-root:<id>} (the current root key),
C{bipgw-root-next:<id>} (the next one, during a rotation), with their MAC
keys C{bipgw-root-mac:<id>}; master keys are C{bipgw-master:...}
(L{bipgw.keys._pkcs11_masters}).
C{CKA_ID} holds the 4-byte key id.  A rotation creates the next pair,
and when nothing is sealed under the old key any more destroys the old
pair and relabels the next one: each step is one token operation, and a
crash between them is resumed (L{Pkcs11RootKeys.rotation}).

python-pkcs11 is used rather than PyKCS11: it maps PKCS#11 errors to
exception classes (wrong PIN, no such token...) and mechanisms to typed
parameters (C{GCMParams}), ships type hints, and is maintained.
"""

from __future__ import annotations

import os
from typing import Any

from pkcs11 import Attribute, KeyType, Mechanism
from pkcs11.exceptions import PKCS11Error
from pkcs11.mechanisms import GCMParams

from bipgw.keys._pkcs11_token import HsmError, Pkcs11Token, error_name, secret_template
from bipgw.keys._rootkey import (
    HEADER_LENGTH,
    NONCE_LENGTH,
    SEAL_VERSION,
    check_label,
    check_sealed,
)
from bipgw.keys._secret import (
    IntegrityError,
    RootKeyError,
    Secret,
    WrongRootKeyError,
)

__all__ = ["Pkcs11RootKeys"]

_ROOT = "bipgw-root:"
_NEXT = "bipgw-root-next:"
_MAC = "bipgw-root-mac:"

#: What the root key backend needs from the token.
ROOT_MECHANISMS = ("AES_KEY_GEN", "AES_GCM", "GENERIC_SECRET_KEY_GEN", "SHA256_HMAC")


class _TokenSealer:
    def __init__(self, keys: Pkcs11RootKeys, key_id: str) -> None:
        self._keys = keys
        self._key_id = key_id

    @property
    def key_id(self) -> str:
        return self._key_id

    def seal(self, label: str, plaintext: Secret | bytes) -> bytes:
        return self._keys._seal_under(self._key_id, label, plaintext)


class Pkcs11RootKeys:
    """The root key in a PKCS#11 token: L{IRotatableRootKeys}, all crypto in the token."""

    def __init__(self, token: Pkcs11Token) -> None:
        """Find the root key objects.

        @raise HsmMechanismError: the token lacks a mechanism sealing needs.
        @raise HsmError: there is no root key in the token (run C{bipgw keys init-hsm}).
        """
        token.require(ROOT_MECHANISMS)
        self._token = token
        self._keys: dict[str, Any] = {}
        self._macs: dict[str, Any] = {}
        self._current: str | None = None
        self._next: str | None = None
        self.refresh()
        if self._current is None and self._next is None:
            raise HsmError(
                f"no bipgw root key in the {token.describe()}: create one with bipgw keys init-hsm"
            )

    @classmethod
    def initialise(cls, token: Pkcs11Token) -> Pkcs11RootKeys:
        """Create the first root key in the token.

        @raise HsmError: the token already holds a bipgw root key.
        """
        token.require(ROOT_MECHANISMS)
        if token.objects("bipgw-root"):
            raise HsmError(f"the {token.describe()} already holds a bipgw root key")
        _generate_pair(token, _ROOT)
        return cls(token)

    def __repr__(self) -> str:
        return f"<Pkcs11RootKeys {self._token.name} sealing={self.key_id}>"

    @property
    def token(self) -> Pkcs11Token:
        """The token session (the master keys in the same token use it too)."""
        return self._token

    def refresh(self) -> None:
        """Find the key objects again (another process may be rotating)."""
        current = upcoming = None
        keys: dict[str, Any] = {}
        macs: dict[str, Any] = {}
        for label, obj in self._token.objects("bipgw-root").items():
            for prefix, into in ((_ROOT, keys), (_NEXT, keys), (_MAC, macs)):
                if label.startswith(prefix):
                    key_id = label[len(prefix) :]
                    into[key_id] = obj
                    if prefix == _ROOT:
                        current = key_id
                    elif prefix == _NEXT:
                        upcoming = key_id
        # Keys loaded once stay usable by this process (unseal only).
        self._keys.update(keys)
        self._macs.update(macs)
        self._current, self._next = current, upcoming

    # -- IRootKeys -----------------------------------------------------------

    @property
    def key_id(self) -> str:
        key_id = self._next or self._current
        assert key_id is not None
        return key_id

    @property
    def key_ids(self) -> tuple[str, ...]:
        first = self.key_id
        return (first, *sorted(k for k in self._keys if k != first))

    def seal(self, label: str, plaintext: Secret | bytes) -> bytes:
        return self._seal_under(self.key_id, label, plaintext)

    def batch_sealer(self, nonces: int = 1) -> _TokenSealer:
        self.refresh()
        return _TokenSealer(self, self.key_id)

    def _seal_under(self, key_id: str, label: str, plaintext: Secret | bytes) -> bytes:
        ad_label = check_label(label)
        secret = plaintext if isinstance(plaintext, Secret) else Secret(plaintext)
        header = bytes([SEAL_VERSION]) + bytes.fromhex(key_id)
        nonce = os.urandom(NONCE_LENGTH)
        key = self._key(key_id, label)
        try:
            with self._token.lock:
                sealed = key.encrypt(
                    secret.reveal(),
                    mechanism=Mechanism.AES_GCM,
                    mechanism_param=GCMParams(nonce, header + ad_label, 128),
                )
        except PKCS11Error as e:
            raise HsmError(
                f"the token could not seal {label!r}: {error_name(e)}", label=label
            ) from None
        return header + nonce + bytes(sealed)

    def _key(self, key_id: str, label: str | None) -> Any:
        key = self._keys.get(key_id)
        if key is None:
            self.refresh()
            key = self._keys.get(key_id)
        if key is None:
            raise WrongRootKeyError(
                f"{'the value for ' + repr(label) if label else 'the value'} was sealed under"
                f" root key {key_id}, which is not in the {self._token.describe()}",
                label=label,
            )
        return key

    def unseal(self, label: str, blob: bytes) -> Secret:
        ad_label, data = check_sealed(label, blob)
        header = data[:HEADER_LENGTH]
        key = self._key(header[1:].hex(), label)
        nonce = data[HEADER_LENGTH : HEADER_LENGTH + NONCE_LENGTH]
        try:
            with self._token.lock:
                plain = key.decrypt(
                    data[HEADER_LENGTH + NONCE_LENGTH :],
                    mechanism=Mechanism.AES_GCM,
                    mechanism_param=GCMParams(nonce, header + ad_label, 128),
                )
        except PKCS11Error:
            raise IntegrityError(
                f"the value for {label!r} failed authentication in the token: it was"
                " modified, or sealed under another label",
                label=label,
            ) from None
        return Secret(bytes(plain))

    def mac(self, purpose: bytes, data: bytes, key_id: str | None = None) -> bytes:
        """HMAC-SHA256 in the token: C{len(purpose) | purpose | data} under the MAC key."""
        wanted = self.key_id if key_id is None else key_id
        key = self._macs.get(wanted)
        if key is None:
            self.refresh()
            key = self._macs.get(wanted)
        if key is None:
            raise WrongRootKeyError(f"no MAC key for root key {wanted} in {self._token.describe()}")
        message = bytes([len(purpose)]) + purpose + data
        with self._token.lock:
            return bytes(key.sign(message, mechanism=Mechanism.SHA256_HMAC))

    # -- rotation ------------------------------------------------------------

    def rotation(self) -> tuple[str | None, str] | None:
        self.refresh()
        if self._next is None:
            return None
        return (self._current, self._next)

    def begin_rotation(self) -> tuple[str | None, str]:
        pending = self.rotation()
        if pending is not None:
            return pending
        _generate_pair(self._token, _NEXT)
        pending = self.rotation()
        assert pending is not None
        return pending

    def finish_rotation(self) -> str:
        pending = self.rotation()
        if pending is None:
            raise RootKeyError(f"no rotation under way in the {self._token.describe()}")
        old, new = pending
        objects = self._token.objects("bipgw-root")
        with self._token.lock:
            # Destroy the old pair first: a crash after it leaves the next
            # key alone, which refresh() still finds, and this resumes.
            if old is not None:
                for label in (_ROOT + old, _MAC + old):
                    if label in objects:
                        objects[label].destroy()
            objects[_NEXT + new][Attribute.LABEL] = _ROOT + new
            # A MAC key with no root key of its id is garbage, left by a crash
            # between the two keys of _generate_pair, or between destroying
            # the old root key and its MAC key: nothing is sealed or MACed
            # under it now (the rotation re-MACed everything), so it goes too.
            for label, obj in objects.items():
                if label.startswith(_MAC) and label not in (_MAC + new, _MAC + (old or "")):
                    obj.destroy()
        self.refresh()
        self._keys.pop(old or "", None)
        self._macs.pop(old or "", None)
        return new

    def describe(self) -> str:
        return self._token.describe()

    def close(self) -> None:
        """Close the token session (the keys stay in the token)."""
        self._token.close()


def _generate_pair(token: Pkcs11Token, prefix: str) -> str:
    key_id = os.urandom(4)
    name = key_id.hex()
    with token.lock:
        token.session.generate_key(
            KeyType.GENERIC_SECRET,
            256,
            label=_MAC + name,
            id=key_id,
            store=True,
            template=secret_template(sign=True, verify=True),
        )
        # The AES key last: its label is what makes the pair visible as a
        # root key, so a crash before it leaves only an unused MAC key.
        token.session.generate_key(
            KeyType.AES,
            256,
            label=prefix + name,
            id=key_id,
            store=True,
            template=secret_template(encrypt=True, decrypt=True),
        )
    return name
