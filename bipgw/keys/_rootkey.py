# -*- test-case-name: tests.unit.keys.test_rootkey,tests.unit.keys.test_seal -*-
"""The gateway root key, and envelope sealing of every stored key.

Every key bipgw stores is I{sealed} (AES-256-GCM) under a key derived from
the gateway root key, which lives in its own file (or environment variable),
never in the database.  A stolen database or keystore file is then useless
without the root key, and the root key alone holds no card data.

Sealing binds each value to its I{label} (the name it is stored under), so a
sealed value copied to another row or entry fails to open: an attacker with
write access to the database cannot swap one card's keys for another's.  The
formats are described in C{docs/keys.md}.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import secrets
import stat
from collections.abc import Mapping
from typing import Protocol

from attrs import field, frozen
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bipgw.keys._secret import (
    MAX_SECRET_LENGTH,
    InsecureRootKeyFileError,
    IntegrityError,
    InvalidLabelError,
    RootKeyError,
    Secret,
    WrongRootKeyError,
)

#: Size of the gateway root key in bytes.
ROOT_KEY_LENGTH = 32
#: Environment variable holding the root key (base64) for container deployments.
ROOT_KEY_ENV = "BIPGW_ROOT_KEY"
#: Version byte at the start of every sealed value.
SEAL_VERSION = 1
#: Longest label accepted by L{seal}, in characters.
MAX_LABEL_LENGTH = 255

_KEY_ID_LENGTH = 4
#: Bytes of the random GCM nonce in a sealed value.
NONCE_LENGTH = 12
#: Bytes of the GCM tag at the end of a sealed value.
TAG_LENGTH = 16
#: Bytes of the header (version, root key id) of a sealed value.
HEADER_LENGTH = 1 + _KEY_ID_LENGTH
_MIN_SEALED = HEADER_LENGTH + NONCE_LENGTH + 1 + TAG_LENGTH
_MAX_SEALED = HEADER_LENGTH + NONCE_LENGTH + MAX_SECRET_LENGTH + TAG_LENGTH
_MAX_ROOT_FILE = 1024

_INFO_KEY_ID = b"bipgw root key id v1"
_INFO_SEAL = b"bipgw seal v1"


def _hkdf(root: Secret, info: bytes, length: int) -> bytes:
    # HKDF-SHA256 with an empty salt: the root key is already uniformly random.
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(
        root.reveal()
    )


def _check_root_secret(instance: object, attribute: object, value: Secret) -> None:
    if not isinstance(value, Secret) or len(value) != ROOT_KEY_LENGTH:
        raise RootKeyError(f"a root key is a Secret of {ROOT_KEY_LENGTH} bytes")


@frozen(repr=False)
class RootKey:
    """The gateway root key: the key-encryption key for every stored key.

    32 random bytes, kept outside the database: in a file only its owner can
    read (L{load}, L{save}) or in the C{BIPGW_ROOT_KEY} environment variable
    (L{from_environment}), both as base64 text.  It is never used directly:
    purpose-specific keys are derived from it with HKDF, so sealing, the
    keystore MAC and the key identifier can never be confused.
    """

    _secret: Secret = field(validator=_check_root_secret)
    _subkeys: dict[bytes, bytes] = field(init=False, factory=dict, eq=False, repr=False)

    @classmethod
    def generate(cls) -> RootKey:
        """A new random root key."""
        return cls(Secret.generate(ROOT_KEY_LENGTH))

    @property
    def secret(self) -> Secret:
        """The root key material (still wrapped: call C{reveal()} to export it)."""
        return self._secret

    @property
    def key_id(self) -> str:
        """A public 8-hex-digit identifier, derived one-way from the key.

        Sealed values and keystores record it, so "sealed under another root
        key" is reported as such rather than as corruption.
        """
        return self._key_id_bytes().hex()

    def _key_id_bytes(self) -> bytes:
        return self._cached_subkey(_INFO_KEY_ID)[:_KEY_ID_LENGTH]

    def subkey(self, info: bytes) -> Secret:
        """A 32-byte key for one purpose: HKDF-SHA256(root, salt=none, info).

        The root key itself never keys a cipher; each use has its own
        C{info} string (C{b"bipgw seal v1"}, C{b"bipgw keystore mac v1"}...),
        so no two uses can ever share a key.
        """
        if not isinstance(info, bytes) or not info:
            raise TypeError("a subkey purpose is non-empty bytes")
        return Secret(_hkdf(self._secret, info, 32))

    def seal_key(self) -> Secret:
        """The derived key L{Sealer} seals under (for L{Sealer.from_seal_key})."""
        return self.subkey(_INFO_SEAL)

    def __repr__(self) -> str:
        return f"<RootKey id={self.key_id}>"

    # -- IRootKeys: one key, nothing to rotate -------------------------------

    @property
    def key_ids(self) -> tuple[str, ...]:
        """See L{IRootKeys.key_ids}: this key only."""
        return (self.key_id,)

    def seal(self, label: str, plaintext: Secret | bytes) -> bytes:
        """See L{IRootKeys.seal} and the module function L{seal}."""
        return Sealer(self).seal(label, plaintext)

    def unseal(self, label: str, blob: bytes) -> Secret:
        """See L{IRootKeys.unseal} and the module function L{unseal}."""
        return _unseal_with(self, label, blob)

    def batch_sealer(self, nonces: int = 1) -> Sealer:
        """See L{IRootKeys.batch_sealer}."""
        return Sealer(self, nonces=nonces)

    def mac(self, purpose: bytes, data: bytes, key_id: str | None = None) -> bytes:
        """HMAC-SHA256(HKDF(root, info=C{purpose}), C{data}); see L{IRootKeys.mac}."""
        if key_id is not None and key_id != self.key_id:
            raise WrongRootKeyError(f"no root key {key_id} here; the loaded one is {self.key_id}")
        return hmac.digest(self._cached_subkey(purpose), data, "sha256")

    def _cached_subkey(self, purpose: bytes) -> bytes:
        # HKDF once per purpose: a rotation or a cache load opens millions.
        key = self._subkeys.get(purpose)
        if key is None:
            key = self._subkeys[purpose] = self.subkey(purpose).reveal()
        return key

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RootKey:
        """Read a root key file, refusing one that others could read or write.

        @raise InsecureRootKeyFileError: if group or others have any permission.
        @raise RootKeyError: if the file is missing, not a regular file, or
            does not hold base64 text of 32 bytes.
        """
        name = os.fspath(path)
        try:
            fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise RootKeyError(f"no root key file at {name}") from None
        except OSError as e:
            raise RootKeyError(f"cannot open root key file {name}: {e.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise RootKeyError(f"root key file {name} is not a regular file")
            mode = stat.S_IMODE(st.st_mode)
            if mode & 0o077:
                raise InsecureRootKeyFileError(
                    f"root key file {name} has mode {mode:04o}: group and others must have"
                    f" no access to it (run: chmod 600 {name})"
                )
            data = b""
            while chunk := os.read(fd, _MAX_ROOT_FILE + 1 - len(data)):
                data += chunk
                if len(data) > _MAX_ROOT_FILE:
                    raise RootKeyError(f"root key file {name} is too large to be a root key")
        finally:
            os.close(fd)
        return cls._parse(data, f"root key file {name}")

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] | None = None, *, name: str = ROOT_KEY_ENV
    ) -> RootKey:
        """Read the root key from an environment variable (base64 text).

        For containers, where secrets arrive as environment variables.
        """
        env = os.environ if environ is None else environ
        text = env.get(name)
        if text is None:
            raise RootKeyError(f"environment variable {name} is not set")
        return cls._parse(text.encode("ascii", "replace"), f"environment variable {name}")

    @classmethod
    def _parse(cls, data: bytes, where: str) -> RootKey:
        try:
            raw = base64.b64decode(data.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise RootKeyError(f"{where} does not hold base64 text") from None
        if len(raw) != ROOT_KEY_LENGTH:
            raise RootKeyError(f"{where} holds {len(raw)} bytes; a root key is {ROOT_KEY_LENGTH}")
        return cls(Secret(raw))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the key to a new file with mode 0600, atomically.

        The file is written and synced under a temporary name, then linked
        into place: a crash never leaves a partial root key, and an existing
        file is never replaced (losing a root key loses every stored key).

        @raise RootKeyError: if C{path} exists or cannot be created.
        """
        name = os.fspath(path)
        if os.path.lexists(name):
            raise RootKeyError(f"refusing to overwrite the existing root key file {name}")
        directory = os.path.dirname(os.path.abspath(name))
        try:
            tmp = write_private_temp(
                directory, os.path.basename(name), base64.b64encode(self._secret.reveal()) + b"\n"
            )
        except OSError as e:
            raise RootKeyError(f"cannot write root key file {name}: {e.strerror}") from None
        try:
            os.link(tmp, name)
        except FileExistsError:
            raise RootKeyError(f"refusing to overwrite the existing root key file {name}") from None
        except OSError as e:
            raise RootKeyError(f"cannot create root key file {name}: {e.strerror}") from None
        finally:
            unlink_quietly(tmp)
        fsync_directory(directory)


def write_private_temp(directory: str, base: str, data: bytes) -> str:
    """Write C{data} to a new 0600 file next to C{base}; return its path."""
    tmp = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    fd = os.open(tmp, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        unlink_quietly(tmp)
        raise
    os.close(fd)
    return tmp


def unlink_quietly(path: str) -> None:
    """Remove a temporary file, ignoring errors (cleanup must not mask the cause)."""
    try:
        os.unlink(path)
    except OSError:
        pass


def fsync_directory(directory: str) -> None:
    """Make a new directory entry durable, where the platform allows it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_label(label: str) -> bytes:
    """C{label} in UTF-8, after checking it is 1 to 255 printable characters."""
    if not isinstance(label, str):
        raise InvalidLabelError(f"a key label is text, not {type(label).__name__}")
    if not 1 <= len(label) <= MAX_LABEL_LENGTH or not label.isprintable():
        raise InvalidLabelError(
            f"a key label is 1 to {MAX_LABEL_LENGTH} printable characters, got {label[:40]!r}"
        )
    return label.encode("utf-8")


class ISealer(Protocol):
    """Seals many values under one root key (L{IRootKeys.batch_sealer})."""

    @property
    def key_id(self) -> str:
        """The id of the root key this sealer seals under."""

    def seal(self, label: str, plaintext: Secret | bytes) -> bytes:
        """See L{seal}."""


class IRootKeys(Protocol):
    """What every root-key backend does: seal, unseal and MAC under the root key.

    A single L{RootKey} (file or environment variable), a L{FileRootKeyRing}
    (a root key file and, during a rotation, the next one) and a PKCS#11
    token (L{bipgw.keys.Pkcs11RootKeys}) all implement it; the rest of
    bipgw only ever calls these methods, so the root key's bytes need never
    leave a token.
    """

    @property
    def key_id(self) -> str:
        """The id of the root key new values are sealed under (8 hex digits)."""

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Every root key id this backend can open, the sealing one first."""

    def seal(self, label: str, plaintext: Secret | bytes) -> bytes:
        """Seal C{plaintext} for C{label} (docs/keys.md section 3)."""

    def unseal(self, label: str, blob: bytes) -> Secret:
        """Open a sealed value, under whichever known root key sealed it.

        @raise WrongRootKeyError: no known root key has its id.
        @raise IntegrityError: it was altered or sealed for another label.
        """

    def batch_sealer(self, nonces: int = 1) -> ISealer:
        """A sealer for many values under the current sealing key."""

    def mac(self, purpose: bytes, data: bytes, key_id: str | None = None) -> bytes:
        """A 32-byte MAC of C{data} under the root key C{key_id} (default: the
        sealing one), keyed for C{purpose} only (fingerprints, keystore MAC)."""


def sealed_key_id(blob: bytes) -> str:
    """The id of the root key a sealed value names in its header (no check)."""
    if len(blob) < HEADER_LENGTH or blob[0] != SEAL_VERSION:
        raise IntegrityError("not a sealed value (too short, or unknown format version)")
    return bytes(blob[1:HEADER_LENGTH]).hex()


def seal(root: IRootKeys, label: str, plaintext: Secret | bytes) -> bytes:
    """Encrypt a key for storage under C{label}, with AES-256-GCM.

    The result is C{01 | root key id (4) | nonce (12) | ciphertext | tag (16)}.
    The associated data is the first five bytes and the label in UTF-8, so
    the value opens only under the same root key I{and} the same label.  The
    AES key is HKDF-SHA256(root, info="bipgw seal v1"); the nonce is random.

    @param label: where the value is stored, e.g. C{"card:8988...:kic1"}.
    """
    return root.seal(label, plaintext)


class Sealer:
    """L{seal} for many values under one root key: the derivations done once.

    Each L{seal} call derives the sealing key and the root key id with HKDF
    (about 10 microseconds, half the cost of sealing a card key); an import
    of a million cards seals four million keys under the same root key, so
    it keeps one of these.  The output is exactly L{seal}'s.
    """

    def __init__(self, root: RootKey, *, nonces: int = 1) -> None:
        """
        @param nonces: random nonces drawn from the OS at once, one system
            call for that many seals (an importer asks for 1,024).  A
            sealer is for one thread at a time: two threads sharing one
            could seal with the same nonce.
        """
        self._setup(root.key_id, root.subkey(_INFO_SEAL).reveal(), nonces)

    def _setup(self, key_id: str, seal_key: bytes, nonces: int) -> None:
        self._key_id = key_id
        self._header = bytes([SEAL_VERSION]) + bytes.fromhex(key_id)
        self._aead = AESGCM(seal_key)
        self._draw = NONCE_LENGTH * max(nonces, 1)
        self._nonces = b""
        self._next = 0

    @classmethod
    def from_seal_key(cls, key_id: str, seal_key: bytes, *, nonces: int = 1) -> Sealer:
        """A sealer from the root key's id and its derived sealing key only.

        For a worker process that seals (the bulk import's): it is given
        L{RootKey.seal_key}, never the root key itself.  Same output as
        C{Sealer(root)}.
        """
        if len(seal_key) != 32 or len(bytes.fromhex(key_id)) != _KEY_ID_LENGTH:
            raise RootKeyError("a sealing key is 32 bytes and a root key id 4 hex bytes")
        sealer = cls.__new__(cls)
        sealer._setup(key_id, seal_key, nonces)
        return sealer

    @property
    def key_id(self) -> str:
        """The id of the root key this sealer seals under."""
        return self._key_id

    def seal(self, label: str, plaintext: Secret | bytes) -> bytes:
        """See L{seal}."""
        ad_label = check_label(label)
        secret = plaintext if isinstance(plaintext, Secret) else Secret(plaintext)
        if self._next >= len(self._nonces):
            self._nonces = os.urandom(self._draw)
            self._next = 0
        nonce = self._nonces[self._next : self._next + NONCE_LENGTH]
        self._next += NONCE_LENGTH
        sealed = self._aead.encrypt(nonce, secret.reveal(), self._header + ad_label)
        return self._header + nonce + sealed

    def seal_checked(self, ad_label: bytes, plaintext: bytes) -> bytes:
        """L{seal} for a label already known good, as UTF-8 (the bulk import's own labels).

        The caller built C{ad_label} from checked parts (C{card:<digits>:<purpose><kvn>}),
        so L{check_label} and the L{Secret} wrapping are skipped; same output.
        """
        if self._next >= len(self._nonces):
            self._nonces = os.urandom(self._draw)
            self._next = 0
        nonce = self._nonces[self._next : self._next + NONCE_LENGTH]
        self._next += NONCE_LENGTH
        header = self._header
        return header + nonce + self._aead.encrypt(nonce, plaintext, header + ad_label)


def unseal(root: IRootKeys, label: str, blob: bytes) -> Secret:
    """Open a value made by L{seal} for the same C{label}.

    @raise WrongRootKeyError: if it was sealed under another root key.
    @raise IntegrityError: if it was modified, truncated, or sealed under
        another label.
    """
    return root.unseal(label, blob)


def check_sealed(label: str, blob: bytes) -> tuple[bytes, bytes]:
    """The label (UTF-8) and bytes of a sealed value, after checking its
    size and format version (what every backend checks before decrypting)."""
    ad_label = check_label(label)
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise TypeError(f"a sealed value is bytes, not {type(blob).__name__}")
    data = bytes(blob)
    if not _MIN_SEALED <= len(data) <= _MAX_SEALED:
        raise IntegrityError(
            f"the sealed value for {label!r} is {len(data)} bytes, outside"
            f" [{_MIN_SEALED}, {_MAX_SEALED}]: truncated, or not a sealed value",
            label=label,
        )
    if data[0] != SEAL_VERSION:
        raise IntegrityError(
            f"the sealed value for {label!r} has unknown format version {data[0]}",
            label=label,
        )
    return ad_label, data


def _unseal_with(root: RootKey, label: str, blob: bytes) -> Secret:
    ad_label, data = check_sealed(label, blob)
    header = data[:HEADER_LENGTH]
    key_id = header[1:]
    if not hmac.compare_digest(key_id, root._key_id_bytes()):
        raise WrongRootKeyError(
            f"the value for {label!r} was sealed under root key {key_id.hex()},"
            f" not under the loaded root key {root.key_id}",
            label=label,
        )
    nonce = data[HEADER_LENGTH : HEADER_LENGTH + NONCE_LENGTH]
    try:
        plaintext = AESGCM(root._cached_subkey(_INFO_SEAL)).decrypt(
            nonce, data[HEADER_LENGTH + NONCE_LENGTH :], header + ad_label
        )
    except InvalidTag:
        raise IntegrityError(
            f"the value for {label!r} failed authentication: it was modified,"
            " or sealed under another label",
            label=label,
        ) from None
    return Secret(plaintext)
