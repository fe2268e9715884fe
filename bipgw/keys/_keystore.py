# -*- test-case-name: tests.unit.keys.test_keystore -*-
"""The keystore: gateway-level keys in one sealed, authenticated file.

Vendor transport keys (to open card-vendor output files) and master keys (to
diversify per-card keys) are few, long-lived, and needed before the database
is: they live in a JSON file next to the configuration, every value sealed
under the gateway root key, the whole document authenticated.  Per-card keys
live in the application database, sealed with the same L{seal}.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
import types
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from attrs import evolve, field, frozen

from bipgw.keys._kdf import KdfPurpose
from bipgw.keys._rootkey import (
    HEADER_LENGTH,
    NONCE_LENGTH,
    TAG_LENGTH,
    IRootKeys,
    check_label,
    fsync_directory,
    seal,
    sealed_key_id,
    unlink_quietly,
    unseal,
    write_private_temp,
)
from bipgw.keys._secret import (
    DuplicateKeyError,
    IntegrityError,
    InvalidKeyError,
    InvalidLabelError,
    KeystoreFormatError,
    KeystoreNotFoundError,
    KeystoreWriteError,
    Secret,
    UnknownKeyError,
    WrongRootKeyError,
)

_MAX_KEYSTORE_FILE = 16 * 1024 * 1024
_INFO_KEYSTORE_MAC = b"bipgw keystore mac v1"
_KEYSTORE_FORMAT = "bipgw-keystore"
_KEYSTORE_VERSION = 1
_ENTRY_PREFIX = "keystore:"


class KeyKind(StrEnum):
    """What a keystore entry is for.

    Transport keys open vendor output files; master keys diversify per-card
    keys (see L{KeyKind.purpose}).  Per-card keys are not in the keystore:
    they live in the application database, sealed with L{seal}.
    """

    TRANSPORT = "transport"
    MASTER_OTA_KIC = "master-ota-kic"
    MASTER_OTA_KID = "master-ota-kid"
    MASTER_OTA_KIK = "master-ota-kik"
    MASTER_PSK = "master-psk"
    MASTER_PSK_DEK = "master-psk-dek"
    MASTER_SCP03_ENC = "master-scp03-enc"
    MASTER_SCP03_MAC = "master-scp03-mac"
    MASTER_SCP03_DEK = "master-scp03-dek"

    @property
    def purpose(self) -> KdfPurpose | None:
        """The diversification purpose of a master key, C{None} for transport keys."""
        return _PURPOSES.get(self)


_PURPOSES = {
    KeyKind.MASTER_OTA_KIC: KdfPurpose.OTA_KIC,
    KeyKind.MASTER_OTA_KID: KdfPurpose.OTA_KID,
    KeyKind.MASTER_OTA_KIK: KdfPurpose.OTA_KIK,
    KeyKind.MASTER_PSK: KdfPurpose.SCP81_PSK,
    KeyKind.MASTER_PSK_DEK: KdfPurpose.SCP81_DEK,
    KeyKind.MASTER_SCP03_ENC: KdfPurpose.SCP03_ENC,
    KeyKind.MASTER_SCP03_MAC: KdfPurpose.SCP03_MAC,
    KeyKind.MASTER_SCP03_DEK: KdfPurpose.SCP03_DEK,
}

#: A metadata value: JSON scalars only, so the keystore MAC input is canonical.
MetaValue = str | int | bool | None


def _freeze_meta(meta: Mapping[str, MetaValue] | None) -> Mapping[str, MetaValue]:
    items = dict(meta or {})
    if len(items) > 32:
        raise InvalidLabelError("key metadata holds at most 32 entries")
    for key, value in items.items():
        if not isinstance(key, str) or not 1 <= len(key) <= 64 or not key.isprintable():
            raise InvalidLabelError(f"metadata names are 1 to 64 printable characters: {key!r}")
        ok = value is None or isinstance(value, str | bool) or type(value) is int
        if not ok or (isinstance(value, str) and len(value) > 1024):
            raise InvalidLabelError(
                f"metadata {key!r} must be a string (up to 1024 characters), an integer,"
                " a boolean or null"
            )
    return types.MappingProxyType(items)


@frozen
class KeyInfo:
    """What the keystore knows about a key, without the key itself.

    @ivar meta: free-form, non-secret facts (e.g. C{{"scheme": "aes-kwp"}}
        for a transport key, C{{"kvn": 1}} for a master key).
    @ivar length: the key length in bytes.
    """

    label: str
    kind: KeyKind
    meta: Mapping[str, MetaValue] = field(converter=_freeze_meta, hash=False)
    length: int


@frozen
class _Entry:
    kind: KeyKind
    meta: Mapping[str, MetaValue] = field(converter=_freeze_meta, hash=False)
    sealed: bytes = field(repr=False)


def _entry_label(label: str) -> str:
    return _ENTRY_PREFIX + label


def _canonical(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode(
        "ascii"
    )


def _body(root: IRootKeys, entries: Mapping[str, _Entry]) -> dict[str, Any]:
    return {
        "format": _KEYSTORE_FORMAT,
        "version": _KEYSTORE_VERSION,
        "root_key_id": root.key_id,
        "entries": {
            label: {
                "kind": entry.kind.value,
                "meta": dict(entry.meta),
                "sealed": base64.b64encode(entry.sealed).decode("ascii"),
            }
            for label, entry in entries.items()
        },
    }


def _mac(root: IRootKeys, body: Mapping[str, Any], key_id: str | None = None) -> str:
    # HMAC-SHA256 under HKDF(root, "bipgw keystore mac v1") for a file root
    # key (docs/keys.md section 4); the token's own MAC key on PKCS#11.
    return root.mac(_INFO_KEYSTORE_MAC, _canonical(body), key_id).hex()


class KeyStore:
    """Gateway-level keys (vendor transport keys, master keys) in one file.

    The file is JSON, rewritten atomically (temporary file, fsync, rename) on
    every change, so a crash leaves either the old or the new version.  Each
    key is sealed (L{seal}) under the root key with the label
    C{"keystore:" + label}; the whole document carries an HMAC-SHA256 under
    another root-derived key, so entries cannot be deleted, renamed,
    re-kinded or swapped behind the gateway's back.  One process owns the
    file: there is no locking between concurrent writers.

    Use L{KeyStore.create} for a new file and L{KeyStore.open} for an
    existing one: a mistyped path is an error, not an empty keystore.
    """

    def __init__(self, path: str, root: IRootKeys, entries: Mapping[str, _Entry]) -> None:
        """Use L{create} or L{open}."""
        self._path = path
        self._root = root
        self._entries: dict[str, _Entry] = dict(entries)
        self._written_under = root.key_id

    @property
    def path(self) -> str:
        """The keystore file."""
        return self._path

    @property
    def root_key_id(self) -> str:
        """The id of the root key the entries are sealed under."""
        return self._root.key_id

    def __repr__(self) -> str:
        return f"<KeyStore {self._path} entries={len(self._entries)} root={self._root.key_id}>"

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, label: object) -> bool:
        return label in self._entries

    @classmethod
    def create(cls, path: str | os.PathLike[str], root: IRootKeys) -> KeyStore:
        """Create an empty keystore file.

        @raise KeystoreWriteError: if a file already exists at C{path}.
        """
        name = os.fspath(path)
        if os.path.lexists(name):
            raise KeystoreWriteError(f"a file already exists at {name}; open it instead")
        store = cls(name, root, {})
        store._write(root, {})
        return store

    @classmethod
    def open(cls, path: str | os.PathLike[str], root: IRootKeys) -> KeyStore:
        """Load a keystore file and check that C{root} is its root key.

        @raise KeystoreNotFoundError: if there is no file at C{path}.
        @raise KeystoreFormatError: if the file is not a keystore.
        @raise WrongRootKeyError: if it was written under another root key.
        @raise IntegrityError: if it was modified outside bipgw.
        """
        name = os.fspath(path)
        try:
            with open(name, "rb") as f:
                raw = f.read(_MAX_KEYSTORE_FILE + 1)
        except FileNotFoundError:
            raise KeystoreNotFoundError(f"no keystore at {name}") from None
        except OSError as e:
            raise KeystoreFormatError(f"cannot read keystore {name}: {e.strerror}") from None
        if len(raw) > _MAX_KEYSTORE_FILE:
            raise KeystoreFormatError(f"keystore {name} is larger than {_MAX_KEYSTORE_FILE} bytes")
        store = cls(name, root, {})
        store._entries, store._written_under = _parse_document(name, raw, root)
        return store

    def put(
        self,
        label: str,
        kind: KeyKind | str,
        secret: Secret,
        meta: Mapping[str, MetaValue] | None = None,
        *,
        replace: bool = False,
    ) -> KeyInfo:
        """Store C{secret} under C{label} and rewrite the file.

        Master keys must be AES keys (16, 24 or 32 bytes, the KDF's PRF is
        AES-CMAC); transport keys are 16, 24 (AES or 3DES) or 32 bytes.

        @param meta: non-secret facts kept in clear next to the key.
        @param replace: allow replacing an existing key of the same label.
        @raise DuplicateKeyError: if C{label} exists and C{replace} is false.
        """
        key_kind = _kind(kind)
        check_label(label)
        if not isinstance(secret, Secret):
            raise TypeError(f"put() stores a Secret, not {type(secret).__name__}")
        if label in self._entries and not replace:
            raise DuplicateKeyError(f"a key labelled {label!r} already exists", label=label)
        if len(secret) not in (16, 24, 32):
            raise InvalidKeyError(
                f"a {key_kind.value} key is 16, 24 or 32 bytes; {label!r} has {len(secret)}",
                label=label,
            )
        entry = _Entry(key_kind, meta, seal(self._root, _entry_label(label), secret))
        self._commit(self._root, {**self._entries, label: entry})
        return self._info(label, entry)

    def get(self, label: str) -> Secret:
        """The key stored under C{label}.

        @raise UnknownKeyError: if there is none.
        """
        return unseal(self._root, _entry_label(label), self._entry(label).sealed)

    def info(self, label: str) -> KeyInfo:
        """The kind and metadata of the key under C{label}, without unsealing it."""
        return self._info(label, self._entry(label))

    def labels(self, kind: KeyKind | str | None = None) -> list[str]:
        """The labels in the keystore, sorted; only those of C{kind} if given."""
        wanted = None if kind is None else _kind(kind)
        return sorted(
            label for label, entry in self._entries.items() if wanted in (None, entry.kind)
        )

    def delete(self, label: str) -> None:
        """Remove the key under C{label} and rewrite the file.

        @raise UnknownKeyError: if there is none.
        """
        self._entry(label)
        self._commit(self._root, {k: v for k, v in self._entries.items() if k != label})

    def sealed_under(self) -> dict[str, int]:
        """How many entries are sealed under each root key id (the file's
        own MAC counts as one more under its C{root_key_id})."""
        counts: dict[str, int] = {self._written_under: 1}
        for entry in self._entries.values():
            key_id = sealed_key_id(entry.sealed)
            counts[key_id] = counts.get(key_id, 0) + 1
        return counts

    def reseal(self) -> int:
        """Re-seal every entry not sealed under the root keys' sealing key,
        and rewrite the file under it (a root-key rotation step).

        @return: how many entries were re-sealed.
        """
        target = self._root.key_id
        resealed = {}
        count = 0
        for label, entry in self._entries.items():
            if sealed_key_id(entry.sealed) != target:
                entry = evolve(entry, sealed=self._root.seal(_entry_label(label), self.get(label)))
                count += 1
            resealed[label] = entry
        if count or self._written_under != target:
            self._commit(self._root, resealed)
        return count

    def rotate_root(self, new_root: IRootKeys) -> None:
        """Re-seal every key under C{new_root} and rewrite the file.

        Every key is unsealed first, so a damaged entry stops the rotation
        before anything is written.  Save C{new_root} (to a new file) I{before}
        calling this: once the file is rewritten, only C{new_root} opens it.
        """
        resealed = {
            label: evolve(
                entry,
                sealed=seal(new_root, _entry_label(label), self.get(label)),
            )
            for label, entry in self._entries.items()
        }
        self._commit(new_root, resealed)

    def _entry(self, label: str) -> _Entry:
        try:
            return self._entries[label]
        except (KeyError, TypeError):
            raise UnknownKeyError(
                f"no key labelled {label!r} in {self._path}", label=label
            ) from None

    @staticmethod
    def _info(label: str, entry: _Entry) -> KeyInfo:
        overhead = HEADER_LENGTH + NONCE_LENGTH + TAG_LENGTH
        return KeyInfo(label, entry.kind, entry.meta, len(entry.sealed) - overhead)

    def _commit(self, root: IRootKeys, entries: dict[str, _Entry]) -> None:
        # Write first, then switch the in-memory state: a failed write leaves
        # the object and the file as they were.
        self._write(root, entries)
        self._root = root
        self._entries = entries
        self._written_under = root.key_id

    def _write(self, root: IRootKeys, entries: Mapping[str, _Entry]) -> None:
        body = _body(root, entries)
        document = {**body, "mac": _mac(root, body)}
        data = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("ascii")
        directory = os.path.dirname(os.path.abspath(self._path))
        tmp: str | None = None
        try:
            tmp = write_private_temp(directory, os.path.basename(self._path), data)
            os.replace(tmp, self._path)
        except OSError as e:
            if tmp is not None:
                unlink_quietly(tmp)
            raise KeystoreWriteError(
                f"could not write keystore {self._path} ({e.strerror or e});"
                " the previous version is unchanged"
            ) from None
        fsync_directory(directory)


def _kind(kind: KeyKind | str) -> KeyKind:
    try:
        return KeyKind(kind)
    except ValueError:
        known = ", ".join(k.value for k in KeyKind)
        raise InvalidLabelError(f"unknown key kind {kind!r}; known kinds: {known}") from None


def _parse_document(name: str, raw: bytes, root: IRootKeys) -> tuple[dict[str, _Entry], str]:
    def bad(reason: str) -> KeystoreFormatError:
        return KeystoreFormatError(f"keystore {name}: {reason}")

    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise bad("not JSON") from None
    if not isinstance(document, dict) or document.get("format") != _KEYSTORE_FORMAT:
        raise bad(f'not a bipgw keystore (no "format": "{_KEYSTORE_FORMAT}")')
    if document.get("version") != _KEYSTORE_VERSION:
        raise bad(f"unsupported version {document.get('version')!r}")
    if set(document) != {"format", "version", "root_key_id", "entries", "mac"}:
        raise bad("unexpected or missing top-level fields")
    written_under = document["root_key_id"]
    body = {k: v for k, v in document.items() if k != "mac"}
    try:
        if not isinstance(written_under, str):
            raise WrongRootKeyError("not a key id")
        expected = _mac(root, body, written_under)
    except WrongRootKeyError:
        raise WrongRootKeyError(
            f"keystore {name} was written under root key {written_under!r},"
            f" not under the loaded root key {root.key_id}"
        ) from None
    mac = document["mac"]
    if not isinstance(mac, str) or not hmac.compare_digest(mac, expected):
        raise IntegrityError(
            f"keystore {name} failed its integrity check: it was modified outside bipgw"
        )
    entries = document["entries"]
    if not isinstance(entries, dict):
        raise bad('"entries" is not an object')
    parsed: dict[str, _Entry] = {}
    for label, item in entries.items():
        try:
            if not isinstance(item, dict) or set(item) != {"kind", "meta", "sealed"}:
                raise ValueError("fields")
            sealed = base64.b64decode(item["sealed"], validate=True)
            parsed[label] = _Entry(KeyKind(item["kind"]), item["meta"], sealed)
            check_label(label)
        except (ValueError, TypeError, binascii.Error) as e:
            raise bad(f"entry {label!r} is malformed ({type(e).__name__})") from None
    return parsed, written_under
